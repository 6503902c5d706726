#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Mount
import Support

/// The parent while the container runs: small and synchronous. One poll loop forwards
/// signals, relays the console, listens for readiness, and reaps.
final class Supervisor {
    /// The machine's name, for messages.
    let machine: String
    /// An init is PID 1 (stop by halting it), rather than a command under the tiny init.
    let boot: Bool
    let pid: pid_t
    let pidfd: Int32
    /// The child's error pipe until its end of file, then -1. The descriptors are the
    /// container's (`Container.Child`): the supervisor only reads them.
    var errorPipe: Int32
    let notify: Int32
    let console: Console
    let signals: Signals
    let started: Double
    /// `-q`: none of imgboot's own notices (the start hint, the ready line); errors still.
    let quiet: Bool
    /// `enter`: the process is a session in a running machine, which Ctrl-] ends (not the
    /// machine itself).
    let session: Bool
    let logger: Logger
    /// `boot`: what asks the init to stop, and how long it has to end after that.
    let killSignal: Int32
    let stopTimeout: Double
    /// `$NOTIFY_SOCKET`: told when the container is up, and what its init reports.
    let notifySocket: NotifySocket?
    /// `--notify-ready=yes`: `READY=1` there is the init's, not imgboot's own at its exec.
    let notifyReady: Bool

    private var stdinOpen: Bool
    private var ready = false
    /// Whether the payload has been executed (and the container reported up).
    private var payloadStarted = false
    private var stopRequests = 0
    private var escapePresses: [Double] = []
    private var childError: imgboot_child_error?
    /// The stop signal that made us kill the child before its setup was done, if one did.
    private var interruptedBy: Int32?
    /// `boot`: when the init is killed if it has not ended by then (set by the first stop
    /// request).
    private var killDeadline: Deadline?

    init(machine: String, boot: Bool, pid: pid_t, pidfd: Int32, errorPipe: Int32, notify: Int32, console: Console,
         signals: Signals, started: Double, quiet: Bool = false, session: Bool = false, logger: Logger,
         killSignal: Int32 = SIGKILL, stopTimeout: Double = ContainerSpec.defaultStopTimeout,
         notifySocket: NotifySocket? = nil, notifyReady: Bool = false) {
        self.machine = machine
        self.boot = boot
        self.pid = pid
        self.pidfd = pidfd
        self.errorPipe = errorPipe
        self.notify = notify
        self.console = console
        self.signals = signals
        self.started = started
        self.quiet = quiet
        self.session = session
        self.logger = logger
        self.killSignal = killSignal
        self.stopTimeout = stopTimeout
        self.notifySocket = notifySocket
        self.notifyReady = notifyReady
        stdinOpen = console.relaysInput
    }

    /// How the container ended.
    struct Outcome {
        /// The exit status of PID 1, or the signal that killed it.
        var code: Int32
        var killed: Bool
        /// A step of the child that failed, if any.
        var childError: imgboot_child_error?
        /// A stop signal that arrived before the payload ran, for which the child was killed.
        var interruptedBy: Int32? = nil
    }

