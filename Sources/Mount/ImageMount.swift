#if canImport(Glibc)
import Glibc
#endif
import Attach
import Dissect
import Logging

/// Dissect → attach → mount, in one call, leaving nothing behind when a step fails.
public enum ImageMount {
    /// Attaches the partitions `plan` needs and mounts the tree on `dir`. On success the loop
    /// devices are held by the mounts alone (they go when the tree is unmounted); the returned
    /// `AttachedImage` still holds the image's lock and knows the devices, to wait for them
    /// after unmounting. On failure nothing stays mounted or attached.
    public static func mount(
        _ image: DissectedImage, plan: MountPlan, at dir: String, logger: Logger
    ) throws -> (tree: MountedTree, attached: AttachedImage) {
        let attached = try AttachedImage.attach(
            image, partitions: plan.attachments.map { (number: $0.number, readOnly: $0.readOnly) }, logger: logger)
        let devices = Dictionary(attached.devices.map { ($0.partition, $0.device.path) }, uniquingKeysWith: { a, _ in a })
        let tree: MountedTree
        do {
            tree = try MountedTree.apply(plan, image: image, devices: devices, at: dir, logger: logger)
        } catch {
            attached.close()
            _ = attached.waitUntilDetached()
            attached.unlock()
            throw error
        }
        // The mounts hold the devices now; autoclear ends them with the last mount.
        attached.close()
        return (tree, attached)
    }
}

/// What `imgboot mount` leaves in /run/imgboot/mounts for `imgboot umount`: the loop devices
/// of a tree, which the mount table no longer shows once overlays and binds have detached
/// their staging mounts.
public struct MountRecord: Equatable {
    public var directory: String
    public var image: String
    public var devices: [LoopIdentity]
    /// The image file's device and inode, to recognise it under any name.
    public var imageFile: FileIdentity?
    /// Whether any partition is mounted writable.
    public var writable: Bool

    public static let directoryPath = "/run/imgboot/mounts"

    public init(directory: String, image: String, devices: [LoopIdentity], writable: Bool) {
        self.directory = directory
        self.image = image
        self.devices = devices
        self.imageFile = FileIdentity(path: image)
        self.writable = writable
    }

    /// A mounted tree of the same image that a new use would conflict with — a writer next to
    /// anyone, as the image lock of `run`/`boot` has it — or nil. `imgboot mount` exits and its
    /// lock with it, so its trees are found by their records; records of trees no longer
    /// mounted are removed on the way.
    public static func conflict(image: String, writable: Bool) -> MountRecord? {
        guard let identity = FileIdentity(path: image), let dir = opendir(directoryPath) else { return nil }
        defer { closedir(dir) }
        let table = MountTable.current()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            let path = directoryPath + "/" + name
            guard let record = readTextFile(path).flatMap({ MountRecord(text: $0) }) else { continue }
            guard !table.mounts(atOrBelow: record.directory).isEmpty else {
                unlink(path)  // taken down by other means (umount(8), a reboot of /run is not needed)
                continue
            }
            if record.imageFile == identity && (writable || record.writable) { return record }
        }
        return nil
    }

    /// The record's file for a mount directory (its canonical path, hashed).
    static func file(for directory: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in directory.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return directoryPath + "/" + String(hash, radix: 16)
    }

    /// Text form: the directory, the image, `image-file DEV INO rw|ro`, then
    /// `N DISKSEQ OFFSET BACKING` per device.
    var text: String {
        var lines = [directory, image,
                     "image-file \(imageFile?.device ?? 0) \(imageFile?.inode ?? 0) \(writable ? "rw" : "ro")"]
        for d in devices {
            lines.append("\(d.number) \(d.diskSequence.map(String.init) ?? "-") \(d.offset) \(d.backingFile ?? "")")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    init?(text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 2 else { return nil }
        directory = lines[0]
        image = lines[1]
        imageFile = nil
        writable = false
        if lines.count > 2, lines[2].hasPrefix("image-file ") {
            let f = lines[2].split(separator: " ").map(String.init)
            if f.count == 4, let dev = UInt64(f[1]), let ino = UInt64(f[2]) {
                imageFile = FileIdentity(device: dev, inode: ino)
                writable = f[3] == "rw"
            }
        }
        devices = lines.dropFirst(2).filter { !$0.hasPrefix("image-file ") }.compactMap { line in
            let f = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            guard f.count == 4, let n = Int(f[0]), let offset = UInt64(f[2]) else { return nil }
            return LoopIdentity(number: n, diskSequence: UInt64(f[1]), backingFile: f[3].isEmpty ? nil : f[3], offset: offset)
        }
    }

    public func save() {
        _ = mkdir("/run/imgboot", 0o755)
        _ = mkdir(MountRecord.directoryPath, 0o755)
        let path = MountRecord.file(for: directory)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    public static func load(directory: String) -> MountRecord? {
        readTextFile(file(for: directory)).flatMap { MountRecord(text: $0) }.flatMap { $0.directory == directory ? $0 : nil }
    }

    public static func remove(directory: String) {
        unlink(file(for: directory))
    }
}

/// Taking a mounted tree down: `imgboot umount`.
public enum ImageUnmount {
    /// Unmounts everything at and below `dir`, most recent first, then waits (bounded) for the tree's
    /// loop devices to detach. A busy mount point stops it with an error naming it.
    public static func unmount(_ dir: String, logger: Logger) throws(MountError) {
        let mounts = MountTable.current().mounts(atOrBelow: dir)
        guard !mounts.isEmpty else { throw MountError(image: dir, .other("nothing is mounted there")) }
        let record = MountRecord.load(directory: dir)
        for m in mounts {
            logger.debug("umount \(m.mountPoint)")
            guard umount2(m.mountPoint, Int32(UMOUNT_NOFOLLOW)) == 0 || errno == EINVAL || errno == ENOENT else {
                let e = errno
                if e == EBUSY {
                    throw MountError(image: m.mountPoint, .other("target is busy (a process has a file open or its working directory there)"))
                }
                throw MountError(image: m.mountPoint, .failed(operation: "umount", errno: e))
            }
        }
        if let record {
            if !LoopIdentity.waitUntilDetached(record.devices) {
                logger.warning("\(dir): the loop devices of \(record.image) are still attached after 2 s")
            }
            MountRecord.remove(directory: dir)
        }
    }
}

/// A file by device and inode.
public struct FileIdentity: Equatable, Sendable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}
