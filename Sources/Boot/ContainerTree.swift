#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Mount

/// The parts of a container's tree that imgboot adds around the image, prepared by the parent
/// in its private mount namespace before the child starts: a tmpfs /dev with the device nodes
/// a container may use and no others, devpts, /dev/shm, /run (with /run/host/notify), /tmp,
/// the host's resolv.conf and timezone, and the user's bind mounts. (What belongs to the new
/// namespaces — /proc, /sys, cgroup2, mqueue — the child mounts itself.)
///
/// Every path is looked up inside the tree; the API mount points must be real directories, so
/// an image whose /dev is a symlink is refused rather than followed.
struct ContainerTree {
    let root: String
    let image: String
    /// With a user namespace: the host IDs of the container's users. What imgboot creates here
    /// belongs to the container's root (`users.host(0)`), not the host's.
    let users: UserRange?
    /// The user namespace, for binds asked to be idmapped (`:idmap`); -1 when there is none or
    /// its map is the identity.
    let idmap: Int32
    let logger: Logger

    init(root: String, image: String, users: UserRange? = nil, idmap: Int32 = -1, logger: Logger) {
        self.root = root
        self.image = image
        self.users = users
        self.idmap = idmap
        self.logger = logger
    }

    typealias Bind = ContainerSpec.Bind

    /// What the parent keeps from the preparation.
    struct Prepared: ~Copyable {
        /// The notify socket, bound at /run/host/notify in the tree.
        var notify: Int32
    }

    static let devices: [(name: String, major: UInt32, minor: UInt32)] = [
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    ]

    func prepare(binds: [Bind], shareNetwork: Bool, volatileEtc: Bool, mountSys: Bool = false) throws(BootError) -> Prepared {
        let top = try openRoot()
        defer { close(top) }

        // /proc and /sys belong to the child's new namespaces, so the child mounts them; their
        // mount points are checked (or made, on a writable tree) here, as /dev's is, so that an
        // image whose /proc is a symlink or a file gets the same words as one whose /dev is.
        for path in ["/proc", "/sys"] { _ = try mountPoint(path, top: top) }
        // Except sysfs under a user namespace on the host's network: the child could not.
        if mountSys {
            try mount("sysfs", fsType: "sysfs", at: "/sys", options: "", flags: UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), top: top)
        }

