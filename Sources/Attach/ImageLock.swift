#if canImport(Glibc)
import Glibc
#endif

/// A BSD lock (flock) on an image file, as systemd-nspawn takes one: shared while the image is
/// used read-only, exclusive while it may be written. Any number of read-only users may share
/// an image; a writer excludes everyone else. Never waits: a conflict is an error at once
/// (`basic.raw: image is busy: another imgboot uses it writably`).
///
/// The lock lives on a descriptor of its own, so it ends exactly when this object is released
/// or deinitialised — not when some loop device lets go of the file. flock locks belong to an
/// open file description, so two locks in one process conflict just as in two processes.
public final class ImageLock {
    /// The image's path, as the user gave it.
    public let path: String
    public let exclusive: Bool
    private var fd: Int32

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
        self.fd = fd
        self.path = path
        self.exclusive = exclusive
    }

    deinit { release() }

    /// Unlocks the image. Idempotent.
    public func release() {
        guard fd >= 0 else { return }
        // Closing the only descriptor of the open file description drops the lock.
        close(fd)
        fd = -1
    }
}
