#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Support

/// The partitions of a dissected image that will be mounted, each on a loop device of its own,
/// with the image locked (shared if every device is read-only, exclusive otherwise).
///
/// The order of things:
/// 1. `attach`, then mount the devices — keep this object's devices open until the mounts
///    exist: see `LoopDevice`.
/// 2. `close()`: the devices now live as long as their mounts (autoclear detaches each when
///    its mount goes). The image stays locked: it is still in use.
/// 3. Once the mounts are gone, `finish()`: close, wait until the kernel has detached every
///    device, unlock.
///
/// `deinit` closes and unlocks as a backstop; do not rely on it for the lock's lifetime, since
/// Swift may end an object's life right after its last use.
public final class AttachedImage {
    /// The image's path, as the user gave it.
    public let image: String
    /// The loop devices, in the order the partitions were asked for.
    public let devices: [(partition: Int, device: LoopDevice)]
    private var lock: ImageLock?

    private init(image: String, devices: [(partition: Int, device: LoopDevice)], lock: ImageLock) {
        self.image = image
        self.devices = devices
        self.lock = lock
    }

    deinit {
        close()
        unlock()
    }

    /// Attaches a loop device to each partition in `partitions` (numbers as in `image`; 0 is a
    /// bare filesystem image, the whole file), read-only where asked. A number asked for twice
    /// gets one device, writable if either asked for it so.
    ///
    /// The image is opened once per access mode needed — O_RDONLY for the read-only devices,
    /// O_RDWR for the writable ones — and locked: shared when every device is read-only,
    /// exclusive otherwise. Every partition is checked against the image as it is now (it must
    /// exist and lie inside the file) before any device is attached. If anything fails, the
    /// devices attached so far are closed and their detaching awaited before this throws, so
    /// nothing is left behind.
    public static func attach(
        _ image: DissectedImage, partitions: [(number: Int, readOnly: Bool)],
        logger: Logger = Logger(label: "imgboot.attach")
    ) throws(AttachError) -> AttachedImage {
        try attach(image, partitions: partitions, logger: logger) { fd, partition, readOnly throws(AttachError) in
            try LoopDevice.attach(
                backing: fd, path: image.image, offset: partition.offset, size: partition.size,
                readOnly: readOnly, partition: partition.number, logger: logger)
        }
    }

    /// `attach` with the step that attaches one device replaceable, so that tests can make it
    /// fail halfway.
    static func attach(
        _ image: DissectedImage, partitions requests: [(number: Int, readOnly: Bool)], logger: Logger,
        attachOne: (_ backing: Int32, _ partition: Partition, _ readOnly: Bool) throws(AttachError) -> LoopDevice
    ) throws(AttachError) -> AttachedImage {
        let path = image.image

        // Which partitions, each once, in the order first asked for.
        var wanted: [(partition: Partition, readOnly: Bool)] = []
        for request in requests {
            if let i = wanted.firstIndex(where: { $0.partition.number == request.number }) {
                wanted[i].readOnly = wanted[i].readOnly && request.readOnly
                continue
            }
            guard let partition = image.partitions.first(where: { $0.number == request.number }) else {
                throw AttachError(image: path, partition: request.number, .noSuchPartition)
            }
            wanted.append((partition, request.readOnly))
        }
        let anyWritable = wanted.contains { !$0.readOnly }
        let anyReadOnly = wanted.contains { $0.readOnly }

        // Open by path once; every other descriptor reopens that very file.
        let primary = try BackingFile(path: path, writable: anyWritable)
        let lock = try ImageLock(file: primary.fd, path: path, exclusive: anyWritable)
        let readOnlyFile: BackingFile? =
            anyWritable && anyReadOnly ? try BackingFile(reopening: primary, writable: false) : nil

        let imageSize = primary.size
        for (partition, _) in wanted {
            let (end, overflow) = partition.offset.addingReportingOverflow(partition.size)
            guard !overflow, end <= imageSize, partition.size > 0 else {
                throw AttachError(
                    image: path, partition: partition.number,
                    .outsideImage(offset: partition.offset, size: partition.size, imageSize: imageSize))
            }
        }

        var devices: [(partition: Int, device: LoopDevice)] = []
        do {
            for (partition, readOnly) in wanted {
                let backing = readOnly ? (readOnlyFile ?? primary) : primary
                let device = try attachOne(backing.fd, partition, readOnly)
                devices.append((partition.number, device))
            }
        } catch {
            for (_, device) in devices { device.close() }
            let deadline = ContinuousClock.now + .seconds(2)
            for (_, device) in devices where !waitUntil(deadline: deadline, { device.isDetached }) {
                logger.warning("\(path): \(device.path) is still attached 2 s after closing it")
            }
            throw error
        }
        // The loop devices hold their own references to the file; ours may go now.
        return AttachedImage(image: path, devices: devices, lock: lock)
    }

