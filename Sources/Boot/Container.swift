#if canImport(Glibc)
import Glibc
#endif
import Attach
import CLinux
import Dissect
import Logging
import Mount
import Support

/// Runs a container from a disk image: attach, mount (in a private mount namespace), clone the
/// child into new namespaces, supervise it, and tear everything down — on success, on error,
/// and on Ctrl-C alike. After `run` returns, no loop device, mount or cgroup of the machine is
/// left. (After SIGKILL the kernel reclaims them: the child dies with imgboot.)
public enum Container {
    /// The initial executables tried for `boot`, in order (`inspect` names the one it finds).
    public static let initPaths = ImageMetadata.initPaths

    /// How many of `initPaths`, from the first, are systemd.
    static let systemdInitCount = 2

    /// Runs `spec` to its end and returns the exit status to leave with: `run` — the command's
    /// (128+N when killed by signal N, 127/126 when it cannot be executed); `boot` — 0 after a
    /// clean poweroff or halt, 133 after a reboot, else the init's status.
    public static func run(_ spec: ContainerSpec, logger: Logger) throws -> Int32 {
        let clock = StageClock(logger: logger)
        let image = spec.image.image
        var spec = spec
        // From here on, Ctrl-C and friends wait at the next checkpoint, so that whatever was
        // set up is undone in order; once the container runs, they go to it.
        let signals = Signals()

        // The host IDs of its users (--private-users), held until the machine ends. The name
        // asked for seeds the choice; a suffix the registry adds does not matter.
        let lease: UserRangeLease?
        do {
            if spec.privateUsers != .no { try StateStore.prepare([.users], subject: image) }
            lease = try UserRangeLease.lease(spec.privateUsers, machine: spec.machine)
        } catch let error as UserRangeLease.Failure {
            throw BootError(image: image, error.description)
        }
        defer { lease?.release() }
        let users: UserRange? = spec.privateUsers == .identity ? UserRange(base: 0, count: UserRange.size) : lease?.range

        // The machine's name, unique among running machines; held until the machine ends.
        let registration = try MachineRegistry.register(
            name: spec.machine, exact: spec.machineNameIsExplicit, image: absolutePath(image),
            mode: spec.plan.mode.rawValue, kind: spec.boot ? .boot : .run, privateNetwork: spec.privateNetwork,
            users: users, subject: image, stop: signals)
        defer { registration.unregister() }
        spec.machine = registration.machine.name

        let writable = spec.plan.attachments.contains { !$0.readOnly }
        if let other = try MountRecord.conflict(image: image, writable: writable, subject: image, stop: signals) {
            throw BootError(image: image, "image is busy: mounted\(other.writable ? " writable" : "") on \(other.directory) by imgboot mount")
        }
        let attached = try AttachedImage.attach(
            spec.image, partitions: spec.plan.attachments.map { (number: $0.number, readOnly: $0.readOnly) }, logger: logger)
        defer {
            attached.finish(logger: logger)
            clock.lap("teardown")
        }
        clock.lap("attach")
        try signals.checkpoint(image)

        let cgroup = try MachineCgroup.create(machine: spec.machine, logger: logger)
        defer { cgroup?.remove() }
        let devices = try DeviceCgroup.restrict(cgroup, machine: spec.machine, logger: logger)
        defer { devices?.remove() }

        let treeDirectory = try StateStore.treeDirectory(machine: spec.machine, subject: image)
        defer { rmdir(treeDirectory) }
        let console = try Console.open(boot: spec.boot, requested: spec.console, subject: image)
        defer { console.restore() }
        if let users { try console.giveSlave(to: users, subject: image) }
        let environment = makeEnvironment(spec, console: console)
        let keep = Capabilities.keep(privateNetwork: spec.privateNetwork)
        let filter = try SyscallFilter.program(keeping: keep)
        let initFD = Descriptor(spec.boot ? -1 : try ContainerInit.memfd(subject: image))
        // boot: argv[0] is replaced by the init the tree has (the go byte says which). run
        // without a command: root's (or --user's) login shell, read from the tree once it is mounted, is sent
        // to the child after the go byte.
        var command = spec.boot ? [initPaths[0]] + spec.arguments : (spec.arguments.isEmpty ? LoginShell.fallback : spec.arguments)
        let argv = spec.boot ? command : [ContainerInit.argv0(user: spec.user, workingDirectory: spec.workingDirectory)] + command
        // The whole plan: the image's mounts, then what the container gets around them. (A user
        // namespace cannot mount sysfs for the host's network namespace: imgboot does.)
        let plan = Self.plan(for: spec, cgroup: cgroup != nil)
        let operations = try ContainerPlan.Operations(plan)
        clock.lap("prepare")
        try signals.checkpoint(image)

        // Overlays' work directories beside host directories: removed once the container (and
        // its mount namespace, with the overlays) is gone — after the child is, whichever way.
        var workDirectories: [String] = []
        defer { MountedTree.removeWorkDirectories(workDirectories, logger: logger) }

        // The child starts first, in namespaces of its own, and waits. Its mount namespace (a
        // copy of ours) is where the tree is mounted — the host never sees it, and it goes with
        // the child, all at once — and its user namespace, once mapped, is what the image's
        // filesystems are idmapped to.
        var child = try spawn(spec, root: treeDirectory, argv: argv, environment: environment, console: console,
                              cgroup: cgroup, keep: keep, filter: filter, initFD: initFD.raw, users: users,
                              operations: operations, image: image)
        var started = false
        defer {
            if !started {
                // Before the go byte, nothing of the image's ran: killed, the child takes its
                // mount namespace and every mount of the tree with it.
                child.sync.close()
                _ = imgboot_pidfd_send_signal(child.pidfd.raw, SIGKILL)
                var code: Int32 = 0, killed: Int32 = 0
                _ = imgboot_pidfd_wait(child.pidfd.raw, 0, &code, &killed)
            }
        }
        if let users { try UserNamespaceSetup.writeMaps(pid: child.pid, users, subject: image) }
        if let cgroup, let users { try cgroup.delegate(to: users) }
        try devices?.add(child.pid)

        // Idmapped mounts need the namespace's descriptor; an identity map needs none.
        let idmap = Descriptor(users.map { $0.base == 0 ? -1 : open("/proc/\(child.pid)/ns/user", O_RDONLY | O_CLOEXEC) } ?? -1)
        if users != nil && users?.base != 0 && !idmap.isOpen {
            throw BootError(image: image, "open the container's user namespace", errno: errno)
        }
        var go = UInt8(IMGBOOT_GO)
        let notify = Descriptor(try UserNamespaceSetup.inMountNamespace(of: child.pid, subject: image, logger: logger) { () throws -> Int32 in
            guard mount(nil, "/", nil, UInt(MS_REC | MS_SLAVE), nil) == 0 else {
                throw BootError(image: image, "make the container's mount namespace a slave", errno: errno)
            }
            // Staging mounts (overlay layers, yes's source of /usr) stay in the container's mount
            // namespace, below a tmpfs of its own: they go with it, directories included, even
            // when imgboot is killed halfway.
            guard mount("tmpfs", Self.stagingDirectory, "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), "mode=0700,size=1m") == 0 else {
                throw BootError(image: image, "mount a tmpfs on \(Self.stagingDirectory)", errno: errno)
            }
            let loops = Dictionary(attached.devices.map { ($0.partition, $0.device.path) }, uniquingKeysWith: { a, _ in a })
            let tree = try MountedTree.apply(plan, image: spec.image, devices: loops, at: treeDirectory,
                                             discardedStaging: Self.stagingDirectory,
                                             owner: users.map { MountedTree.Owner(idmap: idmap.raw, uid: $0.base, gid: $0.base) },
                                             logger: logger)
            for warning in tree.warnings { logger.warning("\(image): \(warning)") }
            workDirectories = tree.workDirectories
            // The mounts hold the loop devices now.
            attached.close()
            if spec.boot {
                go = try initChoice(spec, root: treeDirectory)
            } else if spec.arguments.isEmpty {
                command = loginShell(root: treeDirectory, user: spec.user ?? "root")
                go = UInt8(IMGBOOT_GO_COMMAND)
            }
            return tree.notifySocket
        })
        clock.lap("prepare tree")
        try signals.checkpoint(image)

        // Recorded before it may go on: a machine that cannot be named safely must not run
        // (`enter` and `stop` could not prove who its leader is); killed by the defer above.
        try registration.update(leader: child.pid, cgroup: cgroup?.path)

        // The child waits for this byte: its maps are written, it is placed in its cgroups, its
        // tree is mounted, and it may go on.
        let start = [go] + (go == UInt8(IMGBOOT_GO_COMMAND) && !spec.boot ? commandMessage(command) : [])
        // A child that died before reading this says why on its error pipe, which the
        // supervisor reports; the write's own error (EPIPE) would say less.
        try? writeFully(child.sync.raw, start)
        child.sync.close()
        started = true
        clock.lap("spawn")

        let supervisor = Supervisor(
            machine: spec.machine, boot: spec.boot, pid: child.pid, pidfd: child.pidfd.raw, errorPipe: child.errorPipe.raw, notify: notify.raw,
            console: console, signals: signals, started: clock.start, quiet: spec.quiet, logger: logger,
            killSignal: spec.killSignal ?? imgboot_sigrtmin() + 3, stopTimeout: spec.stopTimeout,
            notifySocket: spec.notifySocket, notifyReady: spec.boot && spec.notifyReady)
        let outcome = supervisor.run()
        clock.lap("run")
        return try outcome.exitStatus(boot: spec.boot, subject: image, argv: command, plan: operations.steps,
                                      user: spec.user, workingDirectory: spec.workingDirectory)
    }

