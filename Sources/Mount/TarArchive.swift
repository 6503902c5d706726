#if canImport(Glibc)
import Glibc
#endif
import Support
import Dissect

/// `imgboot archive`: the image's tree as a POSIX tar archive (pax interchange format, which
/// GNU tar, bsdtar and Python's tarfile read): ustar headers, with a pax extended header
/// before an entry only where ustar cannot hold a value (a path or link target longer than
/// 100 bytes, an owner beyond 2097151, a file of 8 GiB or more, a date before 1970). Kept:
/// file types, modes (set-ID bits included), numeric owners (no user or group names: the
/// image's are not the host's), mtimes to the second, symlink targets, device numbers, and
/// hard links (a later name of an inode already written is a link entry). Not kept: extended
/// attributes (SELinux labels, file capabilities), ACLs, sockets (tar has no type for them).
public enum TarArchive {
    /// Writes the tree below the image's root into `output`: `./` first, then every entry as
    /// `./PATH` (directories `./PATH/`), in the order of `TreeWalk`. `warn` gets a line for
    /// each socket left out.
    public static func write(_ tree: ImageTree, to output: OutputFile, warn: (String) -> Void) throws {
        let top = try tree.open("/", flags: O_RDONLY | O_DIRECTORY | O_NOCTTY)
        defer { close(top) }
        var st = stat()
        guard fstat(top, &st) == 0 else { throw tree.pathError("/", errno: errno) }
        var writer = Writer(output: output, image: tree.image)
        try writer.header(name: Array("./".utf8), st, type: "5")
        var firstName: [FileIdentity: [UInt8]] = [:]
        try TreeWalk.walk(top, subject: "/", image: tree.image) { event in
            switch event {
            case .enter(let entry, _):
                try writer.header(name: Array("./".utf8) + entry.path + [UInt8(ascii: "/")], entry.stat, type: "5")
            case .leave:
                break
            case .file(let entry):
                let name = Array("./".utf8) + entry.path
                let st = entry.stat
                switch st.st_mode & S_IFMT {
                case S_IFREG:
                    let identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
                    if st.st_nlink > 1, let first = firstName[identity] {
                        try writer.header(name: name, st, type: "1", link: first)
                        return
                    }
                    if st.st_nlink > 1 { firstName[identity] = name }
                    try writer.header(name: name, st, type: "0", size: UInt64(st.st_size))
                    try writer.contents(of: entry, size: UInt64(st.st_size), path: TreeWalk.display("/", entry.path))
                case S_IFLNK:
                    guard let target = TreeListing.readLink(entry) else {
                        throw TreeWalk.failure("/", entry.path, "read the symlink", errno, image: tree.image)
                    }
                    try writer.header(name: name, st, type: "2", link: target)
                case S_IFCHR: try writer.header(name: name, st, type: "3")
                case S_IFBLK: try writer.header(name: name, st, type: "4")
                case S_IFIFO: try writer.header(name: name, st, type: "6")
                default:
                    warn("\(TreeWalk.display("/", entry.path)): a socket; tar cannot hold it, left out")
                }
            }
        }
        try writer.finish()
    }

    struct Writer {
        let output: OutputFile
        let image: String
        var written: UInt64 = 0

        init(output: OutputFile, image: String) {
            self.output = output
            self.image = image
        }

        static let block = 512
        /// GNU tar's default record: archives end on a multiple of it.
        static let record: UInt64 = 10240

        mutating func emit(_ bytes: [UInt8]) throws(MountError) {
            try output.write(bytes)
            written += UInt64(bytes.count)
        }

        mutating func header(name: [UInt8], _ st: stat, type: Character, size: UInt64 = 0, link: [UInt8] = []) throws(MountError) {
            var pax: [(String, [UInt8])] = []
            let uid = UInt64(st.st_uid), gid = UInt64(st.st_gid)
            let mtime = Int64(st.st_mtim.tv_sec)
            if name.count > 100 { pax.append(("path", name)) }
            if link.count > 100 { pax.append(("linkpath", link)) }
            if uid > 0o7777777 { pax.append(("uid", Array(String(uid).utf8))) }
            if gid > 0o7777777 { pax.append(("gid", Array(String(gid).utf8))) }
            if size > 0o77777777777 { pax.append(("size", Array(String(size).utf8))) }
            if mtime < 0 || mtime > 0o77777777777 { pax.append(("mtime", Array(String(mtime).utf8))) }
            if !pax.isEmpty {
                var body: [UInt8] = []
                for (key, value) in pax { body += Writer.record(key, value) }
                let paxName = Array("./PaxHeaders/".utf8) + Array(name.suffix(80))
                try emit(Writer.ustar(name: paxName, mode: 0o644, uid: 0, gid: 0, size: UInt64(body.count), mtime: 0,
                                      type: "x", link: [], major: 0, minor: 0))
                try emit(body)
                try pad()
            }
            let isDevice = type == "3" || type == "4"
            try emit(Writer.ustar(
                name: name, mode: UInt64(st.st_mode & 0o7777), uid: min(uid, 0o7777777), gid: min(gid, 0o7777777),
                size: size > 0o77777777777 ? 0 : size, mtime: UInt64(max(0, min(mtime, 0o77777777777))), type: type,
                link: link, major: isDevice ? deviceMajor(UInt64(st.st_rdev)) : 0,
                minor: isDevice ? deviceMinor(UInt64(st.st_rdev)) : 0))
        }

