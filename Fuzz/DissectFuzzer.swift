// The libFuzzer target over the dissector: every input is a disk image. Not a SwiftPM target
// (`swift build` never sees this directory); `tools/fuzz` compiles it with
// `swiftc -sanitize=fuzzer,address` together with Dissect and Mount's plan. See Fuzz/README.md.
//
// What counts as a bug: any crash (a trap on overflow or a failed bounds check, an ASan
// report), a hang, or an allocation past `-rss_limit_mb`; and any of the few invariants below
// that the dissector promises for the images it accepts. A `DissectError` or a `MountError`
// is an expected outcome.

import CLinux
import Dissect
import Glibc
import Logging
import Mount

/// The RAM-backed file each input is written to: dissect(path:) then opens, stats and preads
/// `/proc/self/fd/N` exactly as it would an image on disk, and nothing touches the disk.
let scratch: Int32 = {
    let fd = imgboot_memfd_create("dissect-fuzzer")
    if fd < 0 {
        perror("dissect-fuzzer: memfd_create")
        exit(1)
    }
    return fd
}()

let logger: Logger = {
    var logger = Logger(label: "imgboot.fuzz", factory: { _ in DiscardingLogHandler() })
    // Every debug message is rendered (and then dropped), so that its interpolation is run too.
    logger.logLevel = .trace
    return logger
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    dissectAll(bytes)
    // Mutants of a GPT nearly always break a CRC and stop at the first check. The same input
    // with its CRCs made right reaches the table checks, libblkid and the selection.
    if let fixed = withGPTChecksumsFixed(bytes), fixed != bytes {
        dissectAll(fixed)
    }
    return 0
}

/// Dissects `bytes` and runs everything downstream that is pure: the selection for every
/// architecture, the JSON, and the mount plan for every mode.
func dissectAll(_ bytes: [UInt8]) {
    load(bytes)
    let image: DissectedImage
    do {
        image = try DissectedImage.dissect(path: "/proc/self/fd/\(scratch)", logger: logger)
    } catch {
        // Expected; its one-line message is part of what is checked not to crash.
        _ = error.description
        return
    }
    checkInvariants(image)
    _ = image.json.serialized()
    _ = image.json.serialized(pretty: false)
    for native in Architecture.allCases {
        let selection = PartitionSelection.select(image.partitions, table: image.partitionTable, native: native)
        _ = selection.warnings.joined()
        var again = image
        again.partitions = selection.partitions
        _ = again.usedPartitions
        _ = again.root?.displayName
    }
    for volatile in VolatileMode.allCases {
        for readOnly in [false, true] {
            do {
                let plan = try MountPlan.make(for: image, options: MountOptions(volatile: volatile, readOnly: readOnly))
                _ = plan.description
            } catch {
                _ = error.description
            }
        }
    }
}

/// What the dissector promises about every image it accepts.
func checkInvariants(_ image: DissectedImage) {
    var mountPoints: Set<String> = []
    for p in image.partitions {
        let (end, overflow) = p.offset.addingReportingOverflow(p.size)
        require(!overflow && end <= image.size, "\(p.displayName) (\(p.offset)+\(p.size)) ends past the image (\(image.size))")
        if let mountPoint = p.mountPoint {
            require(mountPoints.insert(mountPoint).inserted, "two partitions are mounted at \(mountPoint)")
            require(p.fsType.map(PartitionSelection.mountableFilesystems.contains) ?? false,
                    "\(p.displayName) is mounted but holds \(p.fsType ?? "no filesystem")")
        }
    }
    let sorted = image.partitions.sorted { $0.offset < $1.offset }
    for (a, b) in zip(sorted, sorted.dropFirst()) where a.size > 0 && b.size > 0 {
        require(a.offset + a.size <= b.offset, "\(a.displayName) and \(b.displayName) overlap")
    }
}

func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    let line = "dissect-fuzzer: invariant broken: \(message())\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    abort()
}

/// Replaces the scratch file's contents with `bytes`.
func load(_ bytes: [UInt8]) {
    guard ftruncate(scratch, 0) == 0 else { die("ftruncate") }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return -1 }
            return pwrite(scratch, base + done, bytes.count - done, off_t(done))
        }
        guard n > 0 else { die("pwrite") }
        done += n
    }
}

func die(_ what: String) -> Never {
    perror("dissect-fuzzer: \(what)")
    exit(1)
}

struct DiscardingLogHandler: LogHandler {
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        _ = "\(event.message)"
    }
}

// MARK: Making a mutant's GPT checksums right

/// `bytes` with the entry-array and header CRC32 of every GPT header recomputed: at LBA 1 for
/// 512- and 4096-byte sectors, where that header's alternate LBA points, and in the last
/// sector. Fields that make a CRC impossible to compute (an array past the end, an absurd
/// size) are left as they are. Nil when there is no "EFI PART" at LBA 1 at all.
func withGPTChecksumsFixed(_ bytes: [UInt8]) -> [UInt8]? {
    var out = bytes
    var any = false
    for sectorSize in [512, 4096] {
        guard fixHeader(&out, at: sectorSize, sectorSize: sectorSize) else { continue }
        any = true
        let alternate = readLE(out, sectorSize + 32, 8)
        let (offset, overflow) = alternate.multipliedReportingOverflow(by: UInt64(sectorSize))
        if !overflow, offset != UInt64(sectorSize), offset <= UInt64(out.count) {
            _ = fixHeader(&out, at: Int(offset), sectorSize: sectorSize)
        }
        let last = (out.count / sectorSize - 1) * sectorSize
        if last > sectorSize { _ = fixHeader(&out, at: last, sectorSize: sectorSize) }
    }
    return any ? out : nil
}

/// Recomputes the CRCs of the header at byte `at`, if there is one.
func fixHeader(_ b: inout [UInt8], at: Int, sectorSize: Int) -> Bool {
    guard at >= 0, at + sectorSize <= b.count, Array(b[at..<at + 8]) == Array("EFI PART".utf8) else { return false }
    let entriesLBA = readLE(b, at + 72, 8)
    let arrayBytes = readLE(b, at + 80, 4) * readLE(b, at + 84, 4)
    let (start, overflow) = entriesLBA.multipliedReportingOverflow(by: UInt64(sectorSize))
    if !overflow, arrayBytes <= 1 << 20, start <= UInt64(b.count), arrayBytes <= UInt64(b.count) - start {
        writeLE(&b, at + 88, crc32(b[Int(start)..<Int(start + arrayBytes)]))
    }
    let headerSize = Int(readLE(b, at + 12, 4))
    if headerSize >= 92, headerSize <= sectorSize {
        writeLE(&b, at + 16, 0)
        writeLE(&b, at + 16, crc32(b[at..<at + headerSize]))
    }
    return true
}

func readLE(_ b: [UInt8], _ at: Int, _ count: Int) -> UInt64 {
    (0..<count).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
}

func writeLE(_ b: inout [UInt8], _ at: Int, _ value: UInt32) {
    for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
}

/// CRC-32 (IEEE, reflected); written again here rather than taken from Dissect, so that a
/// mistake there cannot hide itself.
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }
    return crc ^ 0xFFFF_FFFF
}
