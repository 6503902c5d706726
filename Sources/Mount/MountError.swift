#if canImport(Glibc)
import Glibc
#endif
import Dissect
import Support

/// Why an image could not be mounted. One line: the image, the partition or path, what failed
/// and the errno — `basic.raw: partition 3 (srv): mount ext4 on /srv: Invalid argument`.
public struct MountError: IMGBootError, Equatable {
    public enum Reason: Equatable, Sendable {
        /// Options that cannot go together, or that the image cannot satisfy.
        case invalidOptions(String)
        /// Nothing to mount at `/`.
        case noRoot(String)
        /// `--volatile=yes` on an image whose /bin is a directory.
        case notMergedUsr
        /// A mount point the read-only image lacks (the image is never written to create it).
        case missingMountPoint(String)
        case notADirectory(String)
        /// A system call or libmount step failed.
        case failed(operation: String, errno: Int32)
        /// The image is in use in a way that excludes this one: by whom, and how.
        case busy(String)
        case other(String)
    }

    public let image: String
    /// The partition concerned, as messages name it ("partition 3 (srv)"), if any.
    public let partition: String?
    public let reason: Reason

    public init(image: String, partition: String? = nil, _ reason: Reason) {
        self.image = image
        self.partition = partition
        self.reason = reason
    }

    public var subject: String? { image }
    public var partitionName: String? { partition }

    public var errno: Int32? {
        if case .failed(_, let e) = reason { return e }
        return nil
    }

    public var detail: String {
        switch reason {
        case .invalidOptions(let text): text
        case .noRoot(let text): text
        case .notMergedUsr:
            "--volatile=yes needs an image with a merged /usr (/bin a symlink to usr/bin or missing), but the image's /bin is a directory"
        case .missingMountPoint(let path):
            "mount point \(path) does not exist in the read-only image (imgboot never writes the image to create it)"
        case .notADirectory(let path): "mount point \(path) is not a directory"
        case .failed(let operation, let e): failure(operation, errno: e)
        case .busy(let holder): "image is busy: \(holder)"
        case .other(let text): text
        }
    }
}
