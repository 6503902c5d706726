#if canImport(Glibc)
import Glibc
#endif
import Attach
import CLinux
import Dissect
import Logging
import Support

/// Dissect → attach → mount, in one call, leaving nothing behind when a step fails.
public enum ImageMount {
    /// `imgboot mount`: mounts the tree on `dir` for good — refused when `dir` is not free or
    /// another imgboot mount uses the image in a conflicting way; the image's locks handed to
    /// a keeper process that outlives this one; a record for `imgboot umount`. Mounts made
    /// under one lock (`StateStore.mountLock`), so two `imgboot mount`s cannot cross. On
    /// failure, or a stop signal (`stop.checkpoint`) before the record is saved, nothing is
    /// left.
    public static func mountRecorded(
        _ image: DissectedImage, plan: MountPlan, at dir: String, stop: StopSignals, logger: Logger
    ) throws -> MountedTree {
        let writable = plan.attachments.contains { !$0.readOnly }
        try StateStore.prepare([.trees], subject: image.image)
        let serial = try StateStore.lock(StateStore.mountLock, subject: image.image, stop: stop)
        defer { close(serial) }
        try MountTarget.requireFree(dir)
        if let other = try MountRecord.conflict(image: image.image, writable: writable, subject: image.image, stop: stop) {
            throw MountError(image: image.image, .busy("mounted\(other.writable ? " writable" : "") on \(other.directory)"))
        }
        let (tree, attached) = try mount(image, plan: plan, at: dir, logger: logger)
        var keeper: ProcessIdentity?
        do {
            // The image stays locked (for nspawn too) while the tree is mounted: by a process
            // that outlives this one.
            keeper = ProcessIdentity(pid: try attached.keepLocked())
            // Without its record, `imgboot umount` would refuse the tree: no record, no tree.
            try MountRecord.make(directory: dir, image: image.image, devices: attached.devices.map(\.device.identity),
                                 writable: writable, keeper: keeper).save(stop: stop)
            try stop.checkpoint(image.image)
        } catch {
            // The keeper goes after the tree, whether or not taking the tree down works.
            defer { if let keeper { _ = LockKeeperProcess.end(keeper) } }
            try ImageUnmount.unmount(dir, requireRecord: false, logger: logger)
            throw error
        }
        return tree
    }

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
            attached.finish(logger: logger)
            throw error
        }
        // The mounts hold the devices now; autoclear ends them with the last mount.
        attached.close()
        return (tree, attached)
    }
}

/// Where `imgboot mount` may put a tree.
public enum MountTarget {
    /// Refuses `dir` (canonical, absolute, not "/") when something is mounted on it — a second
    /// tree would be stacked on the first, which `imgboot umount` could then never take down
    /// whole — or below it, which the tree would hide (still mounted, out of reach). One line
    /// naming the directory and what is mounted there.
    public static func requireFree(_ dir: String) throws(MountError) {
        let table = MountTable.current()
        let mounts = table.mounts(atOrBelow: dir)
        if let there = mounts.first(where: { $0.mountPoint == dir }) {
            let (parent, name) = try openParent(of: dir)
            defer { close(parent) }
            if let record = MountRecord.load(directory: dir), let top = try MountIdentity.mounted(on: name, in: parent, path: dir, table: table),
               record.top.isSame(as: top) {
                throw MountError(image: dir, .other("already a mount point: imgboot mount mounted \(record.image) there (imgboot umount \(dir) first)"))
            }
            throw MountError(image: dir, .other("already a mount point (\(there.fsType) from \(there.source)): imgboot mounts a tree only where nothing is mounted"))
        }
        if let below = mounts.last {
            throw MountError(image: dir, .other("\(below.mountPoint) is a mount point below it, which a tree mounted there would hide"))
        }
    }
}

