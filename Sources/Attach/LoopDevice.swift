#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Logging
import Support

/// A loop device that imgboot configured: `/dev/loopN` showing `size` bytes of a backing file
/// from byte `offset`, and an open descriptor of it that this object owns.
///
/// The device is configured with autoclear: the kernel detaches it when its last user goes
/// away — this object's descriptor, or a mount of the device. Hence **keep the LoopDevice
/// alive until the mount that uses it exists**: closing it before anything else holds the
/// device detaches it at once, and the mount would then find no device (or, worse, someone
/// else's). Once mounted, closing is right: the device then lives exactly as long as the mount.
///
/// The kernel does not promise that the device is detached by the time the last user's
/// close(2) or umount(2) returns (on the 6.18 kernel here it always was, within 0.2 ms, but a
/// last reference dropped by another task or a workqueue detaches later), so after `close()`,
/// `waitUntilDetached(timeout:)` makes sure. imgboot never detaches a device explicitly
/// (LOOP_CLR_FD): it cannot know that no one else has taken the device in the meantime.
public final class LoopDevice {
    /// "/dev/loop7".
    public let path: String
    /// The 7 of /dev/loop7.
    public let number: Int
    /// Attached read-only (LO_FLAGS_READ_ONLY, and the device opened O_RDONLY).
    public let readOnly: Bool
    /// Byte offset in the backing file.
    public let offset: UInt64
    /// Size in bytes (the kernel's size limit).
    public let size: UInt64
    /// The kernel's disk sequence number of this attachment (BLKGETDISKSEQ): every attach and
    /// detach of /dev/loopN changes it, so it tells this attachment from a later one of the same
    /// device. nil on kernels older than 5.15.
    public let diskSequence: UInt64?
    /// The backing file as sysfs names it (`/sys/block/loopN/loop/backing_file`), read right
    /// after attaching; nil if sysfs did not say.
    public let backingFile: String?

    /// The open descriptor of `path`, or -1 once closed.
    public private(set) var fileDescriptor: Int32

    private init(
        fd: Int32, number: Int, readOnly: Bool, offset: UInt64, size: UInt64,
        diskSequence: UInt64?, backingFile: String?
    ) {
        self.fileDescriptor = fd
        self.number = number
        self.path = "/dev/loop\(number)"
        self.readOnly = readOnly
        self.offset = offset
        self.size = size
        self.diskSequence = diskSequence
        self.backingFile = backingFile
    }

    deinit { close() }

    /// How often `attach` asks for another device when others keep taking the free one.
    static let maxAttempts = 50

    /// Attaches a free loop device to `size` bytes of the file open at `fd`, from byte `offset`.
    ///
    /// Another program may take the device that LOOP_CTL_GET_FREE named before this one
    /// configures it; that device is then left alone and another one asked for, up to
    /// `maxAttempts` times with a short, growing, randomised pause (well under a second in all).
    /// After configuring, LOOP_GET_STATUS64 must show this file, offset and size, or the device
    /// is not ours and is left alone too. Around GET_FREE and CONFIGURE it holds an exclusive
    /// flock on /dev/loop-control, as systemd does, so that imgboots (and systemd) do not race
    /// each other: with 32 threads attaching at once, the lock took lost races from about
    /// 1400 (up to 21 attempts for one device) to none.
    ///
    /// - Parameters:
    ///   - fd: the backing file, open O_RDONLY for a read-only device, O_RDWR otherwise.
    ///     The loop device keeps its own reference; the caller may close `fd` afterwards.
    ///   - path: the image's path, for messages and as the device's lo_file_name.
    ///   - partition: the partition number, for messages.
    public static func attach(
        backing fd: Int32, path: String, offset: UInt64, size: UInt64, readOnly: Bool,
        partition: Int? = nil, logger: Logger = Logger(label: "imgboot.attach")
    ) throws(AttachError) -> LoopDevice {
        try attach(
            backing: fd, path: path, offset: offset, size: size, readOnly: readOnly,
            partition: partition, lockingControl: true, logger: logger)
    }

