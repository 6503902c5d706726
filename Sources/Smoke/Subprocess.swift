#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Support

/// Something whose descriptor a wait should keep empty: another process's output pipe (a
/// booted machine's console, which must never fill up and stall its imgboot), a notify socket.
protocol Drainable: AnyObject {
    /// The descriptor to poll; -1 when there is nothing more to read.
    var pollFD: Int32 { get }
    /// Reads what is waiting, without blocking.
    func drain()
}

/// A child process of smoke's own (imgboot itself, for `boot`, `enter`, `run`, `stop`), with
/// its output captured through a pipe, bounded, and a deadline.
///
/// Not swift-subprocess: its Linux spawn (posix_spawn) has no hook between fork and exec, so
/// it cannot give the child a parent-death signal, which is what ends smoke's machines when
/// smoke is killed.
final class Subprocess: Drainable {
    let pid: pid_t
    private let pidfd: Int32
    private var output: Int32
    private(set) var captured: BoundedBuffer
    private var status: Int32?

    /// At most this much of a process's output is kept by default (its first and last halves).
    static let outputLimit = 1 << 20

    /// Starts `argv` with stdin from /dev/null and stdout and stderr into one pipe, with
    /// `environment` (default: smoke's own). It gets SIGTERM when the thread that started it
    /// ends — whatever ends smoke (a CI job cancelled, SIGKILL) — so that no machine outlives
    /// smoke: `boot` halts its init, `run` and `enter` pass it on to the command, and each
    /// tears down in order.
    init(_ argv: [String], environment: [String]? = nil, outputLimit: Int = Subprocess.outputLimit) throws(SmokeError) {
        captured = BoundedBuffer(limit: outputLimit)
        var fds: [Int32] = [-1, -1]
        guard imgboot_pipe_cloexec(&fds) == 0 else { throw SmokeError("create a pipe", errno: errno) }
        let args = argv.map { strdup($0) } + [nil]
        defer { for a in args { free(a) } }
        let env = environment.map { $0.map { strdup($0) } + [nil] }
        defer { for e in env ?? [] { free(e) } }
        let pid = env.map { imgboot_spawn_tied(argv[0], args, $0, fds[1], fds[1], SIGTERM) }
            ?? imgboot_spawn_tied(argv[0], args, environ, fds[1], fds[1], SIGTERM)
        let e = errno
        close(fds[1])
        guard pid > 0 else {
            close(fds[0])
            throw SmokeError("start \(argv[0])", errno: e)
        }
        self.pid = pid
        pidfd = imgboot_pidfd_open(pid)
        output = fds[0]
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            _ = waitBlocking()
        }
        if output >= 0 { close(output) }
        if pidfd >= 0 { close(pidfd) }
    }

    /// Waits until the process ends, `deadline` (monotonic seconds) passes, or `keepWaiting`
    /// turns false after something was drained, collecting its output and draining `others`
    /// meanwhile; returns its status (128+N when killed by signal N), or nil when it still runs.
    func wait(until deadline: Double?, alongside others: [any Drainable] = [], while keepWaiting: () -> Bool = { true }) -> Int32? {
        while status == nil {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            if output >= 0 { fds.append(pollfd(fd: output, events: Int16(POLLIN), revents: 0)) }
            let watched = others.filter { $0.pollFD >= 0 }
            fds += watched.map { pollfd(fd: $0.pollFD, events: Int16(POLLIN), revents: 0) }
            let left = deadline.map { $0 - monotonicSeconds() } ?? 1
            if left <= 0 { return nil }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(left, 1) * 1000))
            if n < 0 && errno != EINTR { break }
            let base = output >= 0 ? 2 : 1
            if base == 2 && fds[1].revents != 0 { drain() }
            for (i, other) in watched.enumerated() where fds[base + i].revents != 0 { other.drain() }
            if fds[0].revents != 0 {
                drain()
                status = waitBlocking()
            } else if !keepWaiting() {
                return nil
            }
        }
        return status
    }

    /// Sends a signal (if it has not ended).
    func signal(_ signal: Int32) {
        if status == nil { _ = imgboot_pidfd_send_signal(pidfd, signal) }
    }

    var pollFD: Int32 { output }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while output >= 0 {
            let n = buffer.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if n > 0 { captured.append(buffer[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { close(output); output = -1 }
            return
        }
    }

    private func waitBlocking() -> Int32 {
        var code: Int32 = 0, killed: Int32 = 0
        while imgboot_pidfd_wait(pidfd, 0, &code, &killed) < 0 {
            if errno != EINTR { return 125 }
        }
        return killed != 0 ? 128 + code : code
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

    mutating func append(_ bytes: ArraySlice<UInt8>) {
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
