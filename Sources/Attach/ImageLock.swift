#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Support

/// An image's locks: imgboot's own, and systemd-nspawn's. Shared while the image is used
/// read-only, exclusive while it may be written: any number of read-only users may share an
/// image; a writer excludes everyone else. Never waits: a conflict is an error at once
/// (`basic.raw: image is busy: another imgboot uses it writably`).
///
/// - imgboot's own: a BSD lock (flock) on the image file itself, on a descriptor of its own, so
///   it ends exactly when this object is released — not when some loop device lets go of the
///   file. flock locks belong to an open file description, so two locks in one process
///   conflict just as in two processes.
/// - systemd-nspawn's (`NspawnLockFile`): `.#NAME.lck` beside the image and
///   `/run/systemd/nspawn/locks/inode-DEV:INO`, so that nspawn refuses an image imgboot uses
///   and imgboot one nspawn uses.
public final class ImageLock {
    /// The image's path, as the user gave it.
    public let path: String
    public let exclusive: Bool
    private var fd: Int32
    private var nspawn: [NspawnLockFile]

    /// Opens `path` read-only and locks it.
    public convenience init(path: String, exclusive: Bool) throws(AttachError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw AttachError(image: path, .openImage(writable: false), errno: errno) }
        try self.init(ownedFD: fd, path: path, exclusive: exclusive)
    }

    /// Locks the very file open at `fd` (reopened through /proc/self/fd, so that a file renamed
    /// over `path` meanwhile cannot be locked instead). `fd` itself stays the caller's.
    convenience init(file fd: Int32, path: String, exclusive: Bool) throws(AttachError) {
        let own = open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard own >= 0 else { throw AttachError(image: path, .openImage(writable: false), errno: errno) }
        try self.init(ownedFD: own, path: path, exclusive: exclusive)
    }

    private init(ownedFD fd: Int32, path: String, exclusive: Bool) throws(AttachError) {
        while flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            close(fd)
            throw AttachError(image: path, .lock(exclusive: exclusive), errno: e)
        }
        do {
            nspawn = try NspawnLockFile.lock(imageFD: fd, image: path, exclusive: exclusive)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.path = path
        self.exclusive = exclusive
    }

    deinit { release() }

    /// Unlocks the image. Idempotent.
    public func release() {
        for file in nspawn { file.release() }
        nspawn = []
        guard fd >= 0 else { return }
        // Closing the only descriptor of the open file description drops the lock.
        close(fd)
        fd = -1
    }

    /// The descriptors that hold the locks, for a process that keeps them after this one
    /// exits (`LockKeeper`): it must inherit them before `relinquish()` closes this object's.
    var heldLocks: HeldLocks {
        HeldLocks(image: fd, nspawn: nspawn.map { (fd: $0.fd, path: $0.path) }, exclusive: exclusive)
    }

    /// Closes the descriptors without unlocking: for when another process holds the same open
    /// file descriptions (and with them the locks), and will release them (`LockKeeper`).
    func relinquish() {
        for file in nspawn { file.relinquish() }
        nspawn = []
        if fd >= 0 { close(fd) }
        fd = -1
    }
}

/// What holds an image's locks, by descriptor: to hand them on to another process.
struct HeldLocks {
    /// imgboot's flock on the image.
    var image: Int32
    /// nspawn's lock files.
    var nspawn: [(fd: Int32, path: String)]
    var exclusive: Bool
}

/// One of systemd-nspawn's image lock files, locked as nspawn locks it (systemd 252,
/// `image_path_lock` and `make_lock_file`, checked with strace): the file opened with
/// O_CREAT|O_RDWR|O_NOFOLLOW (mode 0600) and locked whole with an open file description lock
/// (fcntl F_OFD_SETLK), F_RDLCK for read-only use (`--read-only`, any `--volatile` mode), F_WRLCK
/// otherwise. A flock would never conflict with nspawn's locks, nor theirs with it.
///
/// When released, the lock file is removed by whoever can take it exclusively — the last user —
/// as nspawn does. A lock taken on a file someone removed meanwhile protects nothing, so a file
/// found unlinked after locking is opened anew (nspawn does the same).
final class NspawnLockFile {
    let path: String
    private(set) var fd: Int32
    private var exclusive: Bool

    /// Where nspawn keeps the locks named by device and inode.
    static let directory = "/run/systemd/nspawn/locks"

