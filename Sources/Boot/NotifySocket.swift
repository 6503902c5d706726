#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Support

/// The notification socket of whoever started imgboot (`$NOTIFY_SOCKET`: a service manager, a
/// CI tool, `imgboot smoke`), spoken to as sd_notify(3) does: one datagram of newline-separated
/// `KEY=VALUE` fields, to an absolute path or to `@NAME` in the abstract namespace.
///
/// What imgboot says there (as systemd-nspawn does): `READY=1` once the container is up — its
/// payload executed — or, with `--notify-ready=yes`, when the container's init reports
/// `READY=1`; the init's `READY=1` and `STATUS=` lines as they come; and, when imgboot itself
/// fails, `STATUS=` with its one-line error and `X_IMGBOOT_ERROR=` with a code a program can
/// act on (`no-init`, or `failed`).
public struct NotifySocket: Sendable {
    public let address: String

    /// nil unless `address` is an absolute path or `@NAME`.
    public init?(address: String) {
        guard address.count > 1, address.hasPrefix("/") || address.hasPrefix("@") else { return nil }
        self.address = address
    }

    /// `$NOTIFY_SOCKET`, if it is set to an address sd_notify would use.
    public static func fromEnvironment() -> NotifySocket? {
        guard let value = getenv("NOTIFY_SOCKET") else { return nil }
        return NotifySocket(address: String(cString: value))
    }

    /// Sends the fields as one datagram. Whoever listens is not imgboot's to wait for: a
    /// failure (no one listening any more) is logged and otherwise ignored, as sd_notify's
    /// callers do.
    public func send(_ fields: [String], logger: Logger? = nil) {
        let bytes = Array(fields.joined(separator: "\n").utf8) + [UInt8(ascii: "\n")]
        let sent = bytes.withUnsafeBytes { imgboot_notify_send(address, $0.baseAddress, UInt($0.count)) }
        if sent < 0 {
            let e = errno
            logger?.warning("\(printable(address)): cannot send \(fields.first ?? "") on the notify socket: \(errnoString(e))")
        }
    }

    /// Says that imgboot failed: `STATUS=` its one line (escaped, as on stderr: a newline
    /// would split it into fields), `X_IMGBOOT_ERROR=` what kind of failure.
    public func sendFailure(_ error: any Error) {
        let code = (error as? BootError)?.code?.rawValue ?? "failed"
        send(["STATUS=\(printable(String(describing: error)))", "X_IMGBOOT_ERROR=\(code)"])
    }
}
