#if canImport(Glibc)
import Glibc
#endif
import Support
import Attach
import CLinux
import Dissect
import Logging

/// An image's tree for imgboot to read (or write one partition of) without booting it: each
/// partition mounted with the new mount API as a *detached* mount (`fsmount`), and the detached
/// mounts attached to one another (`move_mount`) where the image says — /usr, /home, /srv, /var
/// on the root — so that paths resolve as in a mounted tree. The tree belongs to no mount
/// namespace: it never appears in a mount table, is reached only through descriptors, and goes
/// away, all of it, when they are closed. Paths are resolved inside it (`openat2` with
/// RESOLVE_IN_ROOT): no symlink of the image leads out of it.
///
/// Read-only, unless one partition is asked for writable: that one alone is attached and
/// mounted read-write, with the image locked exclusively; every other one is read-only down to
/// the device (ext4 and xfs `norecovery`, btrfs `rescue=nologreplay`: no journal is replayed).
public final class ImageTree {
    public struct Mounted {
        public let partition: Partition
        /// Where the image says it goes ("/", "/usr", "/home").
        public let mountPoint: String
        /// The mount's descriptor (O_PATH-like, from fsmount). It stays valid once the mount is
        /// attached in the tree.
        public let fd: Int32
        public let writable: Bool
        /// Whether it is attached at its mount point (always, but for a partition whose mount
        /// point could not be used when the tree was opened with `unplaceable: .keep`).
        public let placed: Bool
    }

    /// The image's path, as given.
    public let image: String
    /// The partitions mounted, in mount order (root first).
    public private(set) var mounts: [Mounted] = []
    /// What did not stop the tree from being made (an ESP the kernel cannot mount), one line each.
    public private(set) var warnings: [String] = []
    private var attached: AttachedImage?
    private let logger: Logger

    private init(image: String, logger: Logger) {
        self.image = image
        self.logger = logger
    }

    deinit { try? close() }  // the backstop; `close()` reports what went wrong

    /// The tree's root directory: the root partition's mount (or, in a tree without one, the
    /// first partition's), or -1 when nothing is mounted.
    public var root: Int32 {
        (mounts.first { $0.mountPoint == "/" } ?? mounts.first)?.fd ?? -1
    }

    /// Mounts the partitions of `image` that `imgboot mount` would use (those whose mount points
    /// are in `only`, when given) as a tree. `writable`: the number of the one partition to
    /// mount read-write. A whole tree (no `only`) needs a root.
    ///
    /// A partition whose mount point cannot be used — missing in the read-only tree (imgboot
    /// never writes the image to make one), a symlink loop, not a directory, leading back to the
    /// root — is, by `unplaceable`, an error as for `imgboot mount`, left out, or kept mounted
    /// but unplaced (see `Mounted.placed`); a warning says why. ESP and XBOOTLDR only ever
    /// warn: the kernel may lack vfat. A filesystem that cannot be mounted is an error. Nothing
    /// is left attached or mounted when this throws.
    public enum Unplaceable: Sendable {
        case fail, skip, keep
    }

    public static func open(
        _ image: DissectedImage, writable: Int? = nil, only mountPoints: Set<String>? = nil,
        unplaceable: Unplaceable = .skip, logger: Logger
    ) throws -> ImageTree {
        let used = image.usedPartitions
            .filter { p in mountPoints.map { $0.contains(MountPlan.mountPoint(p)) } ?? true }
            .sorted(by: MountPlan.mountOrder)
        if mountPoints == nil, !used.contains(where: { $0.mountPoint == "/" }) { throw MountPlan.noRootError(image) }
        if let writable, let p = used.first(where: { $0.number == writable }), p.readOnly {
            throw MountError(image: image.image, partition: p.displayName, .other("read-only: \(ImageTree.whyReadOnly(p))"))
        }
        let tree = ImageTree(image: image.image, logger: logger)
        guard !used.isEmpty else { return tree }
        tree.attached = try AttachedImage.attach(
            image, partitions: used.map { (number: $0.number, readOnly: $0.number != writable) }, logger: logger)
        do {
            for p in used { try tree.mount(p, writable: p.number == writable, unplaceable: unplaceable) }
        } catch {
            try? tree.close()  // the error that matters is the one being thrown
            throw error
        }
        // The mounts hold the devices now; autoclear ends each with its last mount.
        tree.attached?.close()
        return tree
    }

    /// Why a partition cannot be written, for messages.
    public static func whyReadOnly(_ p: Partition) -> String {
        if let fs = p.fsType, PartitionSelection.readOnlyFilesystems.contains(fs) { return "\(fs) is a read-only filesystem" }
        return "the partition is marked read-only (GPT flag 60)"
    }

