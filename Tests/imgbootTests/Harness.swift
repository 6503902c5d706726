import Foundation
import Testing

/// Runs the built `imgboot` binary as a user would, against fixture images that
/// `tools/build-fixtures` builds (and caches) from the recipes in `fixtures/`.
enum Harness {
    static let isRoot = getuid() == 0

    /// The package's top directory (this file is Tests/imgbootTests/Harness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `IMGBOOT_BIN`, or the `imgboot` next to the test bundle (`swift build` puts it there).
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["IMGBOOT_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("imgboot").path
    }()

    /// The directory holding `NAME.raw` for every fixture, built once per test run.
    static let fixtures: Swift.Result<String, HarnessError> = {
        let result = run([packageRoot + "/tools/build-fixtures"])
        let dir = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, !dir.isEmpty else {
            return .failure(HarnessError("tools/build-fixtures failed (\(result.status)): \(result.stderr)"))
        }
        return .success(dir)
    }()

    /// The path of fixture `name` (e.g. "basic"), building the fixtures if needed.
    static func fixture(_ name: String) throws -> String {
        let path = try fixtures.get() + "/\(name).raw"
        guard FileManager.default.fileExists(atPath: path) else { throw HarnessError("no fixture \(name) at \(path)") }
        return path
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `imgboot ARGS…`.
    static func imgboot(_ arguments: [String], stdin: String? = nil) throws -> Output {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw HarnessError("imgboot binary not found at \(binary); run `swift build` first, or set IMGBOOT_BIN")
        }
        return run([binary] + arguments, stdin: stdin)
    }

    /// Runs a program, collecting its output through files (no pipe can fill up and block it).
    static func run(_ command: [String], stdin: String? = nil) -> Output {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgboot-harness-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        do {
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            if let stdin {
                let input = dir.appendingPathComponent("stdin")
                _ = FileManager.default.createFile(atPath: input.path, contents: Data(stdin.utf8))
                process.standardInput = try FileHandle(forReadingFrom: input)
            } else {
                process.standardInput = FileHandle.nullDevice
            }
            try process.run()
        } catch {
            return Output(status: -1, stdout: "", stderr: "cannot run \(command[0]): \(error)")
        }
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Output(
            status: status,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// The SHA-256 of a file, to prove an image was not written.
    static func sha256(_ path: String) -> String {
        run(["/usr/bin/sha256sum", path]).stdout.split(separator: " ").first.map(String.init) ?? ""
    }

    /// Loop devices whose backing file is `path` (from sysfs, as `losetup -j` would list them).
    static func loopDevices(backing path: String) -> [String] {
        run(["/sbin/losetup", "-n", "-O", "NAME", "-j", path]).stdout
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The mount points of the host's mount table.
    static func mountPoints() -> Set<String> {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return Set(text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? String(fields[4]) : nil
        })
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
