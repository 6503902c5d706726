#if canImport(Glibc)
import Glibc
#endif
import CLinux
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