        /// A pax record: "LENGTH KEY=VALUE\n", LENGTH counting itself.
        static func record(_ key: String, _ value: [UInt8]) -> [UInt8] {
            let rest = 1 + key.utf8.count + 1 + value.count + 1  // " " key "=" value "\n"
            var length = rest + String(rest).count
            if String(length).count != String(rest).count { length = rest + String(length).count }
            return Array("\(length) \(key)=".utf8) + value + [UInt8(ascii: "\n")]
        }

        /// A 512-byte ustar header; fields that do not fit are cut (the pax header before it
        /// carries them whole).
        static func ustar(name: [UInt8], mode: UInt64, uid: UInt64, gid: UInt64, size: UInt64, mtime: UInt64,
                          type: Character, link: [UInt8], major: UInt64, minor: UInt64) -> [UInt8] {
            var h = [UInt8](repeating: 0, count: block)
            func put(_ bytes: [UInt8], at offset: Int, width: Int) {
                for (i, b) in bytes.prefix(width).enumerated() { h[offset + i] = b }
            }
            func number(_ value: UInt64, at offset: Int, width: Int) {
                put(Array(TreeListing.octal(value, width: width - 1).utf8), at: offset, width: width - 1)
            }
            put(name, at: 0, width: 100)
            number(mode, at: 100, width: 8)
            number(uid, at: 108, width: 8)
            number(gid, at: 116, width: 8)
            number(size, at: 124, width: 12)
            number(mtime, at: 136, width: 12)
            h[156] = type.asciiValue ?? UInt8(ascii: "0")
            put(link, at: 157, width: 100)
            put(Array("ustar\0".utf8), at: 257, width: 6)
            put(Array("00".utf8), at: 263, width: 2)
            number(major, at: 329, width: 8)
            number(minor, at: 337, width: 8)
            // The checksum is taken with its own field as eight spaces.
            put(Array("        ".utf8), at: 148, width: 8)
            let sum = h.reduce(UInt64(0)) { $0 + UInt64($1) }
            put(Array(TreeListing.octal(sum, width: 6).utf8) + [0, UInt8(ascii: " ")], at: 148, width: 8)
            return h
        }

        mutating func pad() throws(MountError) {
            let rest = Int(written % UInt64(Writer.block))
            if rest != 0 { try emit([UInt8](repeating: 0, count: Writer.block - rest)) }
        }

        /// The file's bytes: exactly `size` of them, as the header said (a file that changed
        /// size meanwhile is cut or padded with zeros, so the archive stays readable).
        mutating func contents(of entry: TreeWalk.Entry, size: UInt64, path: String) throws(MountError) {
            let fd = openat(entry.parent, entry.name.cString, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { throw MountError(image: image, .failed(operation: "\(path): open", errno: errno)) }
            defer { close(fd) }
            var left = size
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while left > 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, Int(min(UInt64($0.count), left))) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw MountError(image: image, .failed(operation: "\(path): read", errno: errno)) }
                if n == 0 { break }
                try emit(Array(buffer[0..<n]))
                left -= UInt64(n)
            }
            while left > 0 {
                let n = Int(min(left, 64 << 10))
                try emit([UInt8](repeating: 0, count: n))
                left -= UInt64(n)
            }
            try pad()
        }

        /// Two zero blocks, then zeros to the end of the record.
        mutating func finish() throws(MountError) {
            try emit([UInt8](repeating: 0, count: 2 * Writer.block))
            let rest = written % Writer.record
            if rest != 0 { try emit([UInt8](repeating: 0, count: Int(Writer.record - rest))) }
            try output.flush()
        }
    }
}

extension FileIdentity: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(device)
        hasher.combine(inode)
    }
}