    private init(fd: Int32, path: String, exclusive: Bool) {
        self.fd = fd
        self.path = path
        self.exclusive = exclusive
    }

    deinit { release() }

    /// nspawn's locks for the image open at `imageFD`: `.#NAME.lck` beside it (found through
    /// /proc/self/fd, with every symlink resolved, as nspawn resolves the path it is given) —
    /// but not for a path under /dev/ — and `/run/systemd/nspawn/locks/inode-DEV:INO`
    /// (`block-MAJOR:MINOR` for a block device). Where the image's directory is on a read-only
    /// file system, a shared use goes without the local lock file (as in nspawn: nothing can
    /// create one there, so no one else holds one either); an exclusive use is refused.
    static func lock(imageFD: Int32, image: String, exclusive: Bool) throws(AttachError) -> [NspawnLockFile] {
        var st = stat()
        guard fstat(imageFD, &st) == 0 else { throw AttachError(image: image, .statImage, errno: errno) }
        var files: [NspawnLockFile] = []
        if let canonical = canonicalPath(of: imageFD), !canonical.hasPrefix("/dev/"), st.st_nlink > 0 {
            let local = pathBeside(canonical) { ".#\($0).lck" }
            do {
                files.append(try NspawnLockFile(path: local, exclusive: exclusive, image: image))
            } catch let error where !exclusive && error.errno == EROFS {
                // nspawn, too, goes on without it for a shared lock.
            }
        }
        let global: String
        if st.st_mode & S_IFMT == S_IFBLK {
            global = directory + "/block-\(imgboot_major(UInt64(st.st_rdev))):\(imgboot_minor(UInt64(st.st_rdev)))"
        } else {
            global = directory + "/inode-\(UInt64(st.st_dev)):\(UInt64(st.st_ino))"
        }
        try makeDirectory(image: image)
        files.append(try NspawnLockFile(path: global, exclusive: exclusive, image: image))
        return files
    }

    /// Opens (creating) and locks `path`.
    private convenience init(path: String, exclusive: Bool, image: String) throws(AttachError) {
        // A file unlinked by its last user between our open and our lock is opened anew; a
        // bounded number of times, so that a hostile loop of unlinks cannot hang imgboot.
        for _ in 0..<100 {
            let fd = open(path, O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0o600)
            guard fd >= 0 else { throw AttachError(image: image, .nspawnLock(path, exclusive: exclusive), errno: errno) }
            guard imgboot_ofd_lock(fd, exclusive ? 2 : 1) == 0 else {
                let e = errno
                close(fd)
                throw AttachError(image: image, .nspawnLock(path, exclusive: exclusive), errno: e)
            }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let e = errno
                close(fd)
                throw AttachError(image: image, .nspawnLock(path, exclusive: exclusive), errno: e)
            }
            if st.st_nlink > 0 {
                self.init(fd: fd, path: path, exclusive: exclusive)
                return
            }
            close(fd)
        }
        throw AttachError(image: image, .nspawnLock(path, exclusive: exclusive), errno: EAGAIN)
    }

    /// Creates /run/systemd/nspawn/locks as nspawn does (the lock directory 0700), if missing.
    private static func makeDirectory(image: String) throws(AttachError) {
        for (path, mode) in [("/run/systemd", 0o755), ("/run/systemd/nspawn", 0o755), (directory, 0o700)] {
            if mkdir(path, mode_t(mode)) != 0 && errno != EEXIST {
                throw AttachError(image: image, .nspawnLock(directory, exclusive: false), errno: errno)
            }
        }
    }

    /// The path of what `fd` has open, every symlink resolved; nil when /proc cannot say.
    private static func canonicalPath(of fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard n > 0, buffer[0] == CChar(UInt8(ascii: "/")) else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Unlocks. The last user (the one that can now lock it exclusively) removes the file.
    /// Idempotent.
    func release() {
        guard fd >= 0 else { return }
        if !exclusive && imgboot_ofd_lock(fd, 2) == 0 { exclusive = true }
        if exclusive { unlink(path) }
        close(fd)
        fd = -1
    }

    /// Closes the descriptor, neither unlocking nor removing the file: another process holds
    /// the same open file description, and the lock with it.
    func relinquish() {
        if fd >= 0 { close(fd) }
        fd = -1
    }
}