    /// The loop device of partition `partition`, if it was asked for.
    public func device(partition: Int) -> LoopDevice? {
        devices.first { $0.partition == partition }?.device
    }

    /// Closes every device (each detaches once no mount holds it). The image stays locked.
    /// Idempotent.
    public func close() {
        for (_, device) in devices { device.close() }
    }

    /// Unlocks the image, for others to use; do so once the devices are detached (or while a
    /// mount may still write to a writable one, another imgboot could take the image).
    /// Idempotent.
    public func unlock() {
        lock?.release()
        lock = nil
    }

    /// Hands the image's locks on to a process that keeps them until every device is detached
    /// (`LockKeeper`): for a tree that outlives this process (`imgboot mount`). Call once the
    /// devices are held by their mounts. Afterwards `unlock()` does nothing. Returns the keeper's
    /// PID.
    public func keepLocked() throws(AttachError) -> pid_t {
        guard let lock else { throw AttachError(image: image, .keepLocks("keep the image locked: it is no longer locked")) }
        let pid = try LockKeeper.start(lock, devices: devices.map(\.device.identity), image: image)
        self.lock = nil
        return pid
    }

    /// The end of the image's use, once its mounts are gone (or were never made): closes the
    /// devices, waits until the kernel has detached them (`timeout` for all together; a
    /// warning when it has not), runs `beforeUnlock` — the image is still locked, and detached
    /// — and unlocks. Returns whether every device is detached.
    @discardableResult
    public func finish(logger: Logger? = nil, timeout: Duration = .seconds(2), beforeUnlock: () -> Void = {}) -> Bool {
        close()
        defer { unlock() }
        let detached = waitUntilDetached(timeout: timeout)
        if !detached { logger?.warning("\(image): loop devices still attached after \(formatSeconds(seconds(timeout))) s") }
        beforeUnlock()
        return detached
    }

    /// After `close()`, waits until the kernel has detached every device, `timeout` for all of
    /// them together. Returns whether all are detached.
    public func waitUntilDetached(timeout: Duration = .seconds(2)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var all = true
        for (_, device) in devices where device.fileDescriptor >= 0 || !waitUntil(deadline: deadline, { device.isDetached }) {
            all = false
        }
        return all
    }
}

/// The image opened as a loop device's backing file. Owns its descriptor.
private final class BackingFile {
    let path: String
    let fd: Int32
    /// The size in bytes of the regular file or block device.
    let size: UInt64

    /// Opens `path` itself.
    convenience init(path: String, writable: Bool) throws(AttachError) {
        try self.init(opening: path, writable: writable, as: path)
    }

    /// Opens the very file `other` has open, through /proc/self/fd: a file renamed over the
    /// path meanwhile cannot slip in.
    convenience init(reopening other: BackingFile, writable: Bool) throws(AttachError) {
        try self.init(opening: "/proc/self/fd/\(other.fd)", writable: writable, as: other.path)
    }

    private init(opening file: String, writable: Bool, as path: String) throws(AttachError) {
        // O_NONBLOCK: opening a FIFO named as an image must not hang; it is refused below, and
        // the flag is cleared before the loop driver does I/O through the descriptor.
        let fd = open(file, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw AttachError(image: path, .openImage(writable: writable), errno: errno) }
        do throws(AttachError) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw AttachError(image: path, .statImage, errno: errno) }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                size = UInt64(st.st_size)
            case S_IFBLK:
                var bytes: UInt64 = 0
                guard imgboot_block_device_size(fd, &bytes) == 0 else {
                    throw AttachError(image: path, .statImage, errno: errno)
                }
                size = bytes
            default:
                throw AttachError(image: path, .notFileOrBlockDevice)
            }
            let flags = fcntl(fd, F_GETFL)
            guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
                throw AttachError(image: path, .openImage(writable: writable), errno: errno)
            }
        } catch {
            close(fd)
            throw error
        }
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }
}