        // /dev
        try mount("tmpfs", fsType: "tmpfs", at: "/dev", options: owned("mode=0755,size=4m,nr_inodes=64k"), flags: UInt(MS_NOSUID | MS_NOEXEC), top: top)
        let dev = try resolve("/dev", top: top)
        for d in Self.devices {
            guard mknodat(dev.fd, d.name, S_IFCHR | 0o666, dev_t(imgboot_makedev(d.major, d.minor))) == 0,
                  fchmodat(dev.fd, d.name, 0o666, 0) == 0 else {
                throw BootError(image: image, "create /dev/\(d.name)", errno: errno)
            }
            try own(d.name, in: dev.fd, "/dev/\(d.name)")
        }
        for (name, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)] as [(String, mode_t)] {
            guard mkdirat(dev.fd, name, mode) == 0, fchmodat(dev.fd, name, mode, 0) == 0 else {
                throw BootError(image: image, "create /dev/\(name)", errno: errno)
            }
            try own(name, in: dev.fd, "/dev/\(name)")
        }
        for (link, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            guard symlinkat(target, dev.fd, link) == 0 else { throw BootError(image: image, "create /dev/\(link)", errno: errno) }
            try own(link, in: dev.fd, "/dev/\(link)")
        }
        let console = openat(dev.fd, "console", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard console >= 0 else { throw BootError(image: image, "create /dev/console", errno: errno) }
        close(console)
        try own("console", in: dev.fd, "/dev/console")
        // New ptys belong to whoever opens them, in the group `tty` (5) — the container's.
        let tty = users.map { $0.host(5) } ?? 5
        try mount("devpts", fsType: "devpts", at: "/dev/pts", options: "newinstance,ptmxmode=0666,mode=0620,gid=\(tty)",
                  flags: UInt(MS_NOSUID | MS_NOEXEC), top: top)
        try mount("tmpfs", fsType: "tmpfs", at: "/dev/shm", options: owned("mode=1777,size=25%,nr_inodes=1m"),
                  flags: UInt(MS_NOSUID | MS_NODEV), top: top)

        // /run, /tmp
        try mount("tmpfs", fsType: "tmpfs", at: "/run", options: owned("mode=0755,size=20%,nr_inodes=800k"),
                  flags: UInt(MS_NOSUID | MS_NODEV), top: top)
        try mount("tmpfs", fsType: "tmpfs", at: "/tmp", options: owned("mode=1777,size=25%,nr_inodes=1m"),
                  flags: UInt(MS_NOSUID | MS_NODEV), top: top)
        let run = try resolve("/run", top: top)
        guard mkdirat(run.fd, "host", 0o755) == 0 else { throw BootError(image: image, "create /run/host", errno: errno) }
        try own("host", in: run.fd, "/run/host")
        let host = try resolve("/run/host", top: top)
        try writeFile(in: host.fd, "container-manager", "imgboot\n")
        try writeFile(in: host.fd, "boot_id", Container.randomUUID() + "\n")
        let notify = try bindNotifySocket(in: host)
        try own("notify", in: host.fd, "/run/host/notify")

        // The host's DNS configuration (a private copy: the container cannot write the host's)
        // and timezone.
        if shareNetwork, let resolv = readFile("/etc/resolv.conf") {
            try provide(resolv, as: "/etc/resolv.conf", copyName: "resolv.conf", host: host, top: top, volatileEtc: volatileEtc)
        }
        if let zone = readFile("/etc/localtime") {
            try provide(zone, as: "/etc/localtime", copyName: "localtime", host: host, top: top, volatileEtc: volatileEtc)
        }

        for bind in binds { try bindFromHost(bind, top: top) }
        return Prepared(notify: notify)
    }

    // MARK: Pieces

    /// The container's root as the host numbers it, with a user namespace.
    private var owner: (uid: UInt32, gid: UInt32)? { users.map { ($0.host(0), $0.host(0)) } }

    /// tmpfs options, owned by the container's root when there is a user namespace.
    private func owned(_ options: String) -> String {
        guard let users else { return options }
        return options + ",uid=\(users.host(0)),gid=\(users.host(0))"
    }

    /// Gives `name` (in the directory `dir`; a symlink itself, not its target) to the container's
    /// root, when there is a user namespace: what imgboot creates in the tree is root's inside.
    private func own(_ name: String, in dir: Int32, _ path: String) throws(BootError) {
        guard let users else { return }
        guard fchownat(dir, name, users.host(0), users.host(0), AT_SYMLINK_NOFOLLOW) == 0 else {
            throw BootError(image: image, "give \(path) to the container's root", errno: errno)
        }
    }

    private func openRoot() throws(BootError) -> Int32 {
        let fd = open(root, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw BootError(image: image, "open the container's tree \(root)", errno: errno) }
        return fd
    }

    private func resolve(_ path: String, top: Int32, followFinal: Bool = false) throws(BootError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: followFinal)
        } catch {
            let what: String = switch error.errno {
            case ENOENT: "the image has no \(path) directory"
            case ELOOP: "the image's \(path) is a symlink; imgboot mounts \(path) only on a real directory"
            case ENOTDIR: "the image's \(path) is not a directory"
            default: "cannot open \(path) in the image: \(String(cString: strerror(error.errno)))"
            }
            throw BootError(image: image, what)
        }
    }

    /// A directory of the tree to mount an API filesystem on: a real directory (never through a
    /// symlink at its end), created when it is missing on a writable tree.
    private func mountPoint(_ path: String, top: Int32) throws(BootError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: false)
        } catch where error.errno == ENOENT {
            try createDirectory(path, top: top)
            return try resolve(path, top: top)
        } catch {
            return try resolve(path, top: top)
        }
    }

    /// Mounts a filesystem on a directory of the tree (creating it on a writable tree).
    private func mount(_ source: String, fsType: String, at path: String, options: String, flags: UInt, top: Int32) throws(BootError) {
        let target = try mountPoint(path, top: top)
        if let failure = LibMount.mount(source: source, target: target.procPath, fsType: fsType, options: options, flags: flags) {
            throw BootError(image: image, "mount \(fsType) on \(path)", errno: failure.errno)
        }
    }

    /// A missing mount point (and its missing parents, as nspawn makes them for `--bind`): made
    /// when its parent is writable (a tmpfs root, an overlay in RAM, a writable image), refused
    /// on a read-only image.
    private func createDirectory(_ path: String, top: Int32) throws(BootError) {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let name = String(path[path.index(after: slash)...])
        let parent = try parentDirectory(of: path, top: top)
        if parent.isOnReadOnlyMount {
            throw BootError(image: image, "the read-only image has no \(path) directory (imgboot never writes the image to create it)")
        }
        let parentFD = parent.fd
        if creatingAs(owner, { mkdirat(parentFD, name, 0o755) }) != 0 {
            guard errno == EEXIST else { throw BootError(image: image, "create \(path)", errno: errno) }
            return
        }
        try own(name, in: parent.fd, path)
    }

    /// The directory holding `path`, created first (with its own parents) when it is missing.
    private func parentDirectory(of path: String, top: Int32) throws(BootError) -> TreePath {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let parentPath = path[..<slash].isEmpty ? "/" : String(path[..<slash])
        do {
            return try TreePath(root: top, path: parentPath, followFinal: true)
        } catch where error.errno == ENOENT && parentPath != "/" {
            try createDirectory(parentPath, top: top)
        } catch {
            // Any other failure: resolve() below says what it is, in the user's words.
        }
        return try resolve(parentPath, top: top, followFinal: true)
    }

    private func bindNotifySocket(in host: borrowing TreePath) throws(BootError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw BootError(image: image, "create the notify socket", errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array("\(host.procPath)/notify".utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw BootError(image: image, "bind the notify socket /run/host/notify", errno: e)
        }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    private func writeFile(in dir: Int32, _ name: String, _ content: [UInt8], mode: mode_t = 0o644) throws(BootError) {
        let fd = creatingAs(owner) { openat(dir, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode) }
        guard fd >= 0 else { throw BootError(image: image, "create \(name)", errno: errno) }
        defer { close(fd) }
        if let users, fchown(fd, users.host(0), users.host(0)) != 0 {
            throw BootError(image: image, "give \(name) to the container's root", errno: errno)
        }
        var done = 0
        while done < content.count {
            let n = content.withUnsafeBytes { write(fd, $0.baseAddress! + done, content.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw BootError(image: image, "write \(name)", errno: errno) }
            done += n
        }
    }

    private func writeFile(in dir: Int32, _ name: String, _ content: String) throws(BootError) {
        try writeFile(in: dir, name, Array(content.utf8))
    }

    /// Puts a copy of a host file at `path` in the container, without writing the image: on a
    /// volatile /etc (tmpfs or overlay in RAM) as a file of its own; otherwise as a read-only bind
    /// of a copy in /run/host over the image's own regular file. An image whose file is a
    /// symlink (managed by the OS itself, e.g. systemd-resolved) or missing on a read-only tree
    /// keeps what it has.
    private func provide(_ content: [UInt8], as path: String, copyName: String, host: borrowing TreePath, top: Int32, volatileEtc: Bool) throws(BootError) {
        guard let etc = try? TreePath(root: top, path: "/etc") else { return }  // no /etc: nothing expects the file
        let name = String(path.split(separator: "/").last ?? "")
        var st = stat()
        let exists = fstatat(etc.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
        if volatileEtc && !etc.isOnReadOnlyMount {
            if exists && st.st_mode & S_IFMT == S_IFDIR { return }
            if exists { _ = unlinkat(etc.fd, name, 0) }
            try writeFile(in: etc.fd, name, content)
            return
        }
        guard exists && st.st_mode & S_IFMT == S_IFREG else {
            logger.debug("\(path): \(exists ? "not a regular file" : "missing") in the image; left as it is")
            return
        }
        try writeFile(in: host.fd, copyName, content)
        let source = try file("/run/host/\(copyName)", top: top)
        let target = try file(path, top: top)
        try bindReadOnly(source.procPath, on: target, path: path, top: top, kind: S_IFREG)
    }

    /// `--bind`/`--bind-ro`: a host path at a path in the tree (created on a writable tree).
    private func bindFromHost(_ bind: Bind, top: Int32) throws(BootError) {
        var st = stat()
        guard stat(bind.source, &st) == 0 else { throw BootError(image: image, "--bind source \(bind.source)", errno: errno) }
        let isDirectory = st.st_mode & S_IFMT == S_IFDIR
        let source = open(bind.source, Int32(IMGBOOT_O_PATH) | O_CLOEXEC)
        guard source >= 0 else { throw BootError(image: image, "--bind source \(bind.source)", errno: errno) }
        defer { close(source) }
        let kind: mode_t = isDirectory ? S_IFDIR : S_IFREG
        let target: TreePath
        do {
            target = try TreePath(root: top, path: bind.target, kind: kind)
        } catch where error.errno == ENOENT {
            if isDirectory {
                try createDirectory(bind.target, top: top)
            } else {
                try createFile(bind.target, top: top)
            }
            do { target = try TreePath(root: top, path: bind.target, kind: kind) } catch {
                throw BootError(image: image, "--bind target \(bind.target)", errno: error.errno)
            }
        } catch {
            throw BootError(image: image, "--bind target \(bind.target)", errno: error.errno)
        }
        if bind.idmap ?? true, idmap >= 0 {
            // The host's owners, mapped into the container (the host's root is its root): one
            // mount, not recursive (a mapping is per mount), read-only from the start if asked.
            guard imgboot_bind_idmapped(source, idmap, bind.readOnly ? 1 : 0, target.fd) == 0 else {
                let e = errno
                if e == EINVAL || e == EPERM || e == EOPNOTSUPP {
                    throw BootError(image: image, "bind \(bind.source) on \(bind.target): \(String(cString: strerror(e))) (its filesystem, or a mount below it, cannot be idmapped; add :noidmap, or use --private-users=no)")
                }
                throw BootError(image: image, "bind \(bind.source) on \(bind.target)", errno: e)
            }
            return
        }
        guard Glibc.mount("/proc/self/fd/\(source)", target.procPath, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
            throw BootError(image: image, "bind \(bind.source) on \(bind.target)", errno: errno)
        }
        if bind.readOnly {
            let mounted: TreePath
            do { mounted = try TreePath(root: top, path: bind.target, kind: kind) } catch {
                throw BootError(image: image, "--bind target \(bind.target)", errno: error.errno)
            }
            guard Glibc.mount(nil, mounted.procPath, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
                throw BootError(image: image, "make \(bind.target) read-only", errno: errno)
            }
        }
    }

    private func createFile(_ path: String, top: Int32) throws(BootError) {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let parent = try parentDirectory(of: path, top: top)
        if parent.isOnReadOnlyMount {
            throw BootError(image: image, "the read-only image has no \(path) (imgboot never writes the image to create it)")
        }
        let name = String(path[path.index(after: slash)...])
        let parentFD = parent.fd
        let fd = creatingAs(owner) { openat(parentFD, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        guard fd >= 0 else { throw BootError(image: image, "create \(path)", errno: errno) }
        close(fd)
        try own(name, in: parent.fd, path)
    }

    private func file(_ path: String, top: Int32) throws(BootError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: false, kind: S_IFREG)
        } catch {
            throw BootError(image: image, "open \(path)", errno: error.errno)
        }
    }

    private func bindReadOnly(_ source: String, on target: borrowing TreePath, path: String, top: Int32, kind: mode_t) throws(BootError) {
        guard Glibc.mount(source, target.procPath, nil, UInt(MS_BIND), nil) == 0 else {
            throw BootError(image: image, "bind \(path)", errno: errno)
        }
        let mounted: TreePath
        do { mounted = try TreePath(root: top, path: path, followFinal: false, kind: kind) } catch {
            throw BootError(image: image, "bind \(path)", errno: error.errno)
        }
        guard Glibc.mount(nil, mounted.procPath, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV), nil) == 0 else {
            throw BootError(image: image, "make \(path) read-only", errno: errno)
        }
    }
}