    /// `attach`, optionally without the /dev/loop-control lock: tests race without it, so that
    /// lost races are common and the retrying is tested.
    static func attach(
        backing fd: Int32, path: String, offset: UInt64, size: UInt64, readOnly: Bool,
        partition: Int?, lockingControl: Bool, logger: Logger
    ) throws(AttachError) -> LoopDevice {
        let request = Request(
            backingFD: fd, path: path, offset: offset, size: size, readOnly: readOnly,
            partition: partition)
        guard fstat(fd, &request.backing) == 0 else { throw request.failure(.statImage, errno) }

        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { throw request.failure(.openLoopControl, errno) }
        defer { Glibc.close(control) }

        for attempt in 1...maxAttempts {
            if attempt > 1 { pause(attempt: attempt) }
            // Between GET_FREE and CONFIGURE, everyone who takes this lock (imgboot, systemd)
            // keeps out of each other's way, and races only with those who do not (losetup).
            // Only an optimisation: after a short wait, go on without it.
            let outcome: Request.Outcome
            do {
                let locked = lockingControl && lockControl(control, logger: logger)
                defer { if locked { flock(control, LOCK_UN) } }
                outcome = try request.attempt(control: control)
            }
            switch outcome {
            case .attached(let device):
                logger.debug("attached \(device.path) to \(path) bytes \(offset)+\(size)\(readOnly ? " read-only" : "") (diskseq \(device.diskSequence.map(String.init) ?? "?"), attempt \(attempt))")
                return device
            case .lostRace(let what):
                logger.debug("\(what); trying another")
            }
        }
        throw request.failure(.gaveUp(attempts: maxAttempts), nil)
    }

    /// What one attach is about, and one attempt at it.
    private final class Request {
        let backingFD: Int32
        var backing = stat()
        let path: String
        let offset: UInt64
        let size: UInt64
        let readOnly: Bool
        let partition: Int?

        init(backingFD: Int32, path: String, offset: UInt64, size: UInt64, readOnly: Bool, partition: Int?) {
            self.backingFD = backingFD
            self.path = path
            self.offset = offset
            self.size = size
            self.readOnly = readOnly
            self.partition = partition
        }

        func failure(_ operation: AttachError.Operation, _ code: Int32?) -> AttachError {
            AttachError(image: path, partition: partition, operation, errno: code)
        }

        enum Outcome {
            case attached(LoopDevice)
            /// Someone else took, removed or detached the device: try another.
            case lostRace(String)
        }

