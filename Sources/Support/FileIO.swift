#if canImport(Glibc)
import Glibc
#endif

/// At most `limit` bytes of the file at `path` (opened non-blocking, so a FIFO cannot hang the
/// caller), or nil when it cannot be opened. For small files: kernel-generated tables, records,
/// logs, the host's resolv.conf.
public func readFile(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while data.count < limit {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, limit - data.count)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data += buffer[0..<n]
    }
    return data
}

/// `readFile` as text (invalid UTF-8 replaced).
public func readTextFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readFile(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// Writes all of `bytes` to `fd`, waiting (at most a second at a time) when it is non-blocking
/// and full; gives up on an error, as a closed terminal or pipe leaves nothing to do.
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
