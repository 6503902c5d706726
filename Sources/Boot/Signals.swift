#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Support
import Mount

/// The signals imgboot handles while a container runs, through a signalfd. Blocked before the
/// child is cloned (the child unblocks them for itself).
public final class Signals: StopSignals {
    /// Readable when a signal is pending: waits poll it (the supervisor, `StateStore`'s locks).
    public let fd: Int32

    public init() {
        let list: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGCHLD, SIGUSR1, SIGUSR2, 0]
        fd = list.withUnsafeBufferPointer { imgboot_signalfd($0.baseAddress) }
        // Whoever reads the console's output or imgboot's stderr may be gone (smoke killed,
        // `imgboot boot | head`): imgboot must not die of SIGPIPE with a machine still to take
        // down — it would leave its cgroup and registration behind. Its writes fail instead.
        _ = imgboot_ignore_sigpipe()
    }

    deinit {
        if fd >= 0 { close(fd) }
        _ = imgboot_unblock_signals()
    }

    /// The next pending signal, or nil.
    func next() -> Int32? {
        let s = imgboot_signalfd_read(fd)
        return s > 0 ? s : nil
    }

    /// Throws `Interrupted` if a stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) arrived; other
    /// pending signals are dropped (nothing to forward them to yet).
    public func checkpoint(_ subject: String) throws(Interrupted) {
        while let signal = next() {
            if [SIGINT, SIGTERM, SIGHUP, SIGQUIT].contains(signal) { throw Interrupted(signal: signal, subject: subject) }
        }
    }
}

/// Signal names as systemd-nspawn's `--kill-signal=` takes them: `SIGTERM` or `TERM`,
/// `SIGRTMIN+3` or `RTMIN+3` (`RTMAX-N` too), or a number.
public enum SignalName {
    static let standard: [(String, Int32)] = [
        ("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("ILL", SIGILL), ("TRAP", SIGTRAP), ("ABRT", SIGABRT),
        ("BUS", SIGBUS), ("FPE", SIGFPE), ("KILL", SIGKILL), ("USR1", SIGUSR1), ("SEGV", SIGSEGV), ("USR2", SIGUSR2),
        ("PIPE", SIGPIPE), ("ALRM", SIGALRM), ("TERM", SIGTERM), ("CHLD", SIGCHLD), ("CONT", SIGCONT), ("STOP", SIGSTOP),
        ("TSTP", SIGTSTP), ("TTIN", SIGTTIN), ("TTOU", SIGTTOU), ("URG", SIGURG), ("XCPU", SIGXCPU), ("XFSZ", SIGXFSZ),
        ("VTALRM", SIGVTALRM), ("PROF", SIGPROF), ("WINCH", SIGWINCH), ("IO", SIGIO), ("PWR", SIGPWR), ("SYS", SIGSYS),
    ]

    /// The real-time signals a process may be sent: glibc's SIGRTMIN (it keeps the first few of
    /// the kernel's for itself, and systemd counts from its) to the kernel's last, 64.
    static var realTime: ClosedRange<Int32> { imgboot_sigrtmin()...64 }

    /// The signal `text` names, or nil.
    public static func number(_ text: String) -> Int32? {
        if let n = Int32(text) { return (1...realTime.upperBound).contains(n) ? n : nil }
        let name = text.hasPrefix("SIG") ? String(text.dropFirst(3)) : text
        if let entry = standard.first(where: { $0.0 == name }) { return entry.1 }
        for (base, sign, origin) in [("RTMIN", Int32(1), realTime.lowerBound), ("RTMAX", Int32(-1), realTime.upperBound)]
        where name.hasPrefix(base) {
            let rest = name.dropFirst(base.count)
            let offset: Int32
            if rest.isEmpty {
                offset = 0
            } else {
                guard rest.first == (sign > 0 ? "+" : "-"), let n = Int32(rest.dropFirst()), n >= 0 else { return nil }
                offset = n
            }
            let signal = origin + sign * offset
            return realTime.contains(signal) ? signal : nil
        }
        return nil
    }

    /// How messages name signal `signal`: `SIGTERM`, `SIGRTMIN+3`.
    public static func name(_ signal: Int32) -> String {
        if let entry = standard.first(where: { $0.1 == signal }) { return "SIG" + entry.0 }
        if realTime.contains(signal) { return signal == realTime.lowerBound ? "SIGRTMIN" : "SIGRTMIN+\(signal - realTime.lowerBound)" }
        return "signal \(signal)"
    }
}