    // MARK: Pieces

    struct Child: ~Copyable {
        var pid: pid_t
        var pidfd: Descriptor
        /// The read end of the pipe the child reports a failed setup on (the supervisor reads it).
        var errorPipe: Descriptor
        /// The write end of the pipe the child waits on before it starts.
        var sync: Descriptor
    }

    private static func spawn(
        _ spec: ContainerSpec, root: String, argv: [String], environment: [String], console: Console,
        cgroup: MachineCgroup?, keep: UInt64, filter: [UInt8], initFD: Int32, users: UserRange?,
        operations: ContainerPlan.Operations, image: String
    ) throws -> Child {
        // The child's ends (errorWrite, syncRead) are closed here once it has its copies.
        var pipe: [Int32] = [-1, -1]
        guard imgboot_pipe_cloexec(&pipe) == 0 else { throw BootError(image: image, "create a pipe", errno: errno) }
        let errorRead = Descriptor(pipe[0]), errorWrite = Descriptor(pipe[1])
        guard imgboot_pipe_cloexec(&pipe) == 0 else { throw BootError(image: image, "create a pipe", errno: errno) }
        let syncRead = Descriptor(pipe[0]), syncWrite = Descriptor(pipe[1])

        let cArgv = CStringArray(argv), cEnv = CStringArray(environment), cInits = CStringArray(initPaths)
        let parentPidfd = Descriptor(imgboot_pidfd_open(getpid()))
        var pidfd: Int32 = -1
        let pid = root.withCString { rootPtr in
            (spec.hostname ?? spec.machine).withCString { hostPtr in
              console.slavePath.withCString { consolePtr in
                filter.withUnsafeBytes { filterBytes in
                    var config = imgboot_container(
                        root: rootPtr, hostname: hostPtr, argv: UnsafePointer(cArgv.pointer), envp: UnsafePointer(cEnv.pointer),
                        boot: spec.boot ? 1 : 0, init_fd: initFD, init_paths: UnsafeRawPointer(cInits.pointer).assumingMemoryBound(to: UnsafePointer<CChar>?.self),
                        user_namespace: users == nil ? 0 : 1, parent_pidfd: parentPidfd.raw,
                        seccomp_filter: filterBytes.baseAddress, seccomp_length: UInt32(filterBytes.count / 8),
                        console_fd: console.slave, console_streams: console.streams, console_path: consolePtr,
                        private_network: spec.privateNetwork ? 1 : 0, ops: operations.pointer, op_count: operations.count,
                        cgroup_fd: cgroup?.fd ?? -1, keep_capabilities: keep,
                        error_fd: errorWrite.raw, sync_fd: syncRead.raw)
                    return imgboot_container_start(&config, &pidfd)
                }
              }
            }
        }
        guard pid > 0 else { throw BootError(image: image, "start the container (clone3)", errno: errno) }
        return Child(pid: pid, pidfd: Descriptor(pidfd), errorPipe: errorRead, sync: syncWrite)
    }

