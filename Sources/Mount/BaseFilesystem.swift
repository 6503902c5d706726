#if canImport(Glibc)
import Glibc
#endif
import Dissect

/// The skeleton an OS expects at the top of its root, created on the fresh tmpfs root of
/// `--volatile=yes` (only /usr comes from the image).
enum BaseFilesystem {
    static let directories: [(String, mode_t)] = [
        ("etc", 0o755), ("var", 0o755), ("var/tmp", 0o1777), ("tmp", 0o1777), ("run", 0o755),
        ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("home", 0o755), ("srv", 0o755),
        ("root", 0o700), ("mnt", 0o755), ("usr", 0o755),
    ]

    /// Symlinks into /usr, made only where /usr has the target.
    static let usrLinks: [(String, String)] = [
        ("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
    ]

    /// Creates the skeleton in the directory `root` (a descriptor of the tmpfs root), owned by
    /// `owner` (host UID and GID of the container's root, with a user namespace) or root.
    static func create(in root: Int32, image: String, owner: (uid: UInt32, gid: UInt32)? = nil) throws(MountError) {
        for (path, mode) in directories {
            if mkdirat(root, path, mode) != 0 {
                // Already there: /usr, with the image mounted on it.
                if errno == EEXIST { continue }
                throw MountError(image: image, .failed(operation: "create /\(path) on the tmpfs root", errno: errno))
            }
            // mkdir's mode went through the umask; set it as meant (1777 for tmp).
            guard fchmodat(root, path, mode, 0) == 0 else {
                throw MountError(image: image, .failed(operation: "set the mode of /\(path)", errno: errno))
            }
            if let owner, fchownat(root, path, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) != 0 {
                throw MountError(image: image, .failed(operation: "set the owner of /\(path)", errno: errno))
            }
        }
        for (link, target) in usrLinks {
            var st = stat()
            guard fstatat(root, target, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if symlinkat(target, root, link) != 0 && errno != EEXIST {
                throw MountError(image: image, .failed(operation: "create /\(link) -> \(target)", errno: errno))
            }
            if let owner { _ = fchownat(root, link, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) }
        }
    }
}

/// Small directory helpers.
public enum Directory {
    /// Removes `path` and the empty directories below it, depth first. Stops at anything that is
    /// not an empty directory (which then stays, as does its parent): never removes a file, and
    /// never descends into a mount (rmdir of a mount point fails with EBUSY). Also takes down a
    /// cgroup and the child cgroups an init made in it, which are directories of this kind.
    /// Returns whether `path` is gone.
    @discardableResult
    public static func removeEmptyTree(_ path: String) -> Bool {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                if entry.pointee.d_type == UInt8(DT_DIR) { removeEmptyTree(path + "/" + name) }
            }
            closedir(dir)
        }
        return rmdir(path) == 0 || errno == ENOENT
    }

    /// Removes the directory `path` and everything in it, for a directory only imgboot writes
    /// (an overlay's work directory, root's alone): never following a symlink, never leaving
    /// its filesystem. Returns whether `path` is gone (errno says why not).
    @discardableResult
    public static func removeTree(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            return false
        }
        emptyDirectory(fd, device: st.st_dev)  // closes fd
        return rmdir(path) == 0 || errno == ENOENT
    }

    /// Removes what the directory `fd` holds on `device`, depth first; closes `fd`.
    private static func emptyDirectory(_ fd: Int32, device: dev_t) {
        guard let dir = fdopendir(fd) else {
            close(fd)
            return
        }
        defer { closedir(dir) }
        var names: [(String, Bool)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append((name, entry.pointee.d_type == UInt8(DT_DIR))) }
        }
        for (name, isDirectory) in names {
            if isDirectory {
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                var st = stat()
                guard child >= 0 else { continue }
                guard fstat(child, &st) == 0, st.st_dev == device else {
                    close(child)
                    continue
                }
                emptyDirectory(child, device: device)
                _ = unlinkat(fd, name, AT_REMOVEDIR)
            } else {
                _ = unlinkat(fd, name, 0)
            }
        }
    }
}
