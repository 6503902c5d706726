#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect

/// A child process of smoke's own (imgboot itself, for `boot`, `enter`, `run`, `stop`), with
/// its output captured through a pipe, bounded, and a deadline.
final class Subprocess {
    let pid: pid_t
    private let pidfd: Int32
    private var output: Int32
    private(set) var captured = BoundedBuffer(limit: Subprocess.outputLimit)
    private var status: Int32?

    /// At most this much of a process's output is kept (its first and last halves).
    static let outputLimit = 1 << 20

    /// Starts `argv` with stdin from /dev/null and stdout and stderr into one pipe (or, with
    /// `stderrPath`, stderr into that file and stdout to /dev/null). It gets SIGTERM when the
    /// thread that started it ends — whatever ends smoke (a CI job cancelled, SIGKILL) — so
    /// that no machine outlives smoke: `boot` halts its init, `run` and `enter` pass it on to
    /// the command, and each tears down in order.
    init(_ argv: [String], stderrPath: String? = nil) throws(SmokeError) {
        var fds: [Int32] = [-1, -1]
        guard imgboot_pipe_cloexec(&fds) == 0 else { throw SmokeError("create a pipe: \(String(cString: strerror(errno)))") }
        let devNull = stderrPath == nil ? -1 : open("/dev/null", O_WRONLY | O_CLOEXEC)
        let logFile = stderrPath.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) } ?? -1
        defer {
            if devNull >= 0 { close(devNull) }
            if logFile >= 0 { close(logFile) }
        }
        if let stderrPath, devNull < 0 || logFile < 0 {
            let e = errno
            close(fds[0])
            close(fds[1])
            throw SmokeError("open \(devNull < 0 ? "/dev/null" : stderrPath): \(String(cString: strerror(e)))")
        }
        let out = stderrPath == nil ? fds[1] : devNull, err = stderrPath == nil ? fds[1] : logFile

        let args = argv.map { strdup($0) } + [nil]
        defer { for a in args { free(a) } }
        let pid = imgboot_spawn_tied(argv[0], args, environ, out, err, SIGTERM)
        let e = errno
        close(fds[1])
        guard pid > 0 else {
            close(fds[0])
            throw SmokeError("start \(argv[0]): \(String(cString: strerror(e)))")
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

    /// Waits until the process ends or `deadline` (monotonic seconds) passes, collecting its
    /// output; returns its status (128+N when killed by signal N), or nil at the deadline.
    func wait(until deadline: Double?) -> Int32? {
        while status == nil {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            if output >= 0 { fds.append(pollfd(fd: output, events: Int16(POLLIN), revents: 0)) }
            let left = deadline.map { $0 - now() } ?? 1
            if left <= 0 { return nil }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(left, 1) * 1000))
            if n < 0 && errno != EINTR { break }
            if fds.count > 1 && fds[1].revents != 0 { drain() }
            if fds[0].revents != 0 {
                drain()
                status = waitBlocking()
            }
        }
        return status
    }

    /// Sends a signal (if it has not ended).
    func signal(_ signal: Int32) {
        if status == nil { _ = imgboot_pidfd_send_signal(pidfd, signal) }
    }

    private func drain() {
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

func now() -> Double { monotonicSeconds() }

/// Smoke's own failures (it could not start a process at all).
public struct SmokeError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
