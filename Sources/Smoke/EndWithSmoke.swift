#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// How smoke's children (`boot`, `enter`, `run`, `stop`) end with smoke, whatever ends it — a CI
/// job cancelled, SIGKILL — so that no machine outlives it: smoke gives each its PID in
/// `IMGBOOT_END_WITH`, and each sends itself SIGTERM when that process ends. `boot` then halts
/// its init, `run` and `enter` pass it on to the command, and each tears down in order.
///
/// Not PR_SET_PDEATHSIG: it fires when the *thread* that forked ends, and smoke's children are
/// spawned by swift-subprocess from a thread of Swift's concurrency pool, which may end any
/// time; nor has swift-subprocess a hook between fork and exec to set it in.
public enum EndWithSmoke {
    /// The variable smoke gives its children: its PID.
    static let variable = "IMGBOOT_END_WITH"

    /// imgboot's first step: when smoke started this process, removes the variable (so that
    /// nothing this process starts, a container least of all, sees it) and has this process end
    /// with smoke — at once, if smoke has ended already.
    public static func arrangeIfAsked() throws(SmokeError) {
        guard let value = getenv(variable) else { return }
        let text = String(cString: value)
        unsetenv(variable)
        guard let smoke = pid_t(text), smoke > 0 else {
            throw SmokeError("\(variable)=\(text): not a process ID", errno: nil)
        }
        let pidfd = imgboot_pidfd_open(smoke)
        let e = errno
        if pidfd < 0 && e != ESRCH { throw SmokeError("watch smoke (process \(smoke))", errno: e) }
        // A child whose parent has ended is given to another: the pidfd is smoke's only while
        // smoke is still the parent.
        guard pidfd >= 0 && getppid() == smoke else {
            if pidfd >= 0 { close(pidfd) }
            kill(getpid(), SIGTERM)
            exit(128 + SIGTERM)  // (were SIGTERM blocked or ignored)
        }
        guard imgboot_signal_when_ends(pidfd, SIGTERM) == 0 else {
            let e = errno
            close(pidfd)
            throw SmokeError("watch smoke (process \(smoke))", errno: e)
        }
    }
}
