#if canImport(Glibc)
import Glibc
#endif
import Support
import CLinux
import Dissect

/// `imgboot copy-from` and `copy-to`: files and directory trees between an image's tree
/// (`ImageTree`) and the host, as `systemd-dissect --copy-from` and `--copy-to` copy them. Every
/// step on either side goes through a directory's descriptor and never follows a symlink it
/// creates or finds (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW); paths in the image are resolved inside
/// it. Checks that can fail on input (a missing path, a name taken) come before anything is
/// written.
public enum ImageFiles {
    // MARK: Out of the image

    /// What `path` in the image is, followed through its symlinks inside the image: its
    /// descriptor (O_RDONLY) and status. Only regular files and directories can be copied.
    public static func openSource(_ tree: ImageTree, _ path: String) throws(MountError) -> (fd: Int32, stat: stat) {
        let probe = try tree.open(path, flags: Int32(IMGBOOT_O_PATH))
        defer { close(probe) }
        var st = stat()
        guard fstat(probe, &st) == 0 else { throw tree.pathError(path, errno: errno) }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFDIR else {
            throw MountError(image: tree.image, .other("\(path): a \(TreeListing.typeName(kind)) in the image, not a regular file or directory; only those can be copied"))
        }
        let fd = try tree.open(path, flags: O_RDONLY | O_NONBLOCK | O_NOCTTY | (kind == S_IFDIR ? O_DIRECTORY : 0))
        return (fd, st)
    }

    /// Copies the regular file `path` of the image to `output` (its bytes only).
    public static func copyOut(_ tree: ImageTree, path: String, to output: OutputFile) throws(MountError) {
        let (fd, st) = try openSource(tree, path)
        defer { close(fd) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw MountError(image: tree.image, .other("\(path): a directory in the image; `-` (standard output) takes a regular file"))
        }
        // A failed read names the image's file; a failed write, the output (OutputFile's error).
        try readChunks(fd, failure: { MountError(image: tree.image, .failed(operation: "\(path): read", errno: $0)) }) { (chunk) throws(MountError) in
            try output.write(Array(chunk))
        }
        try output.commit()
    }

    /// Copies `path` of the image — a regular file or a directory tree — to `target` on the
    /// host, which must not exist (or, for a directory, be an empty directory, which is filled).
    /// A file gets its mode and mtime (not its owner); a tree keeps modes, owners, mtimes and
    /// symlinks. Set-user-ID and set-group-ID bits are dropped — the image's programs are not
    /// to gain privileges on the host — and device nodes and sockets are left out, with a
    /// line to `warn` each.
    public static func copyOut(_ tree: ImageTree, path: String, to target: String, warn: (String) -> Void) throws {
        let (source, st) = try openSource(tree, path)
        defer { close(source) }
        let (directory, name) = try hostParent(of: target, image: tree.image)
        defer { close(directory) }
        try withoutActuallyEscaping(warn) { warn in
            try copyOut(tree, source: source, st, path: path, into: directory, name: name, target: target, warn: warn)
        }
    }

    private static func copyOut(_ tree: ImageTree, source: Int32, _ st: stat, path: String, into directory: Int32, name: String,
                                target: String, warn: @escaping (String) -> Void) throws {
        let copier = Copier(image: tree.image, fromImage: true, warn: warn)
        var existing = stat()
        let exists = fstatat(directory, name, &existing, AT_SYMLINK_NOFOLLOW) == 0
        if st.st_mode & S_IFMT == S_IFREG {
            if exists { throw MountError(image: tree.image, .other("\(target): exists already")) }
            try copier.file(source, st, into: directory, name: Array(name.utf8), display: target, keepOwner: false)
            return
        }
        if exists {
            guard existing.st_mode & S_IFMT == S_IFDIR, isEmptyDirectory(directory, name) else {
                throw MountError(image: tree.image, .other("\(target): exists already (a directory is copied only to a new name or into an empty directory)"))
            }
        } else if mkdirat(directory, name, 0o700) != 0 {
            throw MountError(image: tree.image, .failed(operation: "\(target): cannot create it", errno: errno))
        }
        let top = openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard top >= 0 else { throw MountError(image: tree.image, .failed(operation: "\(target): open", errno: errno)) }
        defer { close(top) }
        try copier.tree(source, subject: path, into: top, display: target)
        try copier.attributes(st, of: top, display: target)
    }

    // MARK: Into the image

    /// What `copy-to` will write: checked on a read-only tree before the image is opened for
    /// writing. The partition that will be written — the one holding the target's directory,
    /// or for a directory copied into an existing one, that directory — must be writable.
    public struct Destination {
        public let partition: Partition
        public let sourceIsDirectory: Bool
    }

