#if canImport(Glibc)
import Glibc
#endif
import Support
import CLinux
import Logging
import Mount

/// The machine's own cgroup in the unified (v2) hierarchy, `…/imgboot/MACHINE`, so that an init
/// inside can manage its services. On hosts with the hybrid layout the unified hierarchy is at
/// /sys/fs/cgroup/unified; on pure v2 hosts at /sys/fs/cgroup. Removed (depth first: systemd
/// makes children) when the machine ends.
public final class MachineCgroup {
    public let path: String
    /// An O_DIRECTORY descriptor, for clone3's CLONE_INTO_CGROUP.
    public let fd: Int32
    private let logger: Logger

    /// The unified hierarchy's mount point, or nil when the host has none.
    public static func unifiedRoot() -> String? { CgroupHierarchy.unifiedRoot() }

    /// Creates the machine's cgroup. Nil (with a debug line) when the host has no unified
    /// hierarchy: the container then runs without a cgroup of its own.
    public static func create(machine: String, logger: Logger) throws(BootError) -> MachineCgroup? {
        guard let root = unifiedRoot() else {
            logger.debug("no cgroup2 hierarchy on this host: the machine gets no cgroup of its own")
            return nil
        }
        let path = try makeDirectory(in: root, machine: machine)
        let fd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            rmdir(path)
            throw BootError(image: machine, "open cgroup \(path)", errno: e)
        }
        return MachineCgroup(path: path, fd: fd, logger: logger)
    }

    private init(path: String, fd: Int32, logger: Logger) {
        self.path = path
        self.fd = fd
        self.logger = logger
    }

    deinit { close(fd) }

    /// Delegates the cgroup to the container's root (`users`), as cgroup v2 delegation has it:
    /// the directory and the files that let its owner make children and move processes. systemd
    /// inside, root of its user namespace, manages its services below it.
    func delegate(to users: UserRange) throws(BootError) {
        for name in [".", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
            guard fchownat(fd, name, users.host(0), users.host(0), 0) == 0 || errno == ENOENT else {
                throw BootError(image: path, "delegate \(name) to the container's root", errno: errno)
            }
        }
    }

    /// Removes the cgroup and whatever the machine made below it. Its processes are gone by
    /// then; the kernel may take a moment to let go of the last one, hence the bounded retry.
    public func remove() {
        for attempt in 0..<50 {
            if MachineCgroup.removeTree(path) { return }
            if attempt == 0 { logger.debug("cgroup \(path) still busy; retrying") }
            usleep(10_000)
        }
        logger.warning("cannot remove cgroup \(path): \(errnoString(errno))")
    }

    /// Makes `ROOT/imgboot/MACHINE` in a cgroup hierarchy and returns it. The name is the
    /// machine's, unique among running machines (the registry sees to that), so one already
    /// there was left by a killed machine of that name: empty, and removed first.
    static func makeDirectory(in root: String, machine: String) throws(BootError) -> String {
        let parent = root + "/imgboot"
        if mkdir(parent, 0o755) != 0 && errno != EEXIST {
            throw BootError(image: machine, "create cgroup \(parent)", errno: errno)
        }
        let path = parent + "/" + machine
        if access(path, F_OK) == 0 { removeTree(path) }
        guard mkdir(path, 0o755) == 0 else { throw BootError(image: machine, "create cgroup \(path)", errno: errno) }
        return path
    }

    /// rmdir depth first (systemd makes child cgroups); true when `path` is gone.
    @discardableResult
    static func removeTree(_ path: String) -> Bool { Directory.removeEmptyTree(path) }
}