    func run() -> Outcome {
        // What Ctrl-] three times does, in nspawn's (and machinectl's) words: before anything of
        // the container's reaches the terminal, all of which passes the relay below. (The
        // terminal is in raw mode: the line ends with a carriage return too.)
        if !quiet && console.mode == .interactive && isatty(0) == 1 {
            writeStderr("Press Ctrl-] three times within 1s to \(session ? "exit session" : "kill container").\r\n")
        }
        while true {
            var fds: [pollfd] = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0),
                                 pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)]
            if errorPipe >= 0 { fds.append(pollfd(fd: errorPipe, events: Int16(POLLIN), revents: 0)) }
            if notify >= 0 { fds.append(pollfd(fd: notify, events: Int16(POLLIN), revents: 0)) }
            if console.master >= 0 { fds.append(pollfd(fd: console.master, events: Int16(POLLIN), revents: 0)) }
            if stdinOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }

            let n = poll(&fds, nfds_t(fds.count), pollTimeout())
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("poll: \(errnoString(errno))")
                break
            }
            if n == 0 { killIfOverdue() }
            for entry in fds where entry.revents != 0 {
                switch entry.fd {
                case signals.fd: handleSignals()
                case errorPipe: readErrorPipe()
                case notify: readNotify()
                case console.master: relayOutput()
                case 0: relayInput()
                default: break
                }
            }
            if fds[0].revents != 0, let outcome = reap() { return outcome }
        }
        return reapBlocking()
    }

    // MARK: Events

    private func handleSignals() {
        while let signal = signals.next() {
            switch signal {
            case SIGCHLD: break
            case SIGWINCH: console.forwardWindowSize()
            case SIGINT, SIGTERM, SIGHUP, SIGQUIT: stop(because: signal)
            default: if !boot { _ = imgboot_pidfd_send_signal(pidfd, signal) }
            }
        }
    }

    /// `boot`: the first request asks the init to stop with the kill signal (by default
    /// SIGRTMIN+3, systemd's halt; never SIGTERM, which makes systemd re-execute itself), and
    /// gives it `stopTimeout` seconds to end; the second request, or the end of that time,
    /// kills it — an init that does not know the signal (busybox's ignores SIGRTMIN+3) never
    /// makes imgboot ignore SIGTERM. `run`: the signal goes to the tiny init, which passes it
    /// on to the command's process group; the third kills.
    private func stop(because signal: Int32) {
        stopRequests += 1
        // The payload may have been executed since this round of poll began (its exec closes
        // the error pipe): look, before taking the signal for one during the setup. For `run`,
        // give it a moment: the command's exec and imgboot-init's closing of its own copy of the
        // pipe are a few instructions apart, and a signal in between is meant for the command.
        settleErrorPipe(waiting: boot ? 0 : 100)
        let setupDone = errorPipe < 0
        // Nothing of the image's runs yet to pass the signal to: the setup is killed, and
        // imgboot leaves as at its own checkpoints (128+N), not as if SIGKILL had been sent.
        if !setupDone && interruptedBy == nil { interruptedBy = signal }
        if boot {
            if stopRequests == 1 && setupDone {
                logger.notice("\(machine): asking the init to halt with \(SignalName.name(killSignal)) (again to kill it; killed in \(seconds(stopTimeout)) s otherwise)")
                _ = imgboot_pidfd_send_signal(pidfd, killSignal)
                killDeadline = Deadline(after: stopTimeout)
            } else {
                _ = imgboot_pidfd_send_signal(pidfd, SIGKILL)
            }
        } else {
            _ = imgboot_pidfd_send_signal(pidfd, stopRequests >= 3 || !setupDone ? SIGKILL : signal)
        }
    }

    /// `30`, `2.5`: a duration the user gave, as given.
    private func seconds(_ value: Double) -> String {
        value == value.rounded() && value < 1e9 ? String(Int(value)) : String(value)
    }

    /// How long poll may wait: for ever, or until the init's time to stop is up.
    private func pollTimeout() -> Int32 {
        guard let killDeadline else { return -1 }
        return killDeadline.pollMilliseconds()
    }

    /// Kills the init once its time to stop is up.
    private func killIfOverdue() {
        guard let killDeadline, killDeadline.hasPassed else { return }
        self.killDeadline = nil
        logger.warning("\(machine): the init did not stop within \(seconds(stopTimeout)) s of \(SignalName.name(killSignal)): killing it")
        _ = imgboot_pidfd_send_signal(pidfd, SIGKILL)
    }

    /// Reads what the error pipe holds, waiting at most `milliseconds` for more: a failed step's
    /// record, or the end of file that says the payload has been executed.
    private func settleErrorPipe(waiting milliseconds: Int32 = 0) {
        let deadline = Deadline(after: Double(milliseconds) / 1000)
        while errorPipe >= 0 && waitReadable(errorPipe, until: deadline) {
            readErrorPipe()
        }
    }

    private func readErrorPipe() {
        var record = imgboot_child_error()
        let n = read(errorPipe, &record, MemoryLayout<imgboot_child_error>.size)
        if n == MemoryLayout<imgboot_child_error>.size {
            childError = record
            return
        }
        if n < 0 && errno == EINTR { return }
        // End of file: the payload has been executed (or the child is gone). Not read again;
        // the container closes it.
        errorPipe = -1
        if childError == nil && interruptedBy == nil { containerIsUp() }
    }

    /// The payload runs: as nspawn, say so on `$NOTIFY_SOCKET` — `READY=1` too, unless the
    /// init is to say when it is ready (`--notify-ready=yes`).
    private func containerIsUp() {
        guard !payloadStarted else { return }
        payloadStarted = true
        guard let notifySocket else { return }
        notifySocket.send(["STATUS=Container running."] + (notifyReady ? [] : ["READY=1"]), logger: logger)
    }

    private func readNotify() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(notify, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { return }
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            // Passed on: readiness and status, nothing else (the container must not speak for
            // imgboot: an X_IMGBOOT_ERROR of its own would be a lie).
            var forward: [String] = []
            for line in text.split(separator: "\n") {
                if line == "READY=1" {
                    forward.append(String(line))
                    guard !ready else { continue }
                    ready = true
                    let seconds = monotonicSeconds() - started
                    if !quiet { writeStderr("imgboot: \(machine) is ready (after \(formatSeconds(seconds)) s)\n") }
                } else if line.hasPrefix("STATUS=") {
                    forward.append(String(line))
                    logger.debug("\(machine): \(line.dropFirst(7))")
                }
            }
            if let notifySocket, !forward.isEmpty { notifySocket.send(forward, logger: logger) }
        }
    }

    private func relayOutput() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(console.master, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // EAGAIN: all read; EIO: no one has the console open
            if console.relaysOutput { writeAll(console.outputFD, buffer[0..<n]) }
        }
    }

    private func relayInput() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
        guard n > 0 else {
            stdinOpen = false
            return
        }
        if console.mode == .interactive && countEscapes(buffer[0..<n]) {
            if !quiet {
                writeStderr("\r\nimgboot: Ctrl-] pressed three times: \(session ? "ending the session in" : "killing") \(machine)\r\n")
            }
            _ = imgboot_pidfd_send_signal(pidfd, SIGKILL)
            stdinOpen = false
            return
        }
        writeAll(console.master, buffer[0..<n])
    }

    /// Ctrl-] three times within a second kills the container, as in nspawn.
    private func countEscapes(_ bytes: ArraySlice<UInt8>) -> Bool {
        let now = monotonicSeconds()
        for byte in bytes where byte == 0x1D {
            escapePresses.append(now)
            escapePresses.removeAll { now - $0 > 1.0 }
            if escapePresses.count >= 3 { return true }
        }
        return false
    }

    // MARK: The end

    private func reap() -> Outcome? {
        var code: Int32 = 0, killed: Int32 = 0
        guard imgboot_pidfd_wait(pidfd, 1, &code, &killed) == 1 else { return nil }
        return finish(code: code, killed: killed != 0)
    }

    private func reapBlocking() -> Outcome {
        var code: Int32 = 0, killed: Int32 = 0
        _ = imgboot_pidfd_wait(pidfd, 0, &code, &killed)
        return finish(code: code, killed: killed != 0)
    }

    private func finish(code: Int32, killed: Bool) -> Outcome {
        // What the container still had to say.
        if console.master >= 0 { relayOutput() }
        while errorPipe >= 0 { readErrorPipe() }
        return Outcome(code: code, killed: killed, childError: childError, interruptedBy: interruptedBy)
    }
}