    /// A host file to copy into the image: standard input (nil or "-"), a regular file or a
    /// directory. Returns the open descriptor (or 0) and its status.
    public static func openHostSource(_ source: String?, image: String) throws(MountError) -> (fd: Int32, stat: stat?) {
        guard let source, source != "-" else { return (0, nil) }
        let fd = open(source, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MountError(image: image, .other("\(source): \(errno == ENOENT ? "no such file or directory" : errnoString(errno))"))
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw MountError(image: image, .failed(operation: "\(source)", errno: e))
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFDIR else {
            close(fd)
            throw MountError(image: image, .other("\(source): a \(TreeListing.typeName(kind)), not a regular file or directory; only those can be copied"))
        }
        return (fd, st)
    }

    /// Checks that `path` can take the source (`stat`: nil for standard input) and finds the
    /// partition it will be written to. Nothing is written.
    public static func destination(_ tree: ImageTree, path: String, source: stat?) throws -> Destination {
        let (parent, name) = try imageParent(tree, path)
        defer { close(parent) }
        let isDirectory = source.map { $0.st_mode & S_IFMT == S_IFDIR } ?? false
        var existing = stat()
        var holder = parent
        var targetFD: Int32 = -1
        defer { if targetFD >= 0 { close(targetFD) } }
        if fstatat(parent, name, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
            guard isDirectory, existing.st_mode & S_IFMT == S_IFDIR else {
                throw MountError(image: tree.image, .other("\(path): exists already in the image\(isDirectory ? " (and is not a directory)" : "")"))
            }
            targetFD = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard targetFD >= 0 else { throw tree.pathError(path, errno: errno) }
            holder = targetFD
        }
        guard let mount = tree.mount(holding: holder) else {
            throw MountError(image: tree.image, .other("\(path): on no partition of the image"))
        }
        let p = mount.partition
        if p.readOnly {
            throw MountError(image: tree.image, .other(
                "\(path): on \(p.displayName), which is read-only (\(ImageTree.whyReadOnly(p))); imgboot cannot write it"))
        }
        return Destination(partition: p, sourceIsDirectory: isDirectory)
    }

    /// Copies the host's `source` (open at `fd`; 0 with `stat` nil for standard input) to
    /// `path` in the image, whose tree has `destination`'s partition writable. A file read from
    /// standard input gets mode 0644; a file gets its mode and mtime (it belongs to root); a
    /// directory tree keeps modes, owners, mtimes and symlinks, and is merged into a
    /// directory that exists (files of the same name replaced; a directory where a file would
    /// go, or the reverse, is an error). Device nodes and sockets are left out, with a warning.
    public static func copyIn(_ tree: ImageTree, source fd: Int32, stat st: stat?, sourceName: String, path: String,
                              destination: Destination, warn: (String) -> Void) throws {
        let (parent, name) = try imageParent(tree, path)
        defer { close(parent) }
        // The same check as on the read-only tree: what was decided there still holds.
        var probe = parent
        var target: Int32 = -1
        if destination.sourceIsDirectory {
            target = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if target >= 0 { probe = target }
        }
        guard tree.mount(holding: probe)?.partition.number == destination.partition.number else {
            if target >= 0 { close(target) }
            throw MountError(image: tree.image, .other("\(path): the image changed while imgboot was looking at it; nothing was written"))
        }
        try withoutActuallyEscaping(warn) { warn in
            try copyIn(tree, fd, st, into: parent, name: name, target: target, path: path, sourceName: sourceName,
                       destination: destination, warn: warn)
        }
    }

    private static func copyIn(_ tree: ImageTree, _ fd: Int32, _ st: stat?, into parent: Int32, name: String, target: Int32,
                               path: String, sourceName: String, destination: Destination, warn: @escaping (String) -> Void) throws {
        var target = target
        defer { if target >= 0 { close(target) } }
        let copier = Copier(image: tree.image, fromImage: false, warn: warn)
        guard let st else {
            try copier.stream(fd, into: parent, name: Array(name.utf8), display: path)
            return
        }
        if !destination.sourceIsDirectory {
            try copier.file(fd, st, into: parent, name: Array(name.utf8), display: path, keepOwner: false)
            return
        }
        let created = target < 0
        if created {
            guard mkdirat(parent, name, 0o700) == 0 else { throw tree.pathError(path, errno: errno) }
            target = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard target >= 0 else { throw tree.pathError(path, errno: errno) }
        }
        try copier.tree(fd, subject: sourceName, into: target, display: path)
        if created { try copier.attributes(st, of: target, display: path) }
    }

    // MARK: Helpers

    /// The directory holding `path` in the image (opened, resolved inside it) and the name.
    static func imageParent(_ tree: ImageTree, _ path: String) throws(MountError) -> (Int32, String) {
        let (directory, name) = split(path)
        guard let name else { throw MountError(image: tree.image, .other("\(path): not a name of a file in the image")) }
        return (try tree.open(directory, flags: O_RDONLY | O_DIRECTORY | O_NOCTTY), name)
    }

    /// The host directory that will hold `target` (opened) and the new name in it.
    static func hostParent(of target: String, image: String) throws(MountError) -> (Int32, String) {
        let (directory, name) = split(target)
        guard let name else { throw MountError(image: image, .other("\(target): not a file name")) }
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MountError(image: image, .failed(operation: "\(target): cannot open its directory", errno: errno))
        }
        return (fd, name)
    }