        /// GET_FREE, open, CONFIGURE, check. Throws only what asking again would not mend.
        func attempt(control: Int32) throws(AttachError) -> Outcome {
            let number = imgboot_loop_get_free(control)
            guard number >= 0 else { throw failure(.getFreeLoopDevice, errno) }
            let device = "/dev/loop\(number)"

            var loopFD = open(device, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
            // A static /dev (a container's) has no node for a device the kernel made after it
            // was populated: make it, as devtmpfs would have.
            if loopFD < 0 && errno == ENOENT, try LoopDevice.makeMissingNode(number: Int(number), path: device, failure: failure) {
                loopFD = open(device, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
            }
            if loopFD < 0 {
                let e = errno
                // Removed (LOOP_CTL_REMOVE) by someone between GET_FREE and open.
                if e == ENOENT || e == ENXIO || e == ENODEV {
                    return .lostRace("\(device) vanished before it could be opened (\(errnoString(e)))")
                }
                throw failure(.openLoopDevice(device), e)
            }

            if imgboot_loop_configure(loopFD, backingFD, offset, size, readOnly ? 1 : 0, path) != 0 {
                let e = errno
                Glibc.close(loopFD)
                // Someone else configured (or holds) the device since GET_FREE named it.
                if e == EBUSY || e == EAGAIN {
                    return .lostRace("\(device) was taken by someone else (\(errnoString(e)))")
                }
                throw failure(.configure(device), e)
            }

            var status = imgboot_loop_status()
            if imgboot_loop_get_status(loopFD, &status) != 0 {
                let e = errno
                Glibc.close(loopFD)
                // ENXIO: unbound again already — someone detached it; it is not ours any more.
                if e == ENXIO { return .lostRace("\(device) was detached by someone else right after configuring") }
                throw failure(.verify(device), e)
            }
            let isOurs = status.backing_device == UInt64(backing.st_dev)
                && status.backing_inode == UInt64(backing.st_ino)
                && status.offset == offset && status.size_limit == size
                && status.number == UInt32(number)
            guard isOurs else {
                // Someone detached ours and attached theirs in between. Closing only drops our
                // reference to their device; never LOOP_CLR_FD a device that is not ours.
                Glibc.close(loopFD)
                return .lostRace("\(device) shows another backing file or range than configured; leaving it alone")
            }
            guard status.autoclear != 0, (status.read_only != 0) == readOnly else {
                // Ours, but the kernel did not keep the flags. Closing it detaches it (if
                // autoclear is off, the kernel is broken beyond what imgboot can repair).
                Glibc.close(loopFD)
                throw failure(.flagsNotKept(device, readOnly: status.read_only != 0, autoclear: status.autoclear != 0), nil)
            }

            var sequence: UInt64 = 0
            // Kernels before 5.15 have no disk sequence; isDetached then compares the backing
            // file and offset instead.
            let diskSequence = imgboot_block_device_disk_sequence(loopFD, &sequence) == 0 ? sequence : nil
            return .attached(LoopDevice(
                fd: loopFD, number: Int(number), readOnly: readOnly, offset: offset, size: size,
                diskSequence: diskSequence,
                backingFile: readSysfs("/sys/block/loop\(number)/loop/backing_file")))
        }
    }

    /// Makes the node /dev/loopN for a loop device the kernel has but /dev lacks — a
    /// container's static /dev (Docker's, Podman's) holds the nodes that existed when it
    /// started, and LOOP_CTL_GET_FREE may name a device made since — as devtmpfs and udev make
    /// it: a block device with the numbers sysfs gives (loop's minors need not be N), mode
    /// 0660, group disk. The node stays, as theirs do. Returns false when the kernel has no such
    /// device (it was removed meanwhile: not a missing node). A /dev where no node can be made
    /// is an error that says what is missing and what to do.
    static func makeMissingNode(number: Int, path: String,
                                failure: (AttachError.Operation, Int32?) -> AttachError) throws(AttachError) -> Bool {
        guard let numbers = readSysfs("/sys/block/loop\(number)/dev"),
              let colon = numbers.firstIndex(of: ":"),
              let major = UInt32(numbers[..<colon]), let minor = UInt32(numbers[numbers.index(after: colon)...])
        else { return false }
        let dev = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dev >= 0 else { throw failure(.makeDeviceNode(path, major: major, minor: minor), errno) }
        defer { Glibc.close(dev) }
        let name = "loop\(number)"
        if imgboot_mknod_block(dev, name, 0o660, major, minor) != 0 {
            let e = errno
            // Someone else (another imgboot, udev) made it meanwhile.
            if e == EEXIST { return true }
            throw failure(.makeDeviceNode(path, major: major, minor: minor), e)
        }
        // The mode without the umask, and the group udev gives disks (root's where there is none).
        _ = fchmodat(dev, name, 0o660, 0)
        if let group = getgrnam("disk") { _ = fchownat(dev, name, 0, group.pointee.gr_gid, AT_SYMLINK_NOFOLLOW) }
        return true
    }

    /// Takes the exclusive flock on /dev/loop-control that systemd also takes around choosing
    /// and configuring a device, waiting at most 0.5 s for it (whoever holds it may hang;
    /// we must not). Returns whether it is held.
    private static func lockControl(_ control: Int32, logger: Logger) -> Bool {
        let locked = waitUntil(deadline: ContinuousClock.now + .milliseconds(500), longestPause: .milliseconds(1)) {
            flock(control, LOCK_EX | LOCK_NB) == 0
        }
        if !locked { logger.debug("/dev/loop-control stayed locked by someone else for 0.5 s; going on without the lock") }
        return locked
    }

    /// Sleeps before attempt `attempt` (2…): a random time up to `attempt - 1` ms, at most
    /// 20 ms, so that racing attachers spread out. 50 attempts sleep under 0.8 s in all.
    private static func pause(attempt: Int) {
        let limit = UInt32(min(attempt - 1, 20)) * 1000
        usleep(UInt32.random(in: limit / 4...limit))
    }

    /// Closes this object's descriptor. If nothing else (a mount) holds the device, the
    /// kernel detaches it; see `waitUntilDetached(timeout:)`. Idempotent.
    ///
    /// Does not throw: close(2) on Linux releases the descriptor whatever it returns, and a
    /// loop device has no buffered writes of ours that an error could report.
    public func close() {
        guard fileDescriptor >= 0 else { return }
        Glibc.close(fileDescriptor)
        fileDescriptor = -1
    }

    /// Whether the attachment this object made is gone: /dev/loopN detached, removed, or
    /// already attached anew by someone else. Reads sysfs only — opening /dev/loopN would
    /// itself hold the device.
    public var isDetached: Bool { identity.isDetached }

    /// What identifies this attachment, to check later (from another process, e.g. `imgboot
    /// umount`) whether it is gone.
    public var identity: LoopIdentity {
        LoopIdentity(number: number, diskSequence: diskSequence, backingFile: backingFile, offset: offset)
    }

    /// After `close()`, waits until the kernel has detached the device, polling sysfs (from
    /// 0.2 ms apart, growing to 20 ms) for at most `timeout`. Returns
    /// whether it is detached; false at once while this object still holds the device, and
    /// false when a mount still holds it after `timeout`.
    public func waitUntilDetached(timeout: Duration = .seconds(2)) -> Bool {
        guard fileDescriptor < 0 else { return false }
        return waitUntil(deadline: ContinuousClock.now + timeout) { isDetached }
    }
}

/// The contents of a sysfs attribute without its trailing newline, or nil when it cannot be
/// read (most often: it does not exist).
func readSysfs(_ path: String, relativeTo directory: Int32 = AT_FDCWD) -> String? {
    guard let bytes = readFile(path, limit: 4096, relativeTo: directory) else { return nil }
    var text = String(decoding: bytes, as: UTF8.self)
    while text.last == "\n" { text.removeLast() }
    return text
}

/// One attachment of a loop device: /dev/loopN as imgboot configured it, told apart from any
/// later attachment of the same device by its disk sequence number (or, on kernels without
/// one, by backing file and offset).
public struct LoopIdentity: Sendable, Equatable {
    public var number: Int
    public var diskSequence: UInt64?
    public var backingFile: String?
    public var offset: UInt64