    /// The image's init: the first of `initPaths` that exists as an executable inside the tree,
    /// as its 1-based position in that list (the go byte tells the child).
    private static func initChoice(_ spec: ContainerSpec, root: String) throws -> UInt8 {
        let top = open(root, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard top >= 0 else { throw BootError(image: spec.image.image, "open the tree", errno: errno) }
        defer { close(top) }
        let candidates = spec.initSelection == .systemd ? Array(initPaths.prefix(systemdInitCount)) : initPaths
        for (index, path) in candidates.enumerated() {
            // A miss is the answer (no such file, not a regular file): try the next.
            guard let file = try? TreePath(root: top, path: path, kind: S_IFREG) else { continue }
            if access(file.procPath, X_OK) == 0 { return UInt8(index + 1) }
        }
        throw BootError(image: spec.image.image,
                        "no init to boot: none of \(candidates.joined(separator: ", ")) is in the image (use `imgboot run` to run a command)",
                        code: .noInit)
    }

    /// `user`'s login shell in the mounted tree at `root` (`/bin/sh` when it names none, or one
    /// that is not there). Bounded so that its message fits the child's buffer.
    private static func loginShell(root: String, user: String) -> [String] {
        let top = open(root, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard top >= 0 else { return LoginShell.fallback }
        defer { close(top) }
        let shell = LoginShell.resolve(inTree: top, user: user)
        let length = commandMessage(shell).count - 2
        return length <= Int(IMGBOOT_COMMAND_MAX) && shell.count <= Int(IMGBOOT_COMMAND_WORDS) ? shell : LoginShell.fallback
    }

    /// The words that follow IMGBOOT_GO_COMMAND (container.c): their length, 16 bits
    /// little-endian, then each NUL-terminated. With the go byte, within PIPE_BUF: one write.
    private static func commandMessage(_ words: [String]) -> [UInt8] {
        var body: [UInt8] = []
        for word in words { body += Array(word.utf8) + [0] }
        let length = [UInt8(truncatingIfNeeded: body.count), UInt8(truncatingIfNeeded: body.count >> 8)]
        return length + body
    }

    private static func makeEnvironment(_ spec: ContainerSpec, console: Console) -> [String] {
        var env: [(String, String)] = [
            ("container", "imgboot"),
            ("container_uuid", randomUUID()),
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("TERM", console.terminalType),
        ]
        // With --user, imgboot-init sets these from the user's passwd entry (where -E has not).
        if spec.user == nil { env += [("HOME", "/root"), ("USER", "root"), ("LOGNAME", "root")] }
        if spec.boot { env.append(("NOTIFY_SOCKET", "/run/host/notify")) }
        if !spec.credentials.isEmpty { env.append(("CREDENTIALS_DIRECTORY", ContainerSpec.Credential.directory)) }
        for entry in spec.environment {
            let (name, value) = entry.split(separator: "=", maxSplits: 1).map(String.init).paired
            env.removeAll { $0.0 == name }
            env.append((name, value))
        }
        return env.map { "\($0.0)=\($0.1)" }
    }

    /// Where every container's setup mounts a tmpfs of its own (in its private mount namespace)
    /// for its staging mounts. On the host, an empty directory shared by all: never removed (an
    /// rmdir would detach the tmpfs of every container being set up at that moment).
    static var stagingDirectory: String { StateStore.staging }

    /// `path` made absolute (for the registry; the image may be named relative to the cwd).
    static func absolutePath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Every mount of a container of `spec`: the image's, then the container's own (see
    /// `ContainerPlan`). What `--dry-run` prints for `run` and `boot`.
    public static func plan(for spec: ContainerSpec, cgroup: Bool = true) -> MountPlan {
        let sysInTree = spec.privateUsers != .no && !spec.privateNetwork
        return spec.plan.appending(ContainerPlan.steps(for: spec, sysInTree: sysInTree, cgroup: cgroup))
    }
}

extension Array where Element == String {
    /// ["A", "B"] → ("A", "B"); ["A"] → ("A", "").
    var paired: (String, String) { (first ?? "", count > 1 ? self[1] : "") }
}


/// Times the stages at debug level: "dissect 0.004 s, attach 0.001 s, …".
final class StageClock {
    let start: Double
    private var last: Double
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        start = monotonicSeconds()
        last = start
    }

    func lap(_ stage: String) {
        logger.debug("\(stageLine(stage, since: last))")
        last = monotonicSeconds()
    }
}