    /// "a/b/c" → ("a/b", "c"); "/c" → ("/", "c"); "c" → ("", "c"); a trailing "/" is dropped.
    /// No name for "/", "", "." or "..".
    static func split(_ path: String) -> (String, String?) {
        let (directory, name) = splitPath(path)
        return (directory ?? "", [".", "..", ""].contains(name) ? nil : name)
    }

    static func isEmptyDirectory(_ directory: Int32, _ name: String) -> Bool {
        let fd = openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return ((try? TreeWalk.entries(of: fd, path: [], subject: name, image: "")) ?? [[0]]).isEmpty  // unreadable: not empty
    }
}

/// Copies files and trees from one directory's descriptor to another's.
struct Copier {
    let image: String
    /// Out of the image: set-ID bits are dropped on the host.
    let fromImage: Bool
    let warn: (String) -> Void

    func failure(_ display: String, _ what: String, _ e: Int32) -> MountError {
        MountError(image: image, .failed(operation: "\(display): \(what)", errno: e))
    }

    /// The mode a copy gets: on the host, without set-user-ID and set-group-ID for files.
    func mode(_ st: stat) -> mode_t {
        let kind = st.st_mode & S_IFMT
        return fromImage && kind != S_IFDIR ? st.st_mode & 0o1777 : st.st_mode & 0o7777
    }

    /// A new regular file `name` in `directory`, created exclusively (never through a symlink),
    /// or — with `replace` — in place of a file (not a directory) of that name.
    func create(_ directory: Int32, _ name: [UInt8], display: String, replace: Bool) throws(MountError) -> Int32 {
        var fd = openat(directory, name.cString, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0o600)
        if fd < 0 && errno == EEXIST && replace {
            try removeForReplacing(directory, name, display: display)
            fd = openat(directory, name.cString, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0o600)
        }
        guard fd >= 0 else { throw failure(display, errno == EEXIST ? "exists already" : "create", errno) }
        return fd
    }

