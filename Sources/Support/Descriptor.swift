#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor owned by one value: closed when the value ends (or by `close()`), so that
/// no error path has to remember it. -1 is "none". Noncopyable, so that two owners cannot
/// both close it: swift-system's FileDescriptor is a copyable wrapper that leaves closing to
/// the caller, which is exactly the bookkeeping this removes.
public struct Descriptor: ~Copyable {
    public private(set) var raw: Int32

    public init(_ raw: Int32) {
        self.raw = raw
    }

    public var isOpen: Bool { raw >= 0 }

    /// Closes it now (the value then holds none). Idempotent.
    public mutating func close() {
        if raw >= 0 { _ = Glibc.close(raw) }
        raw = -1
    }

    deinit {
        if raw >= 0 { _ = Glibc.close(raw) }
    }
}