extension Supervisor.Outcome {
    /// What imgboot-init reports of `--user` (init.c, become_user): which step, and why.
    static func describeUserStep(index: Int32, errno e: Int32) -> String {
        switch (index, e) {
        case (0, ENOENT): "no such user in the container's /etc/passwd"
        case (0, EINVAL): "its entry in the container's /etc/passwd has no valid UID or GID"
        case (0, E2BIG): "the environment has too many variables"
        case (_, EFBIG): "the container's /etc/passwd or /etc/group is larger than imgboot-init reads (256 KiB)"
        case (1...3, EINVAL): "one of its IDs is outside the container's user range (see --private-users)"
        case (0, _): failure("cannot read the container's /etc/passwd", errno: e)
        case (1, ERANGE): "member of more groups than imgboot-init takes (255)"
        case (1, _): failure("cannot set its groups", errno: e)
        case (2, _): failure("cannot take its GID", errno: e)
        default: failure("cannot take its UID", errno: e)
        }
    }

    /// The status imgboot leaves with, or the setup error to report (`subject`: the image or
    /// machine the message names).
    func exitStatus(boot: Bool, subject: String, argv: [String], plan: [MountPlan.Step] = [],
                    user: String? = nil, workingDirectory: String? = nil) throws -> Int32 {
        if childError == nil, let signal = interruptedBy, killed, code == SIGKILL {
            throw Interrupted(signal: signal, subject: subject)
        }
        if let e = childError {
            if e.step == Int32(IMGBOOT_STEP_USER.rawValue) {
                throw BootError(image: subject, "--user \(user ?? "?"): " + Self.describeUserStep(index: e.index, errno: e.error))
            }
            if e.step == Int32(IMGBOOT_STEP_CHDIR.rawValue) {
                throw BootError(image: subject, "--chdir \(workingDirectory ?? "?")", errno: e.error)
            }
            if e.step == Int32(IMGBOOT_STEP_EXEC.rawValue) && !boot {
                let what = e.error == ENOENT ? "command not found" : errnoString(e.error)
                writeStderr("imgboot: \(printable(argv.first ?? "")): \(what)\n")
            } else {
                let what = e.step == Int32(IMGBOOT_STEP_PLAN.rawValue) && plan.indices.contains(Int(e.index))
                    ? plan[Int(e.index)].line : describeStep(e.step)
                throw BootError(image: subject, "container setup: \(what)", errno: e.error)
            }
        }
        if !killed { return code }
        if boot {
            // systemd in a PID namespace ends by reboot(2), which the kernel turns into SIGINT
            // for poweroff and halt and SIGHUP for reboot (nspawn: 0 and 133).
            if code == SIGINT { return 0 }
            if code == SIGHUP { return 133 }
        }
        return 128 + code
    }
}

