import Foundation
import Testing
@testable import Dissect

/// The fuzzer's seeds (`fixtures/fuzz-corpus`, see Fuzz/README.md) are dissected in-process, each
/// with the outcome it was made for: a seed that stopped meaning what its name says would make the
/// fuzzer quietly weaker. An input the fuzzer found a bug with joins this table, with the outcome
/// the fix gives it. A crash here takes the whole test run down, which is the point.
struct FuzzCorpusTests {
    static let corpus: String = {
        // This file is Tests/DissectTests/FuzzCorpusTests.swift.
        let parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        return parts.dropLast(3).joined(separator: "/") + "/fixtures/fuzz-corpus"
    }()

    /// A dissected image in one line: table, sector size, and each partition as
    /// NUMBER=DESIGNATOR:FS@MOUNTPOINT; or the error's message.
    static func outcome(_ name: String) throws -> String {
        let seed = corpus + "/" + name + ".img"
        let sparse = try sparseImage(seed)
        // A leftover temporary file fails nothing; the outcome is what is tested.
        defer { if let sparse { try? FileManager.default.removeItem(atPath: sparse) } }
        let path = sparse ?? seed
        do {
            let image = try DissectedImage.dissect(path: path)
            let parts = image.partitions.map { p in
                "\(p.number)=\(p.designator?.rawValue ?? "-"):\(p.fsType ?? "-")@\(p.mountPoint ?? "-")"
            }
            return (["\(image.partitionTable?.rawValue ?? "none") \(image.sectorSize)"] + parts)
                .joined(separator: " ")
        } catch {
            return "error: \(error.detail)"
        }
    }

    @Test(arguments: [
        ("gpt-128", "gpt 512 1=root:ext4@/ 2=home:ext4@/home 3=srv:ext4@/srv"),
        ("read-only", "gpt 512 1=root:squashfs@/ 2=var:ext4@/var 3=tmp:ext4@/var/tmp 4=usr:erofs@/usr"),
        ("flags", "gpt 512 1=root:ext4@/ 2=home:ext4@- 3=srv:ext4@/srv 4=esp:vfat@/efi"),
        ("two-roots", "gpt 512 1=root:ext4@- 2=root:ext4@/ 3=root:ext4@- 4=root:ext4@-"),
        ("generic", "gpt 512 1=root:ext4@/ 2=xbootldr:vfat@/boot"),
        ("sector4k", "gpt 4096 1=root:ext4@/"),
        ("mbr", "dos 512 1=linux-generic:ext4@- 2=root:ext4@/ 5=esp:vfat@/efi"),
        ("bare-ext4", "none 512 0=root:ext4@/"),
        ("bad-primary", "gpt 512 1=root:ext4@/ 2=xbootldr:vfat@/boot"),
        ("disagree", "gpt 512 1=root:ext4@/ 2=xbootldr:vfat@/boot"),
        ("absurd-count", "error: corrupt GPT: primary header declares 2147483647 entries of 128 bytes, more than the 1024 KiB imgboot accepts; backup header declares 2147483647 entries of 128 bytes, more than the 1024 KiB imgboot accepts"),
        ("overlap", "error: invalid partition table: partitions 1 and 2 overlap"),
        ("entry-size", "gpt 512 1=root:ext4@/ 2=xbootldr:vfat@/boot"),
        ("truncated", "error: invalid partition table: partition 3 ends beyond the end of the image (LBA 14; the image has 12 sectors); partition 4 ends beyond the end of the image (LBA 18; the image has 12 sectors)"),
        ("fs-and-gpt", "error: ambiguous image: both a GPT and a filesystem (ext4) at the start of the image"),
        ("sparse-8g", "gpt 512 1=root:ext4@/ 2=xbootldr:vfat@/boot"),
        // Found by the fuzzer: an intact primary header on an 8 GiB sparse image declaring
        // 2424836 entries. imgboot set it aside and used the backup, but libblkid read the
        // primary's whole "array" first (296 MiB here; up to 4 GiB on a larger image).
        ("absurd-primary", "error: invalid partition table: the primary GPT header declares 2424836 entries of 128 bytes, more than the 1024 KiB imgboot accepts"),
        // The same through the last sector, where libblkid looks when there is no primary.
        ("absurd-backup", "error: invalid partition table: the backup GPT header declares 2424836 entries of 128 bytes, more than the 1024 KiB imgboot accepts"),
    ])
    func seed(name: String, expected: String) throws {
        #expect(try Self.outcome(name) == expected)
    }

    /// For a seed in the fuzzer's sparse form (ending in "SPARSE!\0", size in MiB, tail length;
    /// see Fuzz/README.md), the image it stands for: a sparse file in the temporary directory
    /// with the head at its start and the tail at its end. Nil for a seed that is an image.
    static func sparseImage(_ seed: String) throws -> String? {
        let data = try Data(contentsOf: URL(fileURLWithPath: seed))
        let bytes = [UInt8](data)
        let n = bytes.count
        guard n >= 16, Array(bytes[n - 16..<n - 8]) == Array("SPARSE!\0".utf8) else { return nil }
        let le32 = { (at: Int) in (0..<4).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        let tailLength = min(Int(le32(n - 4)), n - 16)
        let size = max(min(le32(n - 8), 64 << 10) << 20, UInt64(n - 16))
        let path = NSTemporaryDirectory() + "/imgboot-fuzz-seed-\(UUID().uuidString).img"
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes[0..<n - 16 - tailLength])) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? file.close() }
        try file.truncate(atOffset: size)
        try file.seek(toOffset: size - UInt64(tailLength))
        try file.write(contentsOf: Data(bytes[n - 16 - tailLength..<n - 16]))
        return path
    }
}
