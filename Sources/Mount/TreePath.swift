#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// A directory inside the image's tree, opened by resolving its path *inside* the tree
/// (`openat2` with RESOLVE_IN_ROOT): a symlink in the image (`/home -> /etc`,
/// `/srv -> ../../../tmp`) resolves within the tree and can never lead outside it. Mounts go
/// through `/proc/self/fd/N` of the descriptor, so nothing is looked up again by name.
struct TreePath: ~Copyable {
    let fd: Int32
    /// The path inside the tree, for messages.
    let path: String

    /// Opens `path` (absolute within the tree) below the tree's root directory `root`.
    init(root: Int32, path: String) throws(ResolveError) {
        let relative = path.drop { $0 == "/" }
        let fd = imgboot_openat2(root, relative.isEmpty ? "." : String(relative),
                                 UInt64(IMGBOOT_O_PATH | O_CLOEXEC), 0,
                                 UInt64(IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS))
        guard fd >= 0 else { throw ResolveError(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw ResolveError(path: path, errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            close(fd)
            throw ResolveError(path: path, errno: ENOTDIR)
        }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The name the kernel resolves to this very directory.
    var procPath: String { "/proc/self/fd/\(fd)" }

    /// Whether the directory lies on a read-only mount.
    var isOnReadOnlyMount: Bool {
        var s = statvfs()
        return fstatvfs(fd, &s) == 0 && (s.f_flag & UInt(ST_RDONLY)) != 0
    }
}

struct ResolveError: Error {
    let path: String
    let errno: Int32
}