/// What `imgboot mount` leaves in the state store (`/run/imgboot/trees/HASH`, see `StateStore`)
/// for `imgboot umount` and for the image conflicts of `run`/`boot`: the mount it made on the
/// directory (the top of the tree), and the tree's loop devices, which the mount table no
/// longer shows once overlays and binds have detached their staging mounts.
public struct MountRecord: Equatable, Sendable {
    public var directory: String
    public var image: String
    /// The image file's device and inode, to recognise it under any name.
    public var imageFile: FileIdentity?
    /// Whether any partition is mounted writable.
    public var writable: Bool
    /// The mount imgboot made on `directory`: `imgboot umount` takes down only a tree whose top
    /// is still this very mount.
    public var top: MountIdentity
    public var devices: [LoopIdentity]
    /// The mount namespace the tree is in (the nsfs inode of /proc/self/ns/mnt): only there do
    /// its mount IDs mean anything, and only there can it be told whether it is still mounted.
    public var namespace: FileIdentity?
    /// `imgboot keep-locks`, which holds the image's locks while the tree is mounted
    /// (`LockKeeper`); `imgboot umount` ends it once the devices are gone. Nil in a record of
    /// an imgboot that kept no locks after mounting.
    public var keeper: ProcessIdentity?

    public init(directory: String, image: String, imageFile: FileIdentity?, writable: Bool, top: MountIdentity, devices: [LoopIdentity],
                namespace: FileIdentity?, keeper: ProcessIdentity? = nil) {
        self.directory = directory
        self.image = image
        self.imageFile = imageFile
        self.writable = writable
        self.top = top
        self.devices = devices
        self.namespace = namespace
        self.keeper = keeper
    }

    /// The calling process's mount namespace.
    static func currentNamespace() -> FileIdentity? { FileIdentity(path: "/proc/self/ns/mnt") }

    /// The record's JSON (format version 1).
    public var json: JSON {
        .object([
            ("version", .int(1)),
            ("directory", .string(directory)),
            ("image", .string(image)),
            ("imageFile", imageFile.map(\.json) ?? .null),
            ("writable", .bool(writable)),
            ("top", top.json),
            ("devices", .array(devices.map { d in
                .object([
                    ("number", .int(Int64(d.number))),
                    ("diskSequence", d.diskSequence.map { .int(Int64(bitPattern: $0)) } ?? .null),
                    ("offset", .int(Int64(bitPattern: d.offset))),
                    ("backingFile", .string(d.backingFile)),
                ])
            })),
            ("mountNamespace", namespace.map(\.json) ?? .null),
            ("lockKeeper", keeper.map { .object([("pid", .int(Int64($0.pid))), ("startTime", .int(Int64(clamping: $0.startTime)))]) } ?? .null),
        ])
    }

    public init?(json: JSON) {
        guard json["version"]?.intValue == 1,
              let directory = json["directory"]?.stringValue, let image = json["image"]?.stringValue,
              let writable = json["writable"]?.boolValue,
              let top = json["top"].flatMap(MountIdentity.init(json:)),
              case .array(let devices)? = json["devices"], let imageFile = json["imageFile"],
              let namespace = json["mountNamespace"]
        else { return nil }
        var identities: [LoopIdentity] = []
        for d in devices {
            guard let number = d["number"]?.intValue.flatMap({ Int(exactly: $0) }), let offset = d["offset"]?.intValue,
                  let sequence = d["diskSequence"], sequence.isNull || sequence.intValue != nil,
                  let backing = d["backingFile"], backing.isNull || backing.stringValue != nil
            else { return nil }
            identities.append(LoopIdentity(number: number, diskSequence: sequence.intValue.map { UInt64(bitPattern: $0) },
                                           backingFile: backing.stringValue, offset: UInt64(bitPattern: offset)))
        }
        var file: FileIdentity?, space: FileIdentity?
        if !imageFile.isNull {
            guard let identity = FileIdentity(json: imageFile) else { return nil }
            file = identity
        }
        if !namespace.isNull {
            guard let identity = FileIdentity(json: namespace) else { return nil }
            space = identity
        }
        // Absent in the records of an imgboot before the lock keeper: no keeper.
        var keeper: ProcessIdentity?
        if let entry = json["lockKeeper"], !entry.isNull {
            guard let pid = entry["pid"]?.intValue.flatMap({ pid_t(exactly: $0) }), pid > 0,
                  let start = entry["startTime"]?.intValue, start >= 0 else { return nil }
            keeper = ProcessIdentity(pid: pid, startTime: UInt64(start))
        }
        self.init(directory: directory, image: image, imageFile: file, writable: writable, top: top, devices: identities,
                  namespace: space, keeper: keeper)
    }

