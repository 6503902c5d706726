// The libFuzzer target over the dissector: every input is a disk image (or, with a trailer, a
// sparse one of up to 64 GiB; see `Image`). Not a SwiftPM target
// (`swift build` never sees this directory); `tools/fuzz` compiles it with
// `swiftc -sanitize=fuzzer,address` together with Dissect and Mount's plan. See Fuzz/README.md.
//
// What counts as a bug: any crash (a trap on overflow or a failed bounds check, an ASan
// report), a hang, memory past `-rss_limit_mb` or one allocation past `-malloc_limit_mb`; and
// any of the few invariants below that the dissector promises for the images it accepts. A
// `DissectError` or a `MountError` is an expected outcome.

import CLinux
import Dissect
import Glibc
import Logging
import Mount
import Support

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
    let image = Image(input: data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    dissectAll(image)
    // Mutants of a GPT nearly always break a CRC and stop at the first check. The same image
    // with its CRCs made right reaches the table checks, libblkid and the selection.
    if let fixed = withGPTChecksumsFixed(image), fixed != image {
        dissectAll(fixed)
    }
    return 0
}

/// Dissects `image` and runs everything downstream that is pure: the selection for every
/// architecture, the JSON, and the mount plan for every mode.
func dissectAll(_ image: Image) {
    load(image)
    let dissected: DissectedImage
    do {
        dissected = try DissectedImage.dissect(path: "/proc/self/fd/\(scratch)", logger: logger)
    } catch {
        // Expected; its one-line message is part of what is checked not to crash.
        _ = error.description
        return
    }
    checkInvariants(dissected)
    _ = dissected.json.serialized()
    _ = dissected.json.serialized(pretty: false)
    for native in Architecture.allCases {
        let selection = PartitionSelection.select(dissected.partitions, table: dissected.partitionTable, native: native)
        _ = selection.warnings.joined()
        var again = dissected
        again.partitions = selection.partitions
        _ = again.usedPartitions
        _ = again.root?.displayName
    }
    for volatile in VolatileMode.allCases {
        for readOnly in [false, true] {
            do {
                let plan = try MountPlan.make(for: dissected, options: MountOptions(volatile: volatile, readOnly: readOnly))
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

/// Makes the scratch file hold `image`: its head, a hole, and its tail at the end.
func load(_ image: Image) {
    guard ftruncate(scratch, 0) == 0 else { die("ftruncate") }
    writeScratch(image.head, at: 0)
    guard ftruncate(scratch, off_t(image.size)) == 0 else { die("ftruncate") }
    writeScratch(image.tail, at: image.tailStart)
}

func writeScratch(_ bytes: [UInt8], at offset: UInt64) {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return -1 }
            return pwrite(scratch, base + done, bytes.count - done, off_t(offset) + off_t(done))
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

// MARK: Images of gigabytes from inputs of kilobytes

/// The disk image an input stands for. Most inputs are the image itself. An input that ends in
/// the 16-byte trailer `SPARSE!\0`, size in MiB (UInt32, little-endian), tail length (UInt32)
/// stands for a sparse image of that size (at most 64 GiB): the bytes before the tail at its
/// start, the tail at its end, zeros between. So the fuzzer reaches what only large images
/// have — a backup GPT gigabytes away, an entry array libblkid would read in full — with a few
/// KiB of input, and the memfd holds no more than those.
struct Image: Equatable {
    var head: [UInt8]
    var tail: [UInt8]
    var size: UInt64

    static let trailer = Array("SPARSE!\0".utf8)
    static let maxSizeMiB: UInt64 = 64 << 10

    init(input: [UInt8]) {
        let n = input.count
        guard n >= 16, Array(input[n - 16..<n - 8]) == Image.trailer else {
            (head, tail, size) = (input, [], UInt64(n))
            return
        }
        let tailLength = min(Int(readLE(input, n - 4, 4)), n - 16)
        head = Array(input[0..<n - 16 - tailLength])
        tail = Array(input[n - 16 - tailLength..<n - 16])
        size = max(min(readLE(input, n - 8, 4), Image.maxSizeMiB) << 20, UInt64(n - 16))
    }

    var tailStart: UInt64 { size - UInt64(tail.count) }

    /// `count` bytes at `offset`, zeros where the image has none.
    func read(at offset: UInt64, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        copy(head, placedAt: 0, into: &out, at: offset)
        copy(tail, placedAt: tailStart, into: &out, at: offset)
        return out
    }

    /// Writes `bytes` at `offset` where the head or the tail holds them; into the hole, nothing.
    mutating func write(_ bytes: [UInt8], at offset: UInt64) {
        for (i, byte) in bytes.enumerated() {
            let at = offset + UInt64(i)
            if at < UInt64(head.count) {
                head[Int(at)] = byte
            } else if at >= tailStart, at < size {
                tail[Int(at - tailStart)] = byte
            }
        }
    }

    private func copy(_ piece: [UInt8], placedAt start: UInt64, into out: inout [UInt8], at offset: UInt64) {
        let lower = max(start, offset)
        let upper = min(start + UInt64(piece.count), offset + UInt64(out.count))
        guard lower < upper else { return }
        for at in lower..<upper { out[Int(at - offset)] = piece[Int(at - start)] }
    }
}

// MARK: Making a mutant's GPT checksums right

/// `image` with the entry-array and header CRC32 of every GPT header recomputed: at LBA 1 for
/// 512- and 4096-byte sectors, where that header's alternate LBA points, and in the last
/// sector. Fields that make a CRC impossible to compute (an array past the end, an absurd
/// size) are left as they are. Nil when there is no "EFI PART" at LBA 1 at all.
func withGPTChecksumsFixed(_ image: Image) -> Image? {
    var out = image
    var any = false
    for sectorSize in [512, 4096] {
        let ss = UInt64(sectorSize)
        guard fixHeader(&out, at: ss, sectorSize: sectorSize) else { continue }
        any = true
        let alternate = readLE(out.read(at: ss + 32, count: 8), 0, 8)
        let (offset, overflow) = alternate.multipliedReportingOverflow(by: ss)
        if !overflow, offset != ss {
            _ = fixHeader(&out, at: offset, sectorSize: sectorSize)
        }
        let last = (out.size / ss - 1) * ss
        if last > ss, last != offset { _ = fixHeader(&out, at: last, sectorSize: sectorSize) }
    }
    return any ? out : nil
}

/// Recomputes the CRCs of the header at byte `at`, if there is one.
func fixHeader(_ image: inout Image, at: UInt64, sectorSize: Int) -> Bool {
    guard at <= image.size, UInt64(sectorSize) <= image.size - at else { return false }
    var header = image.read(at: at, count: sectorSize)
    guard Array(header[0..<8]) == Array("EFI PART".utf8) else { return false }
    let entriesLBA = readLE(header, 72, 8)
    let arrayBytes = readLE(header, 80, 4) * readLE(header, 84, 4)
    let (start, overflow) = entriesLBA.multipliedReportingOverflow(by: UInt64(sectorSize))
    if !overflow, arrayBytes <= 1 << 20, start <= image.size, arrayBytes <= image.size - start {
        writeLE(&header, 88, crc32(image.read(at: start, count: Int(arrayBytes))[...]))
    }
    let headerSize = Int(readLE(header, 12, 4))
    if headerSize >= 92, headerSize <= sectorSize {
        writeLE(&header, 16, 0)
        writeLE(&header, 16, crc32(header[0..<headerSize]))
    }
    image.write(Array(header[0..<92]), at: at)
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
        crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
    }
    return crc ^ 0xFFFF_FFFF
}

let crcTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}
