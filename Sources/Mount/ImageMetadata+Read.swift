#if canImport(Glibc)
import Glibc
#endif
import Attach
import CLinux
import Dissect
import Logging

/// Reading an image's metadata: the root (and /usr) partition mounted read-only as *detached*
/// mounts (fsmount), attached to no mount namespace at all — never the host's — reached only
/// through a descriptor, and gone when it is closed. Reads are bounded and resolved inside the
/// image, so a huge, binary or symlinked file cannot hurt. What the bytes mean is
/// `ImageMetadata(parsing:…)`, pure, in ImageMetadata.swift.
extension ImageMetadata {
    /// Reads the metadata of `image`. Needs root (loop devices, mounts).
    public static func read(_ image: DissectedImage, logger: Logger) throws -> ImageMetadata {
        let root = image.partitions.first { $0.mountPoint == "/" }
        let usr = image.partitions.first { $0.mountPoint == "/usr" }
        let wanted = [root, usr].compactMap { $0 }
        guard !wanted.isEmpty else { return ImageMetadata(osRelease: [], hostname: nil, machineId: nil) }

        let attached = try AttachedImage.attach(image, partitions: wanted.map { (number: $0.number, readOnly: true) }, logger: logger)
        defer {
            attached.close()
            _ = attached.waitUntilDetached()
            attached.unlock()
        }
        func mountDetached(_ p: Partition?) throws -> Int32? {
            guard let p, let device = attached.device(partition: p.number), let fs = p.fsType else { return nil }
            let fd = detachedMount(device: device.path, fsType: fs)
            guard fd >= 0 else {
                throw MountError(image: image.image, partition: p.displayName, .failed(operation: "mount \(fs) read-only", errno: errno))
            }
            return fd
        }
        let rootFD = try mountDetached(root)
        defer { if let rootFD { close(rootFD) } }
        let usrFD = try mountDetached(usr)
        defer { if let usrFD { close(usrFD) } }

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
        return ImageMetadata(parsing: osRelease, hostname: hostname, machineId: machineId, hasSystemd: systemd)
    }

    /// A read-only, nodev, nosuid, noexec mount of `device` attached nowhere, with the options
    /// that keep a read-only mount from writing (no journal replay): the plan's own read-only
    /// options for the filesystem. -1 with errno on failure.
    static func detachedMount(device: String, fsType: String) -> Int32 {
        let options = MountPlan.mountOptions(fsType: fsType, readOnly: true) + ["nosuid", "noexec"]
        return imgboot_mount_detached(device, fsType, options.joined(separator: ","))
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
        var data = [UInt8](repeating: 0, count: limit)
        var done = 0
        while done < limit {
            let n = data.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.read(fd, base + done, limit - done)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return Array(data[0..<done])
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