    /// The record of the tree just mounted on `directory`, with its top mount as the system
    /// shows it now.
    public static func make(directory: String, image: String, devices: [LoopIdentity], writable: Bool,
                            keeper: ProcessIdentity? = nil) throws(MountError) -> MountRecord {
        let (parent, name) = try openParent(of: directory)
        defer { close(parent) }
        guard let top = try MountIdentity.mounted(on: name, in: parent, path: directory, table: MountTable.current()) else {
            throw MountError(image: directory, .other("nothing is mounted there after mounting"))
        }
        return MountRecord(directory: directory, image: image, imageFile: FileIdentity(path: image), writable: writable,
                           top: top, devices: devices, namespace: currentNamespace(), keeper: keeper)
    }

    /// A mounted tree of the same image that a new use would conflict with — a writer next to
    /// anyone, as the image lock of `run`/`boot` has it — or nil. `imgboot mount` exits and its
    /// lock with it, so its trees are found by their records; records of trees no longer
    /// mounted (taken down by umount(8)) are removed on the way. Whether a tree is still mounted
    /// can only be told in its own mount namespace (its mount IDs are that namespace's): a tree
    /// of another namespace (a private namespace's `imgboot mount`, seen from the host, or the
    /// host's, seen from a `run` started in a private one) counts as mounted while that
    /// namespace lives, and its record goes only once no process is left in it.
    public static func conflict(image: String, writable: Bool, subject: String, stop: StopSignals?) throws -> MountRecord? {
        guard let identity = FileIdentity(path: image) else { return nil }
        try StateStore.prepare([.trees], subject: subject)
        return try StateStore.withLock(StateStore.treesLock, subject: subject, stop: stop) { () -> MountRecord? in
            StateStore.removeAbandonedTemporaries(in: StateStore.trees)
            let namespace = currentNamespace()
            // The mount table is read once, and only when a record is there to check against it
            // (most runs find none).
            var table: MountTable?
            var found: MountRecord?
            for name in StateStore.names(in: StateStore.trees) {
                let path = StateStore.trees + "/" + name
                // A file that is no record of this format (an older imgboot's) is left alone.
                guard let record = StateStore.read(path).flatMap(MountRecord.init(json:)) else { continue }
                let mounted: Bool
                if record.namespace == namespace {
                    let current = table ?? MountTable.current()
                    table = current
                    mounted = record.isMounted(in: current)
                } else {
                    mounted = record.namespace.map(namespaceIsInUse) ?? true
                }
                guard mounted else {
                    unlink(path)
                    continue
                }
                if found == nil && record.imageFile == identity && (writable || record.writable) { found = record }
            }
            return found
        }
    }