func describeStep(_ step: Int32) -> String {
    switch UInt32(bitPattern: step) {
    case IMGBOOT_STEP_SIGNALS.rawValue: "reset signals"
    case IMGBOOT_STEP_CGROUP_NAMESPACE.rawValue: "create the cgroup namespace"
    case IMGBOOT_STEP_LOOPBACK.rawValue: "bring up lo"
    case IMGBOOT_STEP_ROOT.rawValue: "open the tree"
    case IMGBOOT_STEP_PLAN.rawValue: "a step of the mount plan"
    case IMGBOOT_STEP_PIVOT_ROOT.rawValue: "pivot_root into the tree"
    case IMGBOOT_STEP_DETACH_OLD_ROOT.rawValue: "detach the host's root"
    case IMGBOOT_STEP_HOSTNAME.rawValue: "set the hostname"
    case IMGBOOT_STEP_SESSION.rawValue: "set up the session and terminal"
    case IMGBOOT_STEP_CAPABILITIES.rawValue: "drop capabilities"
    case IMGBOOT_STEP_EXEC.rawValue: "execute the init"
    case IMGBOOT_STEP_KEYRING.rawValue: "join a session keyring of its own"
    case IMGBOOT_STEP_SECCOMP.rawValue: "install the seccomp filter"
    case IMGBOOT_STEP_INIT.rawValue: "execute imgboot-init"
    case IMGBOOT_STEP_USER_NAMESPACE.rawValue: "become root of the user namespace"
    case IMGBOOT_STEP_USER.rawValue: "become the --user"
    case IMGBOOT_STEP_CHDIR.rawValue: "enter the --chdir directory"
    default: "step \(step)"
    }
}

func writeStderr(_ text: String) { writeAll(2, Array(text.utf8)) }

