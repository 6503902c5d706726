#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Support

/// The devices a container may open or create: the few of its /dev and its ptys, nothing else.
/// Without this, root in the container — which keeps CAP_MKNOD and CAP_SYS_ADMIN, as under
/// nspawn — could make a node for a host disk on /dev (a tmpfs that must allow nodes) and read
/// it. Enforced by a BPF device program on the machine's cgroup2 directory (which the child is
/// cloned straight into), or, where that is impossible, by the cgroup v1 devices controller
/// (`…/devices/imgboot/MACHINE`) — which costs a migration of the child, ~12 ms here.
final class DeviceCgroup {
    /// Restricts the machine's devices. Returns the v1 cgroup to move the child into (and remove
    /// afterwards) when the BPF program could not be attached; nil when it was, or when the host
    /// offers neither (then device access is not restricted, and the debug log says so).
    static func restrict(_ cgroup: MachineCgroup?, machine: String, logger: Logger) throws(BootError) -> DeviceCgroup? {
        if let cgroup {
            let entries = ContainerDevices.filterEntries
            let majors = entries.map(\.major), minors = entries.map(\.minor)
            if imgboot_attach_device_filter(cgroup.fd, majors, minors, entries.count) == 0 { return nil }
            logger.debug("cannot attach the BPF device program to \(cgroup.path): \(errnoString(errno)); trying the v1 devices controller")
        }
        return try create(machine: machine, logger: logger)
    }

    static let root = "/sys/fs/cgroup/devices"

    let path: String
    private let logger: Logger

    private init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// Creates the machine's devices cgroup with only `allowed`; nil (with a debug line) when the
    /// host has no v1 devices controller.
    static func create(machine: String, logger: Logger) throws(BootError) -> DeviceCgroup? {
        guard access(root + "/devices.allow", W_OK) == 0 else {
            logger.debug("no cgroup v1 devices controller: device access is not restricted")
            return nil
        }
        let path = try MachineCgroup.makeDirectory(in: root, machine: machine)
        let cgroup = DeviceCgroup(path: path, logger: logger)
        do {
            try cgroup.write("devices.deny", "a")
            for rule in ContainerDevices.v1Rules { try cgroup.write("devices.allow", rule) }
        } catch {
            cgroup.remove()
            throw error
        }
        return cgroup
    }

    /// Moves `pid` (the container's first process, before it does anything) into the cgroup.
    func add(_ pid: pid_t) throws(BootError) {
        try write("cgroup.procs", String(pid))
    }

    private func write(_ file: String, _ value: String) throws(BootError) {
        let fd = open(path + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BootError(image: path, "open \(file)", errno: errno) }
        defer { close(fd) }
        do {
            try writeFully(fd, value.utf8)
        } catch {
            throw BootError(image: path, "write \"\(value)\" to \(file)", errno: error.code)
        }
    }

    /// Removes the cgroup once its processes are gone (bounded retry: the kernel lets go of the
    /// last one a moment after it is reaped).
    func remove() {
        for _ in 0..<50 {
            if rmdir(path) == 0 || errno == ENOENT { return }
            usleep(10_000)
        }
        logger.warning("cannot remove cgroup \(path): \(errnoString(errno))")
    }
}
