#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// An image opened read-only for dissection. Owns its descriptor.
struct ImageFile: ~Copyable {
    let path: String
    let fd: Int32
    let size: UInt64
    /// The logical sector size of a block device; nil for a regular file.
    let deviceSectorSize: Int?

    /// Opens `path` read-only without following it into a FIFO's or a terminal's arms: O_NONBLOCK
    /// so that opening a FIFO cannot hang, and only regular files and block devices are taken.
    init(path: String) throws(DissectError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw DissectError(image: path, .open(errno: errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw DissectError(image: path, .open(errno: e))
        }
        var size: UInt64 = 0
        var sectorSize: Int? = nil
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            size = UInt64(st.st_size)
        case S_IFBLK:
            var bytes: UInt64 = 0
            var sector: UInt32 = 0
            guard imgboot_block_device_size(fd, &bytes) == 0,
                  imgboot_block_device_sector_size(fd, &sector) == 0
            else {
                let e = errno
                close(fd)
                throw DissectError(image: path, .open(errno: e))
            }
            size = bytes
            sectorSize = Int(sector)
        case S_IFDIR:
            close(fd)
            throw DissectError(image: path, .isDirectory)
        default:
            close(fd)
            throw DissectError(image: path, .notFileOrBlockDevice)
        }
        self.path = path
        self.fd = fd
        self.size = size
        self.deviceSectorSize = sectorSize
    }

    deinit { close(fd) }

    /// Reads exactly `count` bytes at `offset`, or fewer when the image ends first.
    func read(at offset: UInt64, count: Int) throws(DissectError) -> [UInt8] {
        guard offset < size else { return [] }
        let wanted = Int(min(UInt64(count), size - offset))
        var buffer = [UInt8](repeating: 0, count: wanted)
        var done = 0
        while done < wanted {
            let n = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return pread(fd, base + done, wanted - done, off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw DissectError(image: path, .read(offset: offset, errno: errno))
            }
            if n == 0 { break }
            done += n
        }
        if done < wanted { buffer.removeLast(wanted - done) }
        return buffer
    }
}
