#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Mount
import Support

/// Working with running machines: `imgboot enter` and `imgboot stop`.
public enum Machines {
    /// Runs `command` (default a shell) inside the running machine `name` — its namespaces, its
    /// root, its cgroup, the container's capability set, a clean environment — and returns its
    /// exit status, as `run` would.
    public static func enter(_ name: String, command: [String], environment: [String] = [], logger: Logger) throws -> Int32 {
        guard let machine = try MachineRegistry.lookup(name), machine.leader != nil else {
            throw BootError(image: name, "no such machine is running (see imgboot list)")
        }
        // Its namespaces are joined through this pidfd, which is proven to be the leader's.
        let leader = try machine.openLeader()
        let cgroup = machine.cgroup.map { open($0, O_DIRECTORY | O_RDONLY | O_CLOEXEC) } ?? -1
        defer { if cgroup >= 0 { close(cgroup) } }

        let command = command.isEmpty ? loginShell(machine.leaderPID, leader: leader.fd) : command
        let console = try Console.open(boot: false, requested: nil, subject: name)
        defer { console.restore() }
        var env = [
            "container=imgboot", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=\(console.terminalType)", "HOME=/root", "USER=root", "LOGNAME=root",
        ]
        for entry in environment {
            let name = entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? entry
            env.removeAll { $0.hasPrefix(name + "=") }
            env.append(entry)
        }
        // The machine's own capability set and filter: the first process the container can
        // see is no more privileged than the container, and maps nothing of imgboot's.
        let keep = Capabilities.keep(privateNetwork: machine.privateNetwork)
        let filter = try SyscallFilter.program(keeping: keep)
        let initFD = try ContainerInit.memfd(subject: name)
        defer { close(initFD) }
        var errorPipe: [Int32] = [-1, -1]
        guard imgboot_pipe_cloexec(&errorPipe) == 0 else { throw BootError(image: name, "create a pipe", errno: errno) }
        let signals = Signals()
        let cArgv = CStringArray([ContainerInit.name] + command), cEnv = CStringArray(env)
        let parentPidfd = imgboot_pidfd_open(getpid())
        defer { if parentPidfd >= 0 { close(parentPidfd) } }
        var pidfd: Int32 = -1
        let pid = filter.withUnsafeBytes { filterBytes in
            var config = imgboot_enter(
                leader_pidfd: leader.fd, cgroup_fd: cgroup, argv: UnsafePointer(cArgv.pointer), envp: UnsafePointer(cEnv.pointer),
                console_fd: console.slave, console_streams: console.streams,
                user_namespace: hasUserNamespace(machine.leaderPID) ? 1 : 0, parent_pidfd: parentPidfd, init_fd: initFD,
                seccomp_filter: filterBytes.baseAddress, seccomp_length: UInt32(filterBytes.count / 8),
                keep_capabilities: keep, error_fd: errorPipe[1])
            return imgboot_enter_start(&config, &pidfd)
        }
        let e = errno
        close(errorPipe[1])
        guard pid > 0 else {
            close(errorPipe[0])
            throw BootError(image: name, "start a process in the machine (clone3)", errno: e)
        }
        defer { close(pidfd) }
        let outcome = Supervisor(
            machine: name, boot: false, pid: pid, pidfd: pidfd, errorPipe: errorPipe[0], notify: -1,
            console: console, signals: signals, started: monotonicSeconds(),
            session: true, logger: logger
        ).run()
        return try outcome.exitStatus(boot: false, subject: name, argv: command)
    }

    /// Asks the machine `name` to power off (SIGRTMIN+4 to an init; SIGTERM to a `run`
    /// container's command), kills it after `timeout` seconds, and waits until imgboot has
    /// torn it down. Returns whether it stopped before the timeout.
    @discardableResult
    public static func stop(_ name: String, timeout: Double, logger: Logger) throws -> Bool {
        guard let machine = try MachineRegistry.lookup(name), machine.leader != nil else {
            throw BootError(image: name, "no such machine is running (see imgboot list)")
        }
        // Signalled only through this pidfd, which is proven to be the leader's.
        let leader = try machine.openLeader()
        let signal = machine.kind == .boot ? imgboot_sigrtmin() + 4 : SIGTERM
        guard imgboot_pidfd_send_signal(leader.fd, signal) == 0 else {
            throw BootError(image: name, "signal the machine", errno: errno)
        }
        var clean = wait(leader.fd, seconds: timeout)
        if !clean {
            logger.warning("\(name) did not stop within \(formatSeconds(timeout)) s; killing it")
            _ = imgboot_pidfd_send_signal(leader.fd, SIGKILL)
            _ = wait(leader.fd, seconds: 10)
        }
        // Until imgboot has detached its devices and removed its cgroup, the name stays taken.
        // (A lookup that fails now — the store made unusable meanwhile — counts as gone.)
        func stillRegistered() -> Bool { (try? MachineRegistry.lookup(name))??.supervisor == machine.supervisor }
        let deadline = Deadline(after: 10)
        while stillRegistered() && !deadline.hasPassed {
            usleep(5_000)
        }
        if stillRegistered() { clean = false }
        return clean
    }

    /// Root's login shell in the running machine whose leader is `pid` (proven by `pidfd`),
    /// read through the leader's root directory: /etc/passwd and the shell resolved inside the
    /// machine's tree, whatever it has made of it since it started.
    static func loginShell(_ pid: pid_t, leader pidfd: Int32) -> [String] {
        let root = open("/proc/\(pid)/root", Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { return LoginShell.fallback }
        defer { close(root) }
        // Still alive after the open: the PID was the leader's when /proc resolved it.
        guard imgboot_pidfd_send_signal(pidfd, 0) == 0 else { return LoginShell.fallback }
        return LoginShell.resolve(inTree: root)
    }

    /// Whether the process `pid` is in a user namespace other than imgboot's (the machine runs
    /// with --private-users other than `no`).
    static func hasUserNamespace(_ pid: pid_t) -> Bool {
        func namespace(_ path: String) -> String? {
            var buffer = [CChar](repeating: 0, count: 64)
            let n = readlink(path, &buffer, buffer.count - 1)
            return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        }
        guard let theirs = namespace("/proc/\(pid)/ns/user"), let ours = namespace("/proc/self/ns/user") else { return false }
        return theirs != ours
    }

    /// Waits until the process of `pidfd` ends (pidfds become readable), at most `seconds`.
    static func wait(_ pidfd: Int32, seconds: Double) -> Bool {
        waitReadable(pidfd, until: Deadline(after: seconds))
    }
}
