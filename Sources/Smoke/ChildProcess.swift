#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Subprocess
import Support
import Synchronization
import SystemPackage

/// A child process of smoke's own (imgboot itself, for `boot`, `enter`, `run`, `stop`), for a
/// worker thread that waits for it with a deadline while it keeps smoke's notify socket
/// drained: its stdout and stderr captured as one stream, in order, bounded.
///
/// swift-subprocess runs it in a task of its own — spawns it, reads its output as it comes (a
/// booted machine's console must never fill its pipe and stall its imgboot, whatever smoke
/// waits for meanwhile), reaps it — and the task tells the waiting thread through an eventfd.
/// The process ends with smoke however smoke ends (see `EndWithSmoke`).
///
/// Signals go through a pidfd of smoke's own, not through swift-subprocess's teardown
/// sequence: that runs when the task is cancelled, and a cancelled task stops reading the
/// output while imgboot still has a machine to take down and a console to write. The process
/// keeps smoke's process group, as before: smoke signals imgboot alone, and imgboot passes
/// signals on, in order, to what it runs.
final class ChildProcess {
    let pid: pid_t
    private let shared: Shared

    /// At most this much of a process's output is kept by default (its first and last halves).
    static let outputLimit = 1 << 20

    /// Starts `argv` with stdin from /dev/null and stdout and stderr into one pipe, in smoke's
    /// environment (with `NOTIFY_SOCKET` set to `notifySocket`, if given).
    init(_ argv: [String], notifySocket: String? = nil, outputLimit: Int = ChildProcess.outputLimit) throws(SmokeError) {
        let shared = try Shared(outputLimit: outputLimit)
        var variables: [Environment.Key: String?] = [Environment.Key(stringLiteral: EndWithSmoke.variable): String(getpid())]
        if let notifySocket { variables["NOTIFY_SOCKET"] = notifySocket }
        let executable = argv[0], arguments = Array(argv.dropFirst()), environment = Environment.inherit.updating(variables)
        Task {
            do {
                let result = try await Subprocess.run(
                    .path(FilePath(executable)), arguments: Arguments(arguments), environment: environment,
                    input: .none, output: .sequence, error: .combinedWithOutput
                ) { execution in
                    shared.started(execution.processIdentifier.value)
                    for try await buffer in execution.standardOutput {
                        buffer.withUnsafeBytes { shared.append($0) }
                    }
                }
                switch result.terminationStatus {
                case .exited(let code): shared.ended(code)
                case .signaled(let signal): shared.ended(128 + signal)
                }
            } catch {
                shared.failed(executable, error)
            }
        }
        self.shared = shared
        pid = try shared.waitUntilStarted()
    }

    deinit {
        if status == nil {
            signal(SIGKILL)
            while status == nil { shared.waitForChange(milliseconds: -1) }
        }
    }

    /// Its status (128+N when killed by signal N) once it has ended, else nil.
    var status: Int32? { shared.state.withLock { $0.status } }

    /// Its output so far.
    var captured: BoundedBuffer { shared.state.withLock { $0.captured } }

    /// Waits until the process ends, `deadline` (monotonic seconds) passes, or `keepWaiting`
    /// turns false after something was received, draining `listener` meanwhile; returns its
    /// status (128+N when killed by signal N), or nil when it still runs.
    func wait(until deadline: Double?, alongside listener: NotifyListener? = nil, while keepWaiting: () -> Bool = { true }) -> Int32? {
        while true {
            if let status { return status }
            var fds = [pollfd(fd: shared.changed, events: Int16(POLLIN), revents: 0)]
            if let listener, listener.pollFD >= 0 { fds.append(pollfd(fd: listener.pollFD, events: Int16(POLLIN), revents: 0)) }
            let left = deadline.map { $0 - monotonicSeconds() } ?? 1
            if left <= 0 { return nil }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(left, 1) * 1000))
            if n < 0 && errno != EINTR { return nil }
            if fds.count > 1 && fds[1].revents != 0 { listener?.drain() }
            if fds[0].revents != 0 {
                shared.waitForChange(milliseconds: 0)
            } else if !keepWaiting() {
                return nil
            }
        }
    }

    /// Sends a signal (if it has not ended).
    func signal(_ signal: Int32) {
        shared.state.withLock { state in
            if state.status == nil { _ = imgboot_pidfd_send_signal(state.pidfd, signal) }
        }
    }
}