    public init(number: Int, diskSequence: UInt64?, backingFile: String?, offset: UInt64) {
        self.number = number
        self.diskSequence = diskSequence
        self.backingFile = backingFile
        self.offset = offset
    }

    /// Whether this attachment is gone (the device detached, or attached anew by anyone),
    /// read from sysfs only: opening the device would hold it.
    public var isDetached: Bool { isDetached(sysBlock: AT_FDCWD, prefix: "/sys/block/") }

    /// `isDetached`, looked up in /sys/block open at `sysBlock` (for a process that has no
    /// /sys mounted: `LockKeeper`).
    func isDetached(sysBlock: Int32) -> Bool { isDetached(sysBlock: sysBlock, prefix: "") }

    private func isDetached(sysBlock: Int32, prefix: String) -> Bool {
        let sysfs = prefix + "loop\(number)"
        guard let sequenceText = readSysfs(sysfs + "/diskseq", relativeTo: sysBlock) else { return true }  // removed
        if let diskSequence, UInt64(sequenceText) != diskSequence { return true }
        guard let backing = readSysfs(sysfs + "/loop/backing_file", relativeTo: sysBlock) else { return true }
        if diskSequence == nil {
            if backing != backingFile { return true }
            if readSysfs(sysfs + "/loop/offset", relativeTo: sysBlock).flatMap({ UInt64($0) }) != offset { return true }
        }
        return false
    }

    /// Waits (bounded) until every one of `identities` is detached; returns whether they are.
    public static func waitUntilDetached(_ identities: [LoopIdentity], timeout: Duration = .seconds(2)) -> Bool {
        waitUntil(deadline: ContinuousClock.now + timeout) { identities.allSatisfy(\.isDetached) }
    }
}
