#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Dissect
import Support

/// What `imgboot ls` prints: the files of an image's tree, as `systemd-dissect --list` and
/// `--mtree` print them.
public enum TreeListing {
    /// One line per file below `path` (a directory in the image), relative to it and sorted as
    /// `systemd-dissect --list` has them: a directory with a `/` after its name, then what it
    /// holds. Names are escaped for the terminal (`printable`).
    public static func list(_ tree: ImageTree, path: String, emit: (String) throws -> Void) throws {
        let top = try openDirectory(tree, path)
        defer { close(top) }
        try TreeWalk.walk(top, subject: path, image: tree.image) { event in
            switch event {
            case .enter(let entry, _): try emit(printable(bytes: entry.path) + "/")
            case .file(let entry): try emit(printable(bytes: entry.path))
            case .leave: break
            }
        }
    }

    /// An mtree(5) specification of the tree below `path`, in the form `systemd-dissect --mtree`
    /// prints: a line per file (`.` first), relative paths starting `./`, directories with a
    /// `/` after their name; `type`, `mode` (not for symlinks; with the set-ID and sticky bits,
    /// which systemd leaves out), `uid`, `gid`, and for regular
    /// files `size` and — when not empty — `sha256digest` (systemd writes `sha256sum`, which
    /// mtree(5) does not know), `link` for symlinks, `device` for device nodes. Names and link
    /// targets are escaped as mtree(5) has it (`\ooo` octal for blanks, `#`, glob characters,
    /// backslashes and every byte outside printable ASCII), so every line is safe on a terminal.
    /// `warn` gets a line for each file whose contents could not be read (its digest is left out).
    public static func mtree(_ tree: ImageTree, path: String, emit: (String) throws -> Void, warn: (String) -> Void) throws {
        let top = try openDirectory(tree, path)
        defer { close(top) }
        var st = stat()
        guard fstat(top, &st) == 0 else { throw tree.pathError(path, errno: errno) }
        try emit(line(".", st, digest: nil, link: nil))
        try TreeWalk.walk(top, subject: path, image: tree.image) { event in
            let name: String
            switch event {
            case .enter(let entry, _):
                try emit(line("./" + escape(entry.path), entry.stat, digest: nil, link: nil))
            case .file(let entry):
                name = "./" + escape(entry.path)
                var digest: String? = nil, link: String? = nil
                switch entry.stat.st_mode & S_IFMT {
                case S_IFREG where entry.stat.st_size > 0:
                    do throws(SystemError) { digest = try sha256(entry) } catch {
                        warn("\(TreeWalk.display(path, entry.path)): cannot read it (\(errnoString(error.code))): no digest")
                    }
                case S_IFLNK:
                    if let target = readLink(entry) { link = escape(target) }
                default: break
                }
                try emit(line(name, entry.stat, digest: digest, link: link))
            case .leave:
                break
            }
        }
    }

    static func openDirectory(_ tree: ImageTree, _ path: String) throws(MountError) -> Int32 {
        try tree.open(path, flags: O_RDONLY | O_DIRECTORY | O_NOCTTY)
    }

    static func line(_ name: String, _ st: stat, digest: String?, link: String?) -> String {
        let kind = st.st_mode & S_IFMT
        var out = name + (kind == S_IFDIR ? "/" : "") + " type=" + typeName(kind)
        if kind != S_IFLNK { out += " mode=" + octal(UInt64(st.st_mode & 0o7777), width: 4) }
        out += " uid=\(st.st_uid) gid=\(st.st_gid)"
        if kind == S_IFREG {
            out += " size=\(st.st_size)"
            if let digest { out += " sha256digest=" + digest }
        }
        if let link { out += " link=" + link }
        if kind == S_IFBLK || kind == S_IFCHR {
            out += " device=linux,\(deviceMajor(UInt64(st.st_rdev))),\(deviceMinor(UInt64(st.st_rdev)))"
        }
        return out
    }

    static func typeName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "dir"
        case S_IFREG: "file"
        case S_IFLNK: "link"
        case S_IFIFO: "fifo"
        case S_IFBLK: "block"
        case S_IFCHR: "char"
        case S_IFSOCK: "socket"
        default: "unknown"
        }
    }

    /// mtree(5) escaping: `\ooo` for what would end or comment a word, or be taken as a
    /// pattern, and for every byte that is not printable ASCII.
    static func escape(_ bytes: [UInt8]) -> String {
        var out = ""
        for b in bytes {
            if b <= 0x20 || b >= 0x7f || b == UInt8(ascii: "#") || b == UInt8(ascii: "*") || b == UInt8(ascii: "?")
                || b == UInt8(ascii: "[") || b == UInt8(ascii: "\\") {
                out += "\\" + octal(UInt64(b), width: 3)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out
    }

    static func octal(_ value: UInt64, width: Int) -> String {
        let digits = String(value, radix: 8)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The SHA-256 of a regular file's contents, in hex.
    static func sha256(_ entry: TreeWalk.Entry) throws(SystemError) -> String {
        let fd = openat(entry.parent, entry.name.cString, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError(errno) }
        defer { close(fd) }
        var hasher = SHA256()
        try readChunks(fd, failure: SystemError.init) { (chunk) throws(SystemError) in hasher.update(bufferPointer: chunk) }
        return hasher.finalize().map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    static func readLink(_ entry: TreeWalk.Entry) -> [UInt8]? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(entry.parent, entry.name.cString, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return buffer[0..<n].map { UInt8(bitPattern: $0) }
    }
}

/// gnu_dev_major/minor are macros Swift does not import.
func deviceMajor(_ dev: UInt64) -> UInt64 { ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff) }
func deviceMinor(_ dev: UInt64) -> UInt64 { ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff) }
