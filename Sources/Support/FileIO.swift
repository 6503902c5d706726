#if canImport(Glibc)
import Glibc
#endif

/// A failed system call's errno, as a thrown error: the caller says which call on what, and
/// how it renders (`errnoString(code)`).
public struct SystemError: Error, Equatable, Sendable {
    public var code: Int32
    public init(_ code: Int32) { self.code = code }
}

/// Reads `fd` to its end, or to `limit` bytes (EINTR retried), from `offset` when given (pread:
/// the file position is left alone, as for a record another process may hold open) or from the
/// current position. Throws the errno of a failed read; what was read before it is lost.
public func readAll(_ fd: Int32, limit: Int, at offset: off_t? = nil) throws(SystemError) -> [UInt8] {
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: min(max(limit, 1), 65536))
    while data.count < limit {
        let wanted = min(buffer.count, limit - data.count)
        let n = buffer.withUnsafeMutableBytes { raw in
            offset.map { pread(fd, raw.baseAddress, wanted, $0 + off_t(data.count)) } ?? read(fd, raw.baseAddress, wanted)
        }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw SystemError(errno) }
        if n == 0 { break }
        data += buffer[0..<n]
    }
    return data
}

/// Reads `fd` to its end in chunks of 64 KiB (EINTR retried), handing each to `body`: for
/// contents of any size (a file hashed, copied out of an image). A failed read throws
/// `failure(errno)`; what `body` throws passes through as it is.
public func readChunks<E: Error>(_ fd: Int32, failure: (Int32) -> E, _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    defer { buffer.deallocate() }
    while true {
        let n = read(fd, buffer.baseAddress, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw failure(errno) }
        if n == 0 { return }
        try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
    }
}

/// Writes all of `bytes` to the blocking descriptor `fd`: short writes are continued and EINTR
/// retried. Throws the errno of a failed write (EIO for a write of nothing).
public func writeFully<C: Collection>(_ fd: Int32, _ bytes: C) throws(SystemError) where C.Element == UInt8 {
    var data = Array(bytes)[...]
    while !data.isEmpty {
        let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw SystemError(n < 0 ? errno : EIO) }
        data = data.dropFirst(n)
    }
}

/// At most `limit` bytes of the file at `path` (opened non-blocking, so a FIFO cannot hang the
/// caller), or nil when it cannot be opened or read. For small files: kernel-generated tables,
/// records, logs, the host's resolv.conf.
public func readFile(_ path: String, limit: Int = 1 << 20, relativeTo directory: Int32 = AT_FDCWD) -> [UInt8]? {
    let fd = openat(directory, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return try? readAll(fd, limit: limit)
}

/// `readFile` as text (invalid UTF-8 replaced).
public func readTextFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readFile(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// Writes all of `bytes` to `fd`, waiting (at most a second at a time) when it is non-blocking
/// and full; gives up on an error, as a closed terminal or pipe leaves nothing to do. For
/// terminals and logs; a file whose content matters is written with `writeFully`.
public func writeAll<C: Collection>(_ fd: Int32, _ bytes: C) where C.Element == UInt8 {
    var data = Array(bytes)[...]
    while !data.isEmpty {
        let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n > 0 { data = data.dropFirst(n); continue }
        if n < 0 && errno == EINTR { continue }
        if n < 0 && errno == EAGAIN {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 1000)
            continue
        }
        return
    }
}
