#if canImport(Glibc)
import Glibc
#endif
import Dissect
import Support

/// Why partitions of an image could not be given loop devices. Renders as one line that names
/// the image, the partition when there is one, what imgboot was doing and why it failed:
/// `basic.raw: partition 3: attach loop device: No free loop device`.
public struct AttachError: IMGBootError, Equatable {
    public enum Operation: Equatable, Sendable {
        /// Opening the image (read-only, or for writing when a partition is writable).
        case openImage(writable: Bool)
        /// fstat or BLKGETSIZE64 on the opened image.
        case statImage
        /// The image is neither a regular file nor a block device.
        case notFileOrBlockDevice
        /// flock on the image failed; EWOULDBLOCK means another user holds a conflicting lock.
        case lock(exclusive: Bool)
        /// Creating or locking one of systemd-nspawn's lock files (`.#NAME.lck` beside the image,
        /// or one in /run/systemd/nspawn/locks) failed; EAGAIN means someone holds a conflicting
        /// lock on it: systemd-nspawn, or another tool that locks as it does.
        case nspawnLock(String, exclusive: Bool)
        /// Handing the image's locks on to `imgboot keep-locks` (`LockKeeper`) failed at this step.
        case keepLocks(String)
        /// The partition asked for is not in the dissected image.
        case noSuchPartition
        /// The partition's bytes are not all inside the image as it is now.
        case outsideImage(offset: UInt64, size: UInt64, imageSize: UInt64)
        /// Opening /dev/loop-control.
        case openLoopControl
        /// LOOP_CTL_GET_FREE.
        case getFreeLoopDevice
        /// Opening /dev/loopN.
        case openLoopDevice(String)
        /// Making the node /dev/loopN (block MAJOR:MINOR) that a static /dev lacks.
        case makeDeviceNode(String, major: UInt32, minor: UInt32)
        /// LOOP_CONFIGURE on /dev/loopN.
        case configure(String)
        /// LOOP_GET_STATUS64 or BLKGETDISKSEQ right after configuring /dev/loopN.
        case verify(String)
        /// LOOP_CONFIGURE succeeded but the device did not come out with the flags asked for.
        case flagsNotKept(String, readOnly: Bool, autoclear: Bool)
        /// Every attempt found its device taken by someone else, or not as configured.
        case gaveUp(attempts: Int)
    }

    /// The image's path, as the user gave it.
    public let image: String
    /// The partition number (0 for a bare filesystem image); nil when the error is about
    /// the whole image.
    public let partition: Int?
    public let operation: Operation
    /// The errno of the failing call, captured right after it; nil when no call failed.
    public let errno: Int32?

    public init(image: String, partition: Int? = nil, _ operation: Operation, errno: Int32? = nil) {
        self.image = image
        self.partition = partition
        self.operation = operation
        self.errno = errno
    }

    /// The same error, said of `partition`.
    func about(partition: Int) -> AttachError {
        AttachError(image: image, partition: partition, operation, errno: errno)
    }

    /// Whether the image was refused because another user holds its lock.
    public var isBusy: Bool {
        switch operation {
        case .lock, .nspawnLock: errno == EWOULDBLOCK
        default: false
        }
    }

    public var subject: String? { image }

    /// A bare filesystem image is "partition 0"; saying so would only confuse.
    public var partitionName: String? { partition.flatMap { $0 == 0 ? nil : "partition \($0)" } }

    public var detail: String {
        let reason = errno.map(errnoString) ?? ""
        switch operation {
        case .openImage(let writable):
            if errno == ENOENT { return "no such file" }
            return (writable ? "cannot open for writing: " : "cannot open: ") + reason
        case .statImage:
            return "cannot read its size: " + reason
        case .notFileOrBlockDevice:
            return "not a regular file or block device"
        case .lock(let exclusive) where errno == EWOULDBLOCK:
            // A shared lock is refused only by an exclusive one; an exclusive lock by either.
            return exclusive ? "image is busy: another imgboot uses it"
                : "image is busy: another imgboot uses it writably"
        case .lock:
            return "cannot lock the image: " + reason
        case .nspawnLock(let path, _) where errno == EWOULDBLOCK:
            // The file beside the image by its name (the image's directory is the user's own);
            // the one in /run by its path.
            let name = path.hasPrefix(NspawnLockFile.directory + "/") ? path : String(path.split(separator: "/").last ?? "")
            return "image is busy: in use by systemd-nspawn (or another tool) — \(name) is locked"
        case .nspawnLock(let path, let exclusive) where errno == EROFS && exclusive && !path.hasPrefix(NspawnLockFile.directory):
            return "cannot create the lock file \(path) (systemd-nspawn's, beside the image) for writing the image: " + reason
        case .nspawnLock(let path, _):
            return "cannot lock \(path) (systemd-nspawn's lock file): " + reason
        case .keepLocks(let step):
            return errno == nil ? "cannot \(step)" : "cannot \(step): " + reason
        case .noSuchPartition:
            return "no such partition in the image"
        case .outsideImage(let offset, let size, let imageSize):
            return "bytes \(offset) to \(offset + size) lie beyond the end of the image (\(imageSize) bytes); has the image changed since it was dissected?"
        case .openLoopControl:
            if errno == ENOENT { return "attach loop device: /dev/loop-control is missing (is the loop module loaded?)" }
            return "attach loop device: cannot open /dev/loop-control: " + reason
        case .getFreeLoopDevice:
            // ENOTTY: what is at /dev/loop-control does not know the loop ioctls (a bind mount of
            // something else, a stale node): not a matter of free devices.
            if errno == ENOTTY { return "attach loop device: /dev/loop-control is not the loop control device (" + reason + ")" }
            return "attach loop device: No free loop device (" + reason + ")"
        case .openLoopDevice(let path) where errno == EPERM:
            // The node is there; what refuses it is a device cgroup (a container's, as Docker's
            // default policy denies block devices).
            return "attach loop device: cannot open \(path): \(reason) (denied by a device cgroup? In Docker: --device-cgroup-rule='b 7:* rmw', or --privileged)"
        case .openLoopDevice(let path):
            return "attach loop device: cannot open \(path): " + reason
        case .makeDeviceNode(let path, let major, let minor):
            return "attach loop device: \(path) (block device \(major):\(minor)) is missing, and creating it failed: \(reason) (a static /dev, as in a container: make /dev writable with CAP_MKNOD, or create the loop nodes beforehand; see README)"
        case .configure(let path):
            return "attach loop device: configure \(path): " + reason
        case .verify(let path):
            return "attach loop device: cannot read back the configuration of \(path): " + reason
        case .flagsNotKept(let path, let readOnly, let autoclear):
            return "attach loop device: the kernel configured \(path) "
                + (autoclear ? (readOnly ? "read-only, although imgboot asked for a writable device" : "writable, although imgboot asked for a read-only device")
                    : "without autoclear, although imgboot asked for it")
        case .gaveUp(let attempts):
            return "attach loop device: every free loop device was taken by another program before imgboot could configure it (\(attempts) attempts)"
        }
    }
}
