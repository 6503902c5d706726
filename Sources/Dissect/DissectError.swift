#if canImport(Glibc)
import Glibc
#endif
import Support

/// Why an image could not be dissected. Renders as one line that names the image and
/// what is wrong with it: `basic.raw: partitions 1 and 2 overlap`.
public struct DissectError: IMGBootError, Equatable {
    public enum Reason: Equatable, Sendable {
        case open(errno: Int32)
        case read(offset: UInt64, errno: Int32)
        case isDirectory
        case notFileOrBlockDevice
        case empty
        case tooSmall(size: UInt64)
        case unrecognised
        case unsupportedTable(String)
        case ambiguous(String)
        case corruptGPT(primary: String, backup: String)
        case invalidTable([String])
        case probe(String)
    }

    public let image: String
    public let reason: Reason

    public init(image: String, _ reason: Reason) {
        self.image = image
        self.reason = reason
    }

    public var subject: String? { image }

    public var errno: Int32? {
        switch reason {
        case .open(let e), .read(_, let e): e
        default: nil
        }
    }

    public var detail: String {
        switch reason {
        case .open(let e) where e == ENOENT: "no such file"
        case .open(let e) where e == EACCES || e == EPERM: "cannot open: permission denied"
        case .open(let e): "cannot open: \(errnoString(e))"
        case .read(let offset, let e): "cannot read at byte \(offset): \(errnoString(e))"
        case .isDirectory: "is a directory, not a disk image"
        case .notFileOrBlockDevice: "not a regular file or block device"
        case .empty: "empty file (0 bytes), not a disk image"
        case .tooSmall(let size):
            "too small (\(size) bytes) to hold a partition table or a filesystem"
        case .unrecognised: "no partition table or filesystem found"
        case .unsupportedTable(let type):
            "partition table type \"\(type)\" is not supported (only GPT and MBR are)"
        case .ambiguous(let what): "ambiguous image: \(what)"
        case .corruptGPT(let primary, let backup):
            "corrupt GPT: primary header \(primary); backup header \(backup)"
        case .invalidTable(let problems):
            // One line, even for a crafted table with thousands of bad entries.
            "invalid partition table: " + (problems.count > 4
                ? problems.prefix(3).joined(separator: "; ") + "; and \(problems.count - 3) more problems"
                : problems.joined(separator: "; "))
        case .probe(let what): "cannot probe: \(what)"
        }
    }
}
