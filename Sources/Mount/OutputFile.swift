#if canImport(Glibc)
import Glibc
#endif
import Support
import CLinux
import Dissect

/// Where a command's bytes go on the host: standard output, or a new file that takes its
/// name only once it is complete (`commit`) — written unnamed (O_TMPFILE) in the directory, so
/// that a failure, Ctrl-C or SIGKILL halfway leaves nothing, and an existing file of that name
/// is replaced all at once or not at all. Buffered; every error names the file.
public final class OutputFile {
    /// The name in messages: the path, or "standard output".
    public let name: String
    private let image: String
    private var fd: Int32
    private let ownsDescriptor: Bool
    /// The directory and name a file goes to, and a name it has meanwhile (where O_TMPFILE is
    /// not available), or nil for standard output.
    private var placement: (directory: Int32, name: String, temporary: String?)?
    private var buffer: [UInt8] = []
    private static let bufferSize = 256 << 10

    private init(fd: Int32, name: String, image: String, owns: Bool, placement: (Int32, String, String?)?) {
        self.fd = fd
        self.name = name
        self.image = image
        self.ownsDescriptor = owns
        self.placement = placement
    }

    /// Standard output (the caller's descriptor 1).
    public static func standardOutput(image: String) -> OutputFile {
        OutputFile(fd: 1, name: "standard output", image: image, owns: false, placement: nil)
    }

    /// A new file for `path`, in its directory (which must exist). A directory at `path` is
    /// refused before anything is written.
    public static func replacing(_ path: String, image: String) throws(MountError) -> OutputFile {
        let (parent, base) = splitPath(path)
        let directoryPath = parent ?? "."
        func refuse(_ what: String) -> MountError { MountError(image: image, .other("\(path): \(what)")) }
        guard !base.isEmpty, base != ".", base != "..", !path.hasSuffix("/") else { throw refuse("not a file name") }
        let directory = open(directoryPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw refuse("cannot open its directory: \(errnoString(errno))") }
        var st = stat()
        if fstatat(directory, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR {
            close(directory)
            throw refuse("is a directory")
        }
        var fd = openat(directory, ".", O_WRONLY | Int32(IMGBOOT_O_TMPFILE) | O_CLOEXEC, 0o666)
        var temporary: String? = nil
        if fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR) {
            // A filesystem without O_TMPFILE: a hidden name of its own until it is complete.
            var random = [UInt8](repeating: 0, count: 6)
            _ = random.withUnsafeMutableBytes { imgboot_random($0.baseAddress, 6) }
            let name = "." + base + ".imgboot-" + random.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            fd = openat(directory, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
            temporary = name
        }
        guard fd >= 0 else {
            let e = errno
            close(directory)
            throw refuse("cannot create it: \(errnoString(e))")
        }
        return OutputFile(fd: fd, name: path, image: image, owns: true, placement: (directory, base, temporary))
    }

    deinit {
        if let placement {
            if let temporary = placement.temporary { unlinkat(placement.directory, temporary, 0) }
            close(placement.directory)
        }
        if ownsDescriptor && fd >= 0 { close(fd) }
    }

    public func write(_ bytes: [UInt8]) throws(MountError) {
        buffer += bytes
        if buffer.count >= OutputFile.bufferSize { try drain() }
    }

    /// Writes out what is buffered.
    public func flush() throws(MountError) { try drain() }

    private func drain() throws(MountError) {
        do {
            try writeFully(fd, buffer)
        } catch {
            throw MountError(image: image, .failed(operation: "\(name): write", errno: error.code))
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, and for a file gives it its name (replacing what had it). Until then the file
    /// has no name, or a hidden one removed if this object goes without a commit.
    public func commit() throws(MountError) {
        try drain()
        guard let placement else { return }
        func fail(_ what: String, _ e: Int32) -> MountError {
            MountError(image: image, .failed(operation: "\(name): \(what)", errno: e))
        }
        guard fsync(fd) == 0 else { throw fail("write", errno) }
        var temporary = placement.temporary
        if temporary == nil {
            var random = [UInt8](repeating: 0, count: 6)
            _ = random.withUnsafeMutableBytes { imgboot_random($0.baseAddress, 6) }
            let name = "." + placement.name + ".imgboot-" + random.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            guard linkat(AT_FDCWD, "/proc/self/fd/\(fd)", placement.directory, name, AT_SYMLINK_FOLLOW) == 0 else {
                throw fail("cannot create it", errno)
            }
            temporary = name
            self.placement?.temporary = name
        }
        guard let temporary, renameat(placement.directory, temporary, placement.directory, placement.name) == 0 else {
            throw fail("cannot give it its name", errno)
        }
        self.placement?.temporary = nil
    }
}