    /// Whether some process is in the mount namespace `namespace`.
    static func namespaceIsInUse(_ namespace: FileIdentity) -> Bool {
        guard let proc = opendir("/proc") else { return true }
        defer { closedir(proc) }
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true else { continue }
            if FileIdentity(path: "/proc/\(name)/ns/mnt") == namespace { return true }
        }
        return false
    }

    /// Whether the tree is still mounted: its top mount is in `table`, on the directory.
    func isMounted(in table: MountTable) -> Bool {
        table.entries.contains { top.matches($0) && $0.mountPoint == directory }
    }

    /// The record's file for a mount directory (its canonical path, hashed).
    static func file(for directory: String) -> String {
        StateStore.trees + "/" + String(FNV1a.hash(directory), radix: 16)
    }

    /// Writes the record into the store.
    public func save(stop: StopSignals?) throws {
        try StateStore.prepare([.trees], subject: directory)
        _ = try StateStore.withLock(StateStore.treesLock, subject: directory, stop: stop) {
            try StateStore.write(json, to: MountRecord.file(for: directory), subject: directory)
        }
    }

    /// The record of the tree on `directory`, if there is one.
    public static func load(directory: String) -> MountRecord? {
        StateStore.read(file(for: directory)).flatMap(MountRecord.init(json:)).flatMap { $0.directory == directory ? $0 : nil }
    }

    public static func remove(directory: String, stop: StopSignals?) throws {
        try StateStore.withLock(StateStore.treesLock, subject: directory, stop: stop) {
            if load(directory: directory) != nil { unlink(file(for: directory)) }
        }
    }
}

/// The parent directory of `path` (absolute, canonical, not "/"), opened O_PATH, and the last
/// component's name.
func openParent(of path: String) throws(MountError) -> (fd: Int32, name: String) {
    let (directory, name) = splitPath(path)
    let parentPath = directory ?? "/"
    let fd = open(parentPath, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw MountError(image: path, .failed(operation: "open \(parentPath)", errno: errno)) }
    return (fd, name)
}

/// What tells one mount from any other: the ID /proc/self/mountinfo gives it (reused once it is
/// gone), the 64-bit ID the kernel never reuses where it has one (Linux 6.8+), and its source
/// and filesystem type.
public struct MountIdentity: Sendable, Equatable {
    public var id: Int
    public var uniqueID: UInt64?
    public var source: String
    public var fsType: String

    public init(id: Int, uniqueID: UInt64?, source: String, fsType: String) {
        self.id = id
        self.uniqueID = uniqueID
        self.source = source
        self.fsType = fsType
    }

    var json: JSON {
        .object([
            ("mountId", .int(Int64(id))),
            ("uniqueMountId", uniqueID.map { .int(Int64(bitPattern: $0)) } ?? .null),
            ("source", .string(source)),
            ("fsType", .string(fsType)),
        ])
    }

    init?(json: JSON) {
        guard let id = json["mountId"]?.intValue.flatMap({ Int(exactly: $0) }), let unique = json["uniqueMountId"],
              unique.isNull || unique.intValue != nil,
              let source = json["source"]?.stringValue, let fsType = json["fsType"]?.stringValue
        else { return nil }
        self.init(id: id, uniqueID: unique.intValue.map { UInt64(bitPattern: $0) }, source: source, fsType: fsType)
    }

    /// Whether `entry` of a mount table is this mount (as far as the table can tell).
    func matches(_ entry: MountTable.Entry) -> Bool {
        entry.id == id && entry.source == source && entry.fsType == fsType
    }

    /// Whether `other`, read from the system now, is this mount: every field, and the unique ID
    /// wherever both have one.
    func isSame(as other: MountIdentity) -> Bool {
        id == other.id && source == other.source && fsType == other.fsType
            && (uniqueID == nil || other.uniqueID == nil || uniqueID == other.uniqueID)
    }

    /// The mount on `name` in the directory `parent` (topmost there), looked up without
    /// following a symlink; nil when `name` is no mount point. `path`: the host path, for
    /// messages and to find the mount in `table`.
    static func mounted(on name: String, in parent: Int32, path: String, table: MountTable) throws(MountError) -> MountIdentity? {
        var id: UInt64 = 0, unique: UInt64 = 0
        guard imgboot_mount_id(parent, name, &id, &unique) == 0 else {
            if errno == ENOENT { return nil }
            throw MountError(image: path, .failed(operation: "statx", errno: errno))
        }
        guard let entry = table.entries.last(where: { UInt64($0.id) == id }), entry.mountPoint == path else { return nil }
        return MountIdentity(id: entry.id, uniqueID: unique == 0 ? nil : unique, source: entry.source, fsType: entry.fsType)
    }
}