    private func mount(_ p: Partition, writable: Bool, unplaceable: Unplaceable) throws(MountError) {
        let optional = MountPlan.isOptional(p)
        guard let device = attached?.device(partition: p.number), let fs = p.fsType else {
            throw MountError(image: image, partition: p.displayName, .other("no loop device attached"))
        }
        let options = MountPlan.mountOptions(fsType: fs, readOnly: !writable) + ["nosuid", "noexec"]
        let fd = imgboot_mount_detached(device.path, fs, options.joined(separator: ","))
        guard fd >= 0 else {
            let error = MountError(image: image, partition: p.displayName,
                                   .failed(operation: "mount \(fs) \(writable ? "writable" : "read-only")", errno: errno))
            if optional {
                warnings.append("\(p.displayName) is not mounted: \(error.detail)")
                return
            }
            throw error
        }
        let point = MountPlan.mountPoint(p)
        if mounts.isEmpty || point == "/" {
            mounts.append(Mounted(partition: p, mountPoint: point, fd: fd, writable: writable, placed: point == "/"))
            return
        }
        do {
            try place(fd, at: point, partition: p)
            mounts.append(Mounted(partition: p, mountPoint: point, fd: fd, writable: writable, placed: true))
        } catch {
            if optional || unplaceable != .fail {
                warnings.append("\(p.displayName) is not mounted: \(error.detail)")
                logger.debug("\(image): \(p.displayName) is not mounted: \(error.detail)")
                if optional || unplaceable == .skip { Glibc.close(fd) } else {
                    mounts.append(Mounted(partition: p, mountPoint: point, fd: fd, writable: writable, placed: false))
                }
                return
            }
            Glibc.close(fd)
            throw error
        }
    }

    /// Attaches the detached mount `fd` on `path`, resolved inside the tree.
    private func place(_ fd: Int32, at path: String, partition p: Partition) throws(MountError) {
        let top = root
        let target: TreePath
        do { target = try TreePath(root: top, path: path) } catch {
            throw MountError(image: image, partition: p.displayName, .other(describeMountPoint(error)))
        }
        // A mount point that leads back to the root (`/var -> ../..`) would hide the whole tree.
        var a = stat(), b = stat()
        if fstat(target.fd, &a) == 0 && fstat(top, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw MountError(image: image, partition: p.displayName, .other("mount point \(path) leads to the image's root directory"))
        }
        // imgboot_attach_detached consumes the descriptor it is given; the tree keeps its own.
        let moving = dup(fd)
        guard moving >= 0, imgboot_attach_detached(moving, -1, 0, target.fd) == 0 else {
            throw MountError(image: image, partition: p.displayName, .failed(operation: "attach it on \(path)", errno: errno))
        }
    }

    /// The mount that the file open at `fd` lies on, if it is one of the tree's.
    public func mount(holding fd: Int32) -> Mounted? {
        var id: UInt64 = 0, unique: UInt64 = 0
        guard imgboot_mount_id(fd, "", &id, &unique) == 0 else { return nil }
        return mounts.first { m in
            var mid: UInt64 = 0, munique: UInt64 = 0
            return imgboot_mount_id(m.fd, "", &mid, &munique) == 0 && mid == id
        }
    }

    /// Opens `path` (absolute within the image; a relative one is taken from its root) with
    /// `flags`, resolved inside the tree. A final symlink is followed — inside the tree —
    /// unless `flags` has O_NOFOLLOW. Errors name the path as the user gave it.
    public func open(_ path: String, flags: Int32, mode: mode_t = 0) throws(MountError) -> Int32 {
        let relative = String(path.drop { $0 == "/" })
        let fd = imgboot_openat2(root, relative.isEmpty ? "." : relative, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode),
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { throw pathError(path, errno: errno) }
        return fd
    }

    /// The one-line error for `path` in the image failing with `e`.
    public func pathError(_ path: String, errno e: Int32) -> MountError {
        let what: String = switch e {
        case ENOENT: "no such file or directory in the image"
        case ENOTDIR: "not a directory in the image (or a component of the path is not)"
        case ELOOP: "too many levels of symlinks in the image"
        case EROFS: "on a read-only filesystem"
        default: errnoString(e)
        }
        return MountError(image: image, .other("\(path): \(what)"))
    }

    /// Takes the tree down: a writable partition's filesystem is synced first (a failure to
    /// write back is reported here), then every mount goes with its descriptor, the loop
    /// devices are awaited and the image unlocked. Idempotent.
    public func close() throws(MountError) {
        var failure: MountError?
        for m in mounts where m.writable {
            let dir = openat(m.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dir < 0 || imgboot_syncfs(dir) != 0 {
                failure = failure ?? MountError(image: image, partition: m.partition.displayName,
                                                .failed(operation: "write back \(m.mountPoint)", errno: errno))
            }
            if dir >= 0 { Glibc.close(dir) }
        }
        for m in mounts.reversed() { Glibc.close(m.fd) }
        let wrote = mounts.contains { $0.writable }
        mounts.removeAll()
        if let attached {
            attached.finish(logger: logger) {
                // What the loop device wrote is in the image file's page cache: on disk before
                // anyone else may take the image.
                guard wrote else { return }
                let fd = Glibc.open(image, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
                if fd < 0 || fsync(fd) != 0 {
                    failure = failure ?? MountError(image: image, .failed(operation: "flush the image to disk", errno: errno))
                }
                if fd >= 0 { Glibc.close(fd) }
            }
            self.attached = nil
        }
        if let failure { throw failure }
    }
}

/// How a mount point that cannot be used is described (as `imgboot mount` says it).
func describeMountPoint(_ error: ResolveError) -> String {
    switch error.errno {
    case ENOENT: "mount point \(error.path) does not exist in the read-only image (imgboot never writes the image to create it)"
    case ENOTDIR: "mount point \(error.path) is not a directory"
    case ELOOP: "mount point \(error.path) is a symlink loop"
    default: "cannot open mount point \(error.path): \(errnoString(error.code))"
    }
}