    /// Removes what is at `name` for a non-directory to take its place; a directory is an error.
    func removeForReplacing(_ directory: Int32, _ name: [UInt8], display: String) throws(MountError) {
        var st = stat()
        if fstatat(directory, name.cString, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR {
            throw MountError(image: image, .other("\(display): a directory is there; a file cannot replace it"))
        }
        guard unlinkat(directory, name.cString, 0) == 0 || errno == ENOENT else { throw failure(display, "remove it to replace it", errno) }
    }

    /// Copies the regular file open at `source` to `name` in `directory`.
    func file(_ source: Int32, _ st: stat, into directory: Int32, name: [UInt8], display: String, keepOwner: Bool,
              replace: Bool = false) throws(MountError) {
        let fd = try create(directory, name, display: display, replace: replace)
        defer { close(fd) }
        try bytes(from: source, to: fd, display: display)
        if keepOwner { guard fchown(fd, st.st_uid, st.st_gid) == 0 else { throw failure(display, "set its owner", errno) } }
        // After chown, which clears set-ID bits.
        guard fchmod(fd, mode(st)) == 0 else { throw failure(display, "set its mode", errno) }
        var times = [st.st_atim, st.st_mtim]
        guard futimens(fd, &times) == 0 else { throw failure(display, "set its times", errno) }
    }

    /// Standard input (or any stream) to a new file of mode 0644.
    func stream(_ source: Int32, into directory: Int32, name: [UInt8], display: String) throws(MountError) {
        let fd = try create(directory, name, display: display, replace: false)
        defer { close(fd) }
        try bytes(from: source, to: fd, display: display)
        guard fchmod(fd, 0o644) == 0 else { throw failure(display, "set its mode", errno) }
    }

    func bytes(from source: Int32, to target: Int32, display: String) throws(MountError) {
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                // Standard input may be non-blocking (a terminal, a pipe someone set so).
                var p = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, -1)
                continue
            }
            if n < 0 { throw failure(display, "read", errno) }
            if n == 0 { return }
            var done = 0
            while done < n {
                let w = buffer.withUnsafeBytes { write(target, $0.baseAddress.map { $0 + done }, n - done) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw failure(display, "write", w < 0 ? errno : EIO) }
                done += w
            }
        }
    }

    /// The owner, mode and times of `st` on the directory open at `fd`.
    func attributes(_ st: stat, of fd: Int32, display: String) throws(MountError) {
        guard fchown(fd, st.st_uid, st.st_gid) == 0 else { throw failure(display, "set its owner", errno) }
        guard fchmod(fd, mode(st)) == 0 else { throw failure(display, "set its mode", errno) }
        var times = [st.st_atim, st.st_mtim]
        guard futimens(fd, &times) == 0 else { throw failure(display, "set its times", errno) }
    }

    /// Copies what the directory `source` holds into the directory `target`. New directories
    /// are made 0700 and get their own mode, owner and times once filled (so a read-only one
    /// can be filled, and no one else can write in one meanwhile); directories that exist are
    /// merged into and keep theirs.
    func tree(_ source: Int32, subject: String, into target: Int32, display: String) throws {
        var stack: [(fd: Int32, created: Bool)] = [(target, false)]
        defer { for (fd, _) in stack.dropFirst() { close(fd) } }
        func shown(_ path: [UInt8]) -> String { TreeWalk.display(display, path) }
        try TreeWalk.walk(source, subject: subject, image: image) { event in
            guard let current = stack.last?.fd else { return }
            switch event {
            case .enter(let entry, _):
                var created = true
                if mkdirat(current, entry.name.cString, 0o700) != 0 {
                    let e = errno
                    var st = stat()
                    guard e == EEXIST, !fromImage, fstatat(current, entry.name.cString, &st, AT_SYMLINK_NOFOLLOW) == 0,
                          st.st_mode & S_IFMT == S_IFDIR else {
                        throw failure(shown(entry.path), e == EEXIST ? "exists already (and is not a directory)" : "create the directory", e)
                    }
                    created = false
                }
                let fd = openat(current, entry.name.cString, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw failure(shown(entry.path), "open", errno) }
                stack.append((fd, created))
            case .leave(let entry, _):
                guard let (fd, created) = stack.popLast() else { return }
                defer { close(fd) }
                if created { try attributes(entry.stat, of: fd, display: shown(entry.path)) }
            case .file(let entry):
                try file(entry, into: current, display: shown(entry.path))
            }
        }
    }

    /// One non-directory of a tree.
    func file(_ entry: TreeWalk.Entry, into directory: Int32, display: String) throws(MountError) {
        let st = entry.stat
        let replace = !fromImage
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            let source = openat(entry.parent, entry.name.cString, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
            guard source >= 0 else { throw failure(display, "open", errno) }
            defer { close(source) }
            try file(source, st, into: directory, name: entry.name, display: display, keepOwner: true, replace: replace)
        case S_IFLNK:
            guard let link = TreeListing.readLink(entry) else { throw failure(display, "read the symlink", errno) }
            var made = symlinkat(link.cString, directory, entry.name.cString)
            if made != 0 && errno == EEXIST && replace {
                try removeForReplacing(directory, entry.name, display: display)
                made = symlinkat(link.cString, directory, entry.name.cString)
            }
            guard made == 0 else { throw failure(display, errno == EEXIST ? "exists already" : "create the symlink", errno) }
            try ownerAndTimes(st, directory, entry.name, display: display)
        case S_IFIFO:
            var made = mkfifoat(directory, entry.name.cString, 0o600)
            if made != 0 && errno == EEXIST && replace {
                try removeForReplacing(directory, entry.name, display: display)
                made = mkfifoat(directory, entry.name.cString, 0o600)
            }
            guard made == 0 else { throw failure(display, errno == EEXIST ? "exists already" : "create the FIFO", errno) }
            try ownerAndTimes(st, directory, entry.name, display: display)
            guard fchmodat(directory, entry.name.cString, mode(st), AT_SYMLINK_NOFOLLOW) == 0 else {
                throw failure(display, "set its mode", errno)
            }
        default:
            warn("\(display): a \(TreeListing.typeName(st.st_mode & S_IFMT)); not copied")
        }
    }

    /// The owner and times of `st` on `name` in `directory`, not following it.
    func ownerAndTimes(_ st: stat, _ directory: Int32, _ name: [UInt8], display: String) throws(MountError) {
        guard fchownat(directory, name.cString, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw failure(display, "set its owner", errno)
        }
        var times = [st.st_atim, st.st_mtim]
        guard utimensat(directory, name.cString, &times, AT_SYMLINK_NOFOLLOW) == 0 else { throw failure(display, "set its times", errno) }
    }
}