/// Taking a mounted tree down: `imgboot umount`.
public enum ImageUnmount {
    /// Unmounts the tree `imgboot mount` mounted on `dir` — the mount it made there and every
    /// mount below it, most recent first — then waits (bounded) for the tree's loop devices to
    /// detach. Refuses, unmounting nothing, a directory with no record of `imgboot mount`, or
    /// whose top mount is no longer the recorded one (taken down and replaced, or mounted
    /// over): `umount` never takes down what imgboot did not mount. A busy mount point stops
    /// it with an error naming it.
    ///
    /// `requireRecord: false` is for `imgboot mount` undoing the tree it has just mounted
    /// (before or without its record): the top mount on `dir` is then taken as its own, and a
    /// record of `dir`, if there is one, goes with it.
    public static func unmount(_ dir: String, requireRecord: Bool = true, stop: StopSignals? = nil, logger: Logger) throws {
        let table = MountTable.current()
        guard !table.mounts(atOrBelow: dir).isEmpty else { throw MountError(image: dir, .other("nothing is mounted there")) }
        let notImgboots = MountError(image: dir, .other("not mounted by imgboot mount; nothing was unmounted"))
        guard dir.hasPrefix("/"), dir != "/" else { throw notImgboots }
        let record: MountRecord?
        if requireRecord {
            try StateStore.prepare([.trees], subject: dir)
            record = MountRecord.load(directory: dir)
            guard record != nil else { throw notImgboots }
        } else {
            // Undoing a tree whose record may not exist: a store that cannot be used (the very
            // reason the record could not be written, perhaps) must not keep the tree mounted.
            record = (try? StateStore.prepare([.trees], subject: dir)) != nil ? MountRecord.load(directory: dir) : nil
        }

        // Everything goes through a descriptor of the directory's parent: no path is looked up
        // twice, so nothing swapped in meanwhile (a symlink in a directory a user owns) can
        // lead the unmount elsewhere. (Not a descriptor of `dir` itself: it would keep the
        // tree's top mount busy.)
        let (parent, name) = try openParent(of: dir)
        defer { close(parent) }
        guard let top = try MountIdentity.mounted(on: name, in: parent, path: dir, table: table) else { throw notImgboots }
        if requireRecord, let record, record.namespace != MountRecord.currentNamespace() {
            throw MountError(image: dir, .other("mounted by imgboot mount in another mount namespace; nothing was unmounted"))
        }
        if requireRecord, let record, !record.top.isSame(as: top) {
            throw MountError(image: dir, .other("the mount there is no longer the one imgboot mount made (replaced or mounted over); nothing was unmounted"))
        }

        for entry in table.tree(from: top.id).reversed() {
            try unmount(entry, of: dir, name: name, parent: parent, logger: logger)
        }
        if MountTable.current().entries.contains(where: { $0.id == top.id && $0.mountPoint == dir }) {
            throw MountError(image: dir, .other("still mounted after unmounting its tree"))
        }
        if let record {
            if !LoopIdentity.waitUntilDetached(record.devices) {
                logger.warning("\(dir): the loop devices of \(record.image) are still attached after 2 s")
            } else if let keeper = record.keeper, !LockKeeperProcess.end(keeper) {
                logger.warning("\(dir): the locks on \(record.image) are still held by imgboot keep-locks (PID \(keeper.pid)) after 2 s")
            }
            if requireRecord {
                try MountRecord.remove(directory: dir, stop: stop)
            } else {
                try? MountRecord.remove(directory: dir, stop: stop)  // undoing: the tree is gone, which is what matters
            }
        }
    }