/// What the task running a process shares with the thread waiting for it.
private final class Shared: Sendable {
    struct State {
        var pid: pid_t = 0
        /// For signals: the process's, opened while it cannot have been reaped.
        var pidfd: Int32 = -1
        var captured: BoundedBuffer
        var status: Int32?
        var failure: SmokeError?
    }

    let state: Mutex<State>
    /// An eventfd, readable when the process has started (or could not be) and when it has ended.
    let changed: Int32

    init(outputLimit: Int) throws(SmokeError) {
        changed = imgboot_eventfd()
        guard changed >= 0 else { throw SmokeError("create an eventfd", errno: errno) }
        state = Mutex(State(captured: BoundedBuffer(limit: outputLimit)))
    }

    deinit {
        close(changed)
        state.withLock { if $0.pidfd >= 0 { close($0.pidfd) } }
    }

    func started(_ pid: pid_t) {
        state.withLock {
            $0.pid = pid
            $0.pidfd = imgboot_pidfd_open(pid)
        }
        tell()
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        state.withLock { $0.captured.append(bytes) }
    }

    func ended(_ status: Int32) {
        state.withLock { $0.status = status }
        tell()
    }

    /// `run` threw: it could not start the process, or could not follow it to its end (then it
    /// has been reaped; its status is 125, as for imgboot's own failures).
    func failed(_ executable: String, _ error: any Error) {
        state.withLock { state in
            if state.pid > 0 {
                state.status = 125
            } else {
                let errno = (error as? SubprocessError)?.underlyingError?.rawValue
                state.failure = SmokeError("start \(executable)", errno: errno)
            }
        }
        tell()
    }

    /// Its PID, once it has started.
    func waitUntilStarted() throws(SmokeError) -> pid_t {
        while true {
            let (pid, failure) = state.withLock { ($0.pid, $0.failure) }
            if let failure { throw failure }
            if pid > 0 { return pid }
            waitForChange(milliseconds: -1)
        }
    }

    /// Waits at most `milliseconds` (-1: without end) for a change, and takes it. (What
    /// changed, the caller reads in `state`; an interrupted poll, or a read with nothing told,
    /// only sends it round once more.)
    func waitForChange(milliseconds: Int32) {
        var ready = pollfd(fd: changed, events: Int16(POLLIN), revents: 0)
        _ = poll(&ready, 1, milliseconds)
        var count: UInt64 = 0
        _ = read(changed, &count, MemoryLayout<UInt64>.size)
    }

    /// Makes `changed` readable. (An eventfd's write fails only when its count would overflow.)
    private func tell() {
        var one: UInt64 = 1
        _ = write(changed, &one, MemoryLayout<UInt64>.size)
    }
}

/// Output kept within a bound: the first half and the last half of `limit`, and a count of
/// what was dropped between them.
struct BoundedBuffer {
    let limit: Int
    private(set) var head: [UInt8] = []
    private var tail: [UInt8] = []
    private(set) var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ bytes: some Collection<UInt8>) {
        let half = limit / 2
        var rest = bytes[...]
        if head.count < half {
            let take = min(half - head.count, rest.count)
            head += rest.prefix(take)
            rest = rest.dropFirst(take)
        }
        guard !rest.isEmpty else { return }
        tail += rest
        if tail.count > half {
            dropped += tail.count - half
            tail.removeFirst(tail.count - half)
        }
    }

    var text: String {
        var bytes = head
        if dropped > 0 { bytes += Array("\n[… \(dropped) bytes not kept …]\n".utf8) }
        bytes += tail
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A console's output as a log file wants it: a terminal's line ends (`\r\n`, and the
/// `\r\r\n` of a program that writes `\r\n` through a pty's newline translation) become `\n`.
func plainLines(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    var pendingReturns = 0
    for scalar in text.unicodeScalars {
        if scalar == "\r" {
            pendingReturns += 1
            continue
        }
        if scalar != "\n" {
            for _ in 0..<pendingReturns { out.append("\r") }
        }
        pendingReturns = 0
        out.append(scalar)
    }
    for _ in 0..<pendingReturns { out.append("\r") }
    return String(out)
}

/// Smoke's own failures (it could not start a process at all): what failed, and its errno.
public struct SmokeError: IMGBootError {
    public let subject: String? = nil
    public let operation: String
    public let errno: Int32?

    init(_ operation: String, errno: Int32?) {
        self.operation = operation
        self.errno = errno
    }

    public var detail: String { failure(operation, errno: errno) }
}
