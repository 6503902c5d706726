#if canImport(Glibc)
import Glibc
#endif
import Support
import CLinux

/// Smoke's own notify socket, given to each `imgboot boot` and `run` it starts as
/// `NOTIFY_SOCKET`: how it learns, without reading their stderr, that a machine is ready
/// (`READY=1`) or that imgboot could not start it (`X_IMGBOOT_ERROR=`, with `STATUS=` saying
/// why).
///
/// The socket is in the abstract namespace (`@imgboot-smoke-…`): nothing on disk to leave
/// behind, however smoke ends. Any local process may send to such a name, so only datagrams
/// whose sender the kernel vouches for (SO_PASSCRED) as the process smoke listens to are kept.
final class NotifyListener {
    let address: String
    private var fd: Int32
    /// The process whose notifications are kept; the others are dropped.
    var sender: pid_t = 0
    private(set) var messages: [Message] = []

    /// One datagram's fields.
    struct Message {
        var fields: [String: String]

        init(_ text: String) {
            fields = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
        }

        var isReady: Bool { fields["READY"] == "1" }
        /// `X_IMGBOOT_ERROR`: imgboot failed (`no-init`: no systemd to boot).
        var failure: String? { fields["X_IMGBOOT_ERROR"] }
        var status: String? { fields["STATUS"] }
    }

    /// At most this many messages wait to be taken (a chatty init's STATUS= lines are not
    /// kept without end).
    static let backlog = 64

    init() throws(SmokeError) {
        var bytes = [UInt8](repeating: 0, count: 8)
        _ = bytes.withUnsafeMutableBytes { imgboot_random($0.baseAddress, UInt($0.count)) }
        address = "@imgboot-smoke-" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        fd = imgboot_notify_listen(address)
        guard fd >= 0 else { throw SmokeError("create a notify socket", errno: errno) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The descriptor a wait polls, to `drain()` it when readable.
    var pollFD: Int32 { fd }

    /// Receives what is waiting, without blocking: the socket never fills up while smoke waits
    /// for something else.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while fd >= 0 {
            var from: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { imgboot_notify_receive(fd, $0.baseAddress, UInt($0.count), &from) }
            if n < 0 {
                if errno == EINTR || errno == EMSGSIZE { continue }
                return
            }
            guard from == sender && sender > 0 else { continue }
            messages.append(Message(String(decoding: buffer[0..<Int(n)], as: UTF8.self)))
            if messages.count > Self.backlog { messages.removeFirst(messages.count - Self.backlog) }
        }
    }

    /// The messages received so far, and forgets them.
    func take() -> [Message] {
        defer { messages = [] }
        return messages
    }

    /// Drops everything received so far: call it before starting the next process, then
    /// `listen(to:)` it (what it sends meanwhile waits in the socket).
    func forget() {
        sender = 0
        drain()
        messages = []
    }

    /// Keeps what `pid` says from now on, including what waits in the socket.
    func listen(to pid: pid_t) {
        sender = pid
        messages = []
    }
}