    /// Unmounts `entry`, a mount of the tree on `dir`: its mount point's parent is reached from
    /// the descriptor of `dir`'s parent without following any symlink (RESOLVE_NO_SYMLINKS:
    /// none of the image's, none a user swapped in), and what is mounted there must still be
    /// `entry` (by ID) — else it is left alone.
    private static func unmount(_ entry: MountTable.Entry, of dir: String, name: String, parent: Int32, logger: Logger) throws(MountError) {
        guard entry.mountPoint == dir || entry.mountPoint.hasPrefix(dir + "/") else {
            throw MountError(image: entry.mountPoint, .other("mounted on the tree of \(dir) but not below it: refusing to unmount it"))
        }
        var components = [name] + entry.mountPoint.dropFirst(dir.count).split(separator: "/").map(String.init)
        let last = components.removeLast()
        let directory = imgboot_openat2(parent, components.isEmpty ? "." : components.joined(separator: "/"),
                                        UInt64(IMGBOOT_O_PATH | O_DIRECTORY | O_CLOEXEC), 0,
                                        UInt64(IMGBOOT_RESOLVE_NO_SYMLINKS | IMGBOOT_RESOLVE_BENEATH))
        guard directory >= 0 else {
            let e = errno
            if e == ELOOP {
                throw MountError(image: entry.mountPoint, .other("a symlink leads there now: refusing to unmount it"))
            }
            throw MountError(image: entry.mountPoint, .failed(operation: "open its directory", errno: e))
        }
        defer { close(directory) }
        var id: UInt64 = 0, unique: UInt64 = 0
        guard imgboot_mount_id(directory, last, &id, &unique) == 0, id == UInt64(entry.id) else {
            logger.debug("not unmounting \(entry.mountPoint): the mount there is no longer mount \(entry.id)")
            return
        }
        logger.debug("umount \(entry.mountPoint)")
        guard umount2("/proc/self/fd/\(directory)/\(last)", Int32(UMOUNT_NOFOLLOW)) == 0 || errno == EINVAL || errno == ENOENT else {
            let e = errno
            if e == EBUSY {
                throw MountError(image: entry.mountPoint, .other("target is busy (a process has a file open or its working directory there)"))
            }
            throw MountError(image: entry.mountPoint, .failed(operation: "umount", errno: e))
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

    var json: JSON { .object([("device", .int(Int64(bitPattern: device))), ("inode", .int(Int64(bitPattern: inode)))]) }

    init?(json: JSON) {
        guard let device = json["device"]?.intValue, let inode = json["inode"]?.intValue else { return nil }
        self.init(device: UInt64(bitPattern: device), inode: UInt64(bitPattern: inode))
    }
}

/// A tree's `imgboot keep-locks` (Attach's `LockKeeper`), seen from `imgboot umount` and from
/// `imgboot mount` undoing a tree.
public enum LockKeeperProcess {
    /// Ends the keeper once the tree's devices are gone: SIGTERM tells it to look again (it ends
    /// only if every device is detached, releasing the locks), then waits at most `timeout`
    /// seconds for it to end. True when it has ended, or when the PID no longer names it (gone,
    /// or reused: then nothing is signalled).
    public static func end(_ keeper: ProcessIdentity, timeout: Double = 2) -> Bool {
        let fd = imgboot_pidfd_open(keeper.pid)
        guard fd >= 0 else { return true }
        let pidfd = PidFD(fd)
        // Checked after opening the pidfd: the process it holds is the one checked.
        guard ProcessIdentity.startTime(of: keeper.pid) == keeper.startTime else { return true }
        _ = imgboot_pidfd_send_signal(pidfd.fd, SIGTERM)
        // A pidfd becomes readable when its process ends.
        return waitReadable(pidfd.fd, until: Deadline(after: timeout))
    }
}
