#if canImport(Glibc)
import Glibc
#endif
import Support
import Dissect

/// Walks a directory tree through descriptors only: every entry is looked at relative to its
/// parent's descriptor, never followed if it is a symlink (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`),
/// and a directory is entered through the descriptor it was opened as — so nothing renamed or
/// swapped in meanwhile can lead the walk elsewhere. Mounts below are crossed (an image's tree
/// is several partitions). Entries come sorted by their names' bytes (strcmp order, as
/// `systemd-dissect --list` prints them), directories before what they hold.
public enum TreeWalk {
    /// Deeper than this is refused rather than followed: each level holds a descriptor, and a
    /// hostile image can nest directories without end. (systemd's recurse_dir stops at 100 too.)
    public static let maxDepth = 100

    public enum Event {
        /// A directory, before what it holds: `fd` is the directory itself (O_RDONLY), open
        /// until the matching `leave`.
        case enter(Entry, fd: Int32)
        /// After what it holds.
        case leave(Entry, fd: Int32)
        /// Anything but a directory.
        case file(Entry)
    }

    public struct Entry {
        /// The directory holding it, and its name there.
        public let parent: Int32
        public let name: [UInt8]
        /// Its path relative to where the walk started ("etc/hostname").
        public let path: [UInt8]
        public let stat: stat
    }

    /// Calls `visit` for everything below the directory open at `directory` (not for that
    /// directory itself). `subject` names the walk's top in errors ("/etc").
    public static func walk(_ directory: Int32, subject: String, image: String,
                            _ visit: (Event) throws -> Void) throws {
        try walk(directory, path: [], depth: 1, subject: subject, image: image, visit)
    }

    private static func walk(_ directory: Int32, path: [UInt8], depth: Int, subject: String, image: String,
                             _ visit: (Event) throws -> Void) throws {
        let names = try entries(of: directory, path: path, subject: subject, image: image)
        for name in names {
            let full = path.isEmpty ? name : path + [UInt8(ascii: "/")] + name
            var st = stat()
            guard fstatat(directory, name.cString, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { continue }  // gone meanwhile (only possible where written)
                throw failure(subject, full, "stat", errno, image: image)
            }
            let entry = Entry(parent: directory, name: name, path: full, stat: st)
            guard st.st_mode & S_IFMT == S_IFDIR else {
                try visit(.file(entry))
                continue
            }
            guard depth < maxDepth else {
                throw MountError(image: image, .other("\(display(subject, full)): more than \(maxDepth) directories deep; refusing to go on"))
            }
            let fd = openat(directory, name.cString, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
            guard fd >= 0 else { throw failure(subject, full, "open", errno, image: image) }
            defer { close(fd) }
            try visit(.enter(entry, fd: fd))
            try walk(fd, path: full, depth: depth + 1, subject: subject, image: image, visit)
            try visit(.leave(entry, fd: fd))
        }
    }

    /// The names in a directory but `.` and `..`, sorted by their bytes.
    static func entries(of directory: Int32, path: [UInt8], subject: String, image: String) throws -> [[UInt8]] {
        // fdopendir takes the descriptor it is given: a duplicate, rewound (a shared offset).
        let own = openat(directory, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard own >= 0, let dir = fdopendir(own) else {
            let e = errno
            if own >= 0 { close(own) }
            throw failure(subject, path, "open", e, image: image)
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw failure(subject, path, "read the directory", errno, image: image) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(name)
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// `subject` and a path below it, as a user reads them: "/etc/hostname".
    public static func display(_ subject: String, _ path: [UInt8]) -> String {
        guard !path.isEmpty else { return subject }
        let below = String(decoding: path, as: UTF8.self)
        return subject.hasSuffix("/") ? subject + below : subject + "/" + below
    }

    static func failure(_ subject: String, _ path: [UInt8], _ operation: String, _ e: Int32, image: String) -> MountError {
        MountError(image: image, .failed(operation: "\(display(subject, path)): \(operation)", errno: e))
    }
}

extension Array where Element == UInt8 {
    /// The bytes as a C string (a name from a directory holds no NUL).
    var cString: [CChar] { map { CChar(bitPattern: $0) } + [0] }
}
