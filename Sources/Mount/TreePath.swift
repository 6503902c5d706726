#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Support

/// A directory inside the image's tree, opened by resolving its path *inside* the tree
/// (`openat2` with RESOLVE_IN_ROOT): a symlink in the image (`/home -> /etc`,
/// `/srv -> ../../../tmp`) resolves within the tree and can never lead outside it. Mounts go
/// through `/proc/self/fd/N` of the descriptor, so nothing is looked up again by name.
public struct TreePath: ~Copyable {
    public let fd: Int32
    /// The path inside the tree, for messages.
    public let path: String

    /// Opens `path` (absolute within the tree) below the tree's root directory `root`.
    /// A symlink at the end is followed (inside the tree) unless `followFinal` is false, in
    /// which case it is refused with ELOOP: API filesystems (/proc, /dev, …) only go on real
    /// directories. `kind` is the file type required (S_IFDIR by default; nil for any).
    public init(root: Int32, path: String, followFinal: Bool = true, kind: mode_t? = S_IFDIR) throws(ResolveError) {
        let relative = path.drop { $0 == "/" }
        let flags = IMGBOOT_O_PATH | O_CLOEXEC | (followFinal ? 0 : O_NOFOLLOW)
        let fd = imgboot_openat2(root, relative.isEmpty ? "." : String(relative), UInt64(flags), 0,
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { throw ResolveError(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw ResolveError(path: path, errno: e)
        }
        if let kind, st.st_mode & S_IFMT != kind {
            close(fd)
            throw ResolveError(path: path, errno: st.st_mode & S_IFMT == S_IFLNK ? ELOOP : (kind == S_IFDIR ? ENOTDIR : EINVAL))
        }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The name the kernel resolves to this very file.
    public var procPath: String { "/proc/self/fd/\(fd)" }

    /// Whether the file lies on a read-only mount.
    public var isOnReadOnlyMount: Bool {
        var s = statvfs()
        return fstatvfs(fd, &s) == 0 && (s.f_flag & UInt(ST_RDONLY)) != 0
    }
}

/// A path that could not be resolved inside a tree: which, and the errno (ELOOP for a symlink
/// where none may be, ENOTDIR or EINVAL for the wrong kind of file). Callers say what the
/// path was for (`MountedTree.describe`); as it stands, the path and the errno's text.
public struct ResolveError: IMGBootError {
    public let path: String
    public let code: Int32

    init(path: String, errno: Int32) {
        self.path = path
        self.code = errno
    }

    public var subject: String? { path }
    public var errno: Int32? { code }
    public var detail: String { errnoString(code) }
}

/// Creating files in a tree that belongs to a user namespace's root: with the filesystem UID
/// and GID of `owner` (host IDs), new inodes are theirs — and on an idmapped mount, where host
/// root's own IDs are not mapped and creating as root fails with EOVERFLOW, they can be made
/// at all. (setfsuid drops the filesystem capabilities while it is not 0: permissions are
/// checked as that user, which owns the tree. Per thread; imgboot sets up on one.)
public func creatingAs<T>(_ owner: (uid: UInt32, gid: UInt32)?, _ body: () -> T) -> T {
    guard let owner else { return body() }
    let gid = imgboot_setfsgid(owner.gid), uid = imgboot_setfsuid(owner.uid)
    defer {
        // Back to what it was (0); these calls cannot fail for root.
        _ = imgboot_setfsuid(UInt32(bitPattern: uid))
        _ = imgboot_setfsgid(UInt32(bitPattern: gid))
    }
    return body()
}
