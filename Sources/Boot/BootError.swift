#if canImport(Glibc)
import Glibc
#endif
import Dissect
import Support

/// Why a container could not be set up or run. One line: the image (or machine), what failed,
/// and the errno — `basic.raw: container setup: mount proc on /proc: Permission denied`.
public struct BootError: IMGBootError, Equatable {
    public let image: String
    public let operation: String
    public let errno: Int32?
    /// What a program may act on, when the operation alone would have to be read as text.
    public let code: Code?

    public enum Code: String, Sendable {
        /// `boot` found no init to boot in the image (with `--init=systemd`: no systemd).
        case noInit = "no-init"
    }

    public init(image: String, _ operation: String, errno: Int32? = nil, code: Code? = nil) {
        self.image = image
        self.operation = operation
        self.errno = errno
        self.code = code
    }

    public var subject: String? { image }
    public var detail: String { failure(operation, errno: errno) }
}
