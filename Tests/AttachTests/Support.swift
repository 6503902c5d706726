import Foundation
import Testing
import Dissect
import Logging
@testable import Attach

let isRoot = getuid() == 0

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct Output {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion, its output collected through files (no pipe can fill up).
func run(_ command: [String]) throws -> Output {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgboot-attach-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }  // a leftover directory is not worth failing a test over
    let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
    guard FileManager.default.createFile(atPath: out.path, contents: nil),
          FileManager.default.createFile(atPath: err.path, contents: nil)
    else { throw TestFailure("cannot create output files in \(dir.path)") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: err)
    try process.run()
    process.waitUntilExit()
    return Output(
        status: process.terminationStatus,
        stdout: try String(contentsOf: out, encoding: .utf8),
        stderr: try String(contentsOf: err, encoding: .utf8))
}

/// The lines of `losetup -a`, as a user would look at it, that name a file these tests made.
/// Only those: other programs on the machine (another checkout's tests) may attach and detach
/// their own devices while these tests run.
func losetupOurs() throws -> [String] {
    try run(["losetup", "-a"]).stdout.split(separator: "\n").map(String.init)
        .filter { $0.contains(temporaryFilePrefix) }
}

let temporaryFilePrefix = "/var/tmp/imgboot-attach-test-"

/// The loop devices whose backing file is `path` (`losetup -j`).
func loopDevices(backedBy path: String) throws -> [String] {
    try run(["losetup", "-n", "-O", "NAME", "-j", path]).stdout
        .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
}

func sha256(_ path: String) throws -> String {
    String(try run(["sha256sum", path]).stdout.prefix(64))
}

/// A sysfs attribute, without its newline.
func sysfs(_ path: String) -> String? {
    (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .newlines)
}

/// `count` bytes of the file or device at `path`, from `offset`.
func readBytes(_ path: String, offset: UInt64, count: Int) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: count)
    let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
    guard n == count else { throw TestFailure("read \(path) at \(offset): got \(n) of \(count) bytes") }
    return buffer
}

/// A GPT disk image in a temporary file: three 8 MiB Linux partitions, each filled with its own
/// random bytes, so that reading a loop device shows which part of the image it maps.
/// Call `remove()` (in a defer) when done.
final class TestImage {
    let path: String
    let dissected: DissectedImage

    /// Partition n (1-based) starts at sector 2048 + (n-1) * 16384 and has 16384 sectors.
    static let partitionSectors: UInt64 = 16384

    init(size: String = "32M") throws {
        let path = try makeTemporaryFile(size: size)
        self.path = path
        do {
            var status: Output
            let script = (0..<3).map { i in
                "start=\(2048 + UInt64(i) * Self.partitionSectors), size=\(Self.partitionSectors), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"
            }.joined(separator: "\n")
            try ("label: gpt\n" + script + "\n").write(toFile: path + ".sfdisk", atomically: false, encoding: .utf8)
            defer { unlink(path + ".sfdisk") }
            status = try run(["sh", "-c", "sfdisk -q \"$0\" < \"$0.sfdisk\"", path])
            guard status.status == 0 else { throw TestFailure("sfdisk: \(status.stderr)") }

            // Partition n starts at MiB 1 + 8(n-1); random bytes, so no two places look alike.
            for i in 0..<3 {
                status = try run(["dd", "if=/dev/urandom", "of=\(path)", "bs=1M", "seek=\(1 + 8 * i)", "count=8", "conv=notrunc", "status=none"])
                guard status.status == 0 else { throw TestFailure("dd: \(status.stderr)") }
            }
            dissected = try DissectedImage.dissect(path: path)
        } catch {
            unlink(path)
            throw error
        }
    }

    func partition(_ number: Int) throws -> Partition {
        guard let p = dissected.partitions.first(where: { $0.number == number }) else {
            throw TestFailure("\(path) has no partition \(number)")
        }
        return p
    }

    func remove() { unlink(path) }
}

/// A new file of `size` bytes (as truncate(1) takes it: "32M") under /var/tmp, full of zeros.
/// The caller unlinks it.
func makeTemporaryFile(size: String) throws -> String {
    var template = Array("\(temporaryFilePrefix)XXXXXX.raw".utf8CString)
    let fd = mkstemps(&template, 4)
    guard fd >= 0 else { throw TestFailure("mkstemps: \(String(cString: strerror(errno)))") }
    close(fd)
    let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let status = try run(["truncate", "-s", size, path])
    guard status.status == 0 else {
        unlink(path)
        throw TestFailure("truncate: \(status.stderr)")
    }
    return path
}

/// A value several threads add to.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// Every test that attaches loop devices, one at a time: several compare `losetup -a` before
/// and after, which a test running beside them would upset.
@Suite(.serialized, .enabled(if: isRoot, "needs root and loop devices"))
enum LoopDeviceTests {}

/// A log handler that keeps every message, so that a test can tell what happened inside.
struct RecordingLogHandler: LogHandler {
    let messages: Locked<[String]>
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        messages.withLock { $0.append("\(event.message)") }
    }
}
