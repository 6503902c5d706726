#if canImport(Glibc)
import Glibc
#endif
import Support
import Attach
import CLinux
import Dissect
import Logging

/// Reading an image's metadata: the root and /usr partitions mounted read-only as a tree of
/// *detached* mounts (`ImageTree`), attached to no mount namespace at all — never the host's —
/// reached only through descriptors, and gone when they are closed. Reads are bounded and
/// resolved inside the image, so a huge, binary or symlinked file cannot hurt. What the bytes
/// mean is `ImageMetadata(parsing:…)`, pure, in ImageMetadata.swift.
extension ImageMetadata {
    /// Reads the metadata of `image`. Needs root (loop devices, mounts). `warn` gets what did
    /// not stop the reading (a /usr partition whose mount point cannot be used).
    public static func read(_ image: DissectedImage, logger: Logger, warn: (String) -> Void = { _ in }) throws -> ImageMetadata {
        // A /usr whose mount point the root lacks is still read on its own.
        let tree = try ImageTree.open(image, only: ["/", "/usr"], unplaceable: .keep, logger: logger)
        defer { try? tree.close() }  // read-only: nothing to write back, and the devices are awaited
        tree.warnings.forEach(warn)
        let rootFD = tree.mounts.first { $0.mountPoint == "/" }?.fd
        let usrFD = tree.mounts.first { $0.mountPoint == "/usr" }?.fd

        var osRelease: [UInt8]? = nil
        if let rootFD {
            osRelease = readBounded(rootFD, "etc/os-release", limit: limits.osRelease)
                ?? readBounded(rootFD, "usr/lib/os-release", limit: limits.osRelease)
        }
        if osRelease == nil, let usrFD { osRelease = readBounded(usrFD, "lib/os-release", limit: limits.osRelease) }
        let hostname = rootFD.flatMap { readBounded($0, "etc/hostname", limit: limits.hostname) }
        let machineId = rootFD.flatMap { readBounded($0, "etc/machine-id", limit: limits.machineId) }
        let systemd = [rootFD.map { ($0, "usr/lib/systemd/systemd") }, rootFD.map { ($0, "lib/systemd/systemd") },
                       usrFD.map { ($0, "lib/systemd/systemd") }].compactMap { $0 }
            .contains { isRegularFile($0.0, $0.1) }
        return ImageMetadata(parsing: osRelease, hostname: hostname, machineId: machineId, hasSystemd: systemd,
                             initPath: findInit(root: rootFD, usr: usrFD))
    }

    /// The first of `initPaths` that is an executable regular file, resolved in the tree as
    /// `boot` resolves it. Without a root, `boot --volatile=yes` runs on a fresh root whose
    /// /lib and /sbin lead into the image's /usr: the paths are looked up in /usr that way.
    static func findInit(root: Int32?, usr: Int32?) -> String? {
        if let root { return initPaths.first { isExecutableFile(root, $0) } }
        guard let usr else { return nil }
        return initPaths.first { path in
            let inUsr = path.hasPrefix("/usr/") ? String(path.dropFirst(5)) : String(path.dropFirst())
            return isExecutableFile(usr, inUsr)
        }
    }

    /// Whether `path` in the mount `root` (resolved inside it) is a regular file with an
    /// execute bit: what `access(X_OK)` asks of root, which the noexec mount would refuse.
    static func isExecutableFile(_ root: Int32, _ path: String) -> Bool {
        let relative = String(path.drop { $0 == "/" })
        let fd = imgboot_openat2(root, relative, UInt64(IMGBOOT_O_PATH | O_CLOEXEC), 0,
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        return fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && st.st_mode & 0o111 != 0
    }

    /// At most `limit` bytes of a regular file at `path` inside the mount `root` (resolved inside
    /// it); nil when it is missing or not a regular file (a FIFO, a device, a directory).
    static func readBounded(_ root: Int32, _ path: String, limit: Int) -> [UInt8]? {
        let fd = imgboot_openat2(root, path, UInt64(O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), 0,
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        return try? readAll(fd, limit: limit)
    }

    /// Whether `path` inside the mount `root` (resolved inside it) is a regular file.
    static func isRegularFile(_ root: Int32, _ path: String) -> Bool {
        let fd = imgboot_openat2(root, path, UInt64(IMGBOOT_O_PATH | O_CLOEXEC), 0,
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        return fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
    }
}
