#if canImport(Glibc)
import Glibc
#endif
import Support
import CLinux
import Dissect
import Logging

/// An image's tree, mounted by applying a `MountPlan`. Everything that goes into the tree is
/// looked up inside the tree (`TreePath`); scratch mounts ("staging") live outside it in a
/// private directory and are detached before `apply` returns, so the tree is all that remains.
public final class MountedTree {
    /// The directory the tree is mounted on.
    public let root: String
    /// Optional steps that failed (an ESP the kernel cannot mount), as lines for the user.
    public private(set) var warnings: [String] = []
    /// The notify socket a `notifySocket` step bound, or -1; its owner closes it.
    public internal(set) var notifySocket: Int32 = -1

    let image: String
    let logger: Logger
    private var stagingDir: String?
    /// Mounts made so far, in order: undone in reverse if a later step fails.
    var made: [String] = []
    /// Overlays of directories (--overlay) made so far: their staging names.
    var overlays = 0
    /// The work directories made beside host directories for overlays (--overlay): the host's,
    /// for whoever ends the tree to remove once the overlays are gone (`removeWorkDirectories`).
    public internal(set) var workDirectories: [String] = []

    private init(root: String, image: String, logger: Logger) {
        self.root = root
        self.image = image
        self.logger = logger
    }

    /// Mounts the tree `plan` describes on the existing directory `root`, with `devices` giving
    /// the loop device of each attached partition. If a step fails, everything done so far is
    /// undone before the error is thrown.
    ///
    /// `discardedStaging`: a directory for the staging mounts in a mount namespace that is about
    /// to be thrown away (a container's): they are then left where they are, to go with the
    /// namespace all at once, instead of being detached one by one (each detach waits for an
    /// RCU grace period). The caller removes the directory's empty skeleton afterwards.
    /// Whose the tree is, for a container with a user namespace: the image's filesystems are
    /// idmapped through `idmap` (the image's UID 0 becomes the namespace's root), and what
    /// imgboot creates — tmpfs roots, overlay uppers, the base filesystem — belongs to
    /// `uid`/`gid`, the namespace's root as the host numbers it.
    public struct Owner: Sendable {
        /// The user namespace's descriptor, or -1 when its map is the identity (nothing to map).
        public var idmap: Int32
        public var uid: UInt32
        public var gid: UInt32

        public init(idmap: Int32, uid: UInt32, gid: UInt32) {
            self.idmap = idmap
            self.uid = uid
            self.gid = gid
        }
    }

    public static func apply(
        _ plan: MountPlan, image: DissectedImage, devices: [Int: String], at root: String,
        discardedStaging: String? = nil, owner: Owner? = nil, logger: Logger = Logger(label: "imgboot.mount")
    ) throws(MountError) -> MountedTree {
        let tree = MountedTree(root: root, image: image.image, logger: logger)
        tree.owner = owner
        if let discardedStaging {
            guard mkdir(discardedStaging, 0o700) == 0 || errno == EEXIST else {
                throw MountError(image: image.image, .failed(operation: "create \(discardedStaging)", errno: errno))
            }
            tree.stagingDir = discardedStaging
            tree.keepStaging = true
        }
        do {
            try tree.run(plan, devices: devices)
        } catch {
            tree.rollback()
            throw error
        }
        if !tree.keepStaging { tree.removeStaging() }
        return tree
    }

    /// The staging mounts stay (see `apply`'s `discardedStaging`).
    private var keepStaging = false
    /// See `Owner`.
    var owner: Owner?

    private func run(_ plan: MountPlan, devices: [Int: String]) throws(MountError) {
        // A failed optional partition's other steps (its overlay, its detach) are skipped with it.
        var skipped: Set<Int> = []
        // The container's own steps are its first process's (`ContainerPlan`, CLinux).
        for step in plan.steps(.tree) {
            if let number = step.partitionNumber, skipped.contains(number) { continue }
            do {
                try perform(step, devices: devices)
            } catch where step.optional {
                let name = step.partition ?? "\(step.target)"
                warnings.append("\(name) is not mounted: \(error.detail)")
                // Only debug: callers report `warnings` to the user (once).
                logger.debug("\(image): \(name) is not mounted: \(error.detail)")
                if let number = step.partitionNumber { skipped.insert(number) }
            }
        }
    }

    private func perform(_ step: MountPlan.Step, devices: [Int: String]) throws(MountError) {
        let options = step.options.joined(separator: ",")
        switch step.action {
        case .partition(let number, let fsType):
            guard let device = devices[number] else {
                throw MountError(image: image, partition: step.partition, .other("no loop device attached"))
            }
            let target = try open(step.target, create: true, partition: step.partition)
            logger.debug("mount \(device) (\(fsType), \(options)) on \(step.target)")
            if let owner, owner.idmap >= 0 {
                try mountIdmapped(device, on: target, fsType: fsType, options: options, idmap: owner.idmap, step: step)
            } else {
                try mount(source: device, on: target, fsType: fsType, options: options, step: step,
                          what: "mount \(fsType) on \(step.target)")
            }

        case .tmpfs:
            let target = try mountTarget(step)
            // Under a user namespace the container's root owns it — or the container's UID and
            // GID that the options name, moved into the range.
            var given = mapped(step.options)
            if let owner {
                if !given.contains(where: { $0.hasPrefix("uid=") }) { given.append("uid=\(owner.uid)") }
                if !given.contains(where: { $0.hasPrefix("gid=") }) { given.append("gid=\(owner.gid)") }
            }
            try mount(source: "tmpfs", on: target, fsType: "tmpfs", options: given.joined(separator: ","),
                      step: step, what: "mount tmpfs on \(step.target)")

        case .overlay(let lower, let upper, let work):
            let target = try open(step.target, create: true, partition: step.partition)
            let layers = "lowerdir=\(try stagingPath(lower)),upperdir=\(try stagingPath(upper)),workdir=\(try stagingPath(work))"
            try mount(source: "overlay", on: target, fsType: "overlay", options: layers + (options.isEmpty ? "" : "," + options),
                      step: step, what: "mount overlay on \(step.target)")

        case .bind(let sourcePlace):
            let source = try open(sourcePlace, create: false, partition: step.partition)
            let target = try open(step.target, create: true, partition: step.partition)
            let landing = try landingPath(target, step.target)
            guard Glibc.mount(source.procPath, target.procPath, nil, UInt(MS_BIND), nil) == 0 else {
                throw MountError(image: image, partition: step.partition, .failed(operation: "bind \(sourcePlace) on \(step.target)", errno: errno))
            }
            made.append(landing)
            let nosuid = step.options.contains("nosuid")
            if step.readOnly || nosuid {
                // Remount through a fresh descriptor: the old one is the directory *under* the bind.
                // The flags given replace the bind's (copied from its source) all at once, so
                // each one the step asks for is in them.
                let mounted = try open(step.target, create: false, partition: step.partition)
                let flags = UInt(MS_REMOUNT | MS_BIND | MS_NODEV) | (step.readOnly ? UInt(MS_RDONLY) : 0) | (nosuid ? UInt(MS_NOSUID) : 0)
                guard Glibc.mount(nil, mounted.procPath, nil, flags, nil) == 0 else {
                    throw MountError(image: image, partition: step.partition, .failed(operation: "make \(step.target) read-only", errno: errno))
                }
            }

        case .makeDirectory(let mode, let like):
            try makeDirectory(step.target, mode: mode, like: like, partition: step.partition)

        case .requireMergedUsr:
            let top = try open(step.target, create: false, partition: step.partition)
            var st = stat()
            if fstatat(top.fd, "bin", &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                throw MountError(image: image, .notMergedUsr)
            }
            do {
                _ = try TreePath(root: top.fd, path: "/usr")
            } catch {
                throw MountError(image: image, .other("--volatile=yes needs the image's /usr, but \(describe(error))"))
            }

        case .baseFilesystem:
            let top = try open(step.target, create: false, partition: step.partition)
            try BaseFilesystem.create(in: top.fd, image: image, owner: owner.map { ($0.uid, $0.gid) })

        case .filesystem, .characterDevice, .symlink, .removeFile, .file, .notifySocket, .cover, .makeReadOnly, .mountPoint, .bindHost,
             .overlayOf:
            try prepare(step)

        case .detach:
            if keepStaging { return }
            let path = try absolutePath(step.target)
            guard umount2(path, Int32(MNT_DETACH)) == 0 else {
                throw MountError(image: image, partition: step.partition, .failed(operation: "detach \(step.target)", errno: errno))
            }
            made.removeAll { $0 == path }
        }
    }

    /// Where `step` mounts: a real directory for the steps that must not follow a symlink (what
    /// imgboot puts in the tree), else its place resolved inside the tree, made when missing.
    private func mountTarget(_ step: MountPlan.Step) throws(MountError) -> TreePath {
        if step.noFollow, case .tree(let path) = step.target {
            let top = try openDirectory(root, partition: step.partition)
            defer { close(top) }
            return try apiMountPoint(path, top: top)
        }
        return try open(step.target, create: true, partition: step.partition)
    }

    /// A partition's filesystem, idmapped: mounted detached, mapped, then attached (an attached
    /// mount cannot be idmapped). Where the mapping fails, the error says what to do.
    private func mountIdmapped(_ device: String, on target: borrowing TreePath, fsType: String, options: String,
                               idmap: Int32, step: MountPlan.Step) throws(MountError) {
        let landing = try landingPath(target, step.target)
        let mnt = imgboot_mount_detached(device, fsType, options)
        guard mnt >= 0 else {
            // As it would fail without a user namespace (a corrupt filesystem: "Structure needs cleaning").
            throw MountError(image: image, partition: step.partition, .failed(operation: "mount \(fsType) on \(step.target)", errno: errno))
        }
        guard imgboot_attach_detached(mnt, idmap, 0, target.fd) == 0 else {
            let e = errno
            throw MountError(image: image, partition: step.partition, .other(
                "mount \(fsType) on \(step.target) idmapped for the user namespace: \(errnoString(e)) (the kernel cannot idmap \(fsType) here; use --private-users=no)"))
        }
        made.append(landing)
    }

    func mount(source: String, on target: borrowing TreePath, fsType: String, options: String,
                       step: MountPlan.Step, what: String) throws(MountError) {
        let landing = try landingPath(target, step.target)
        if let failure = LibMount.mount(source: source, target: target.procPath, fsType: fsType, options: options) {
            throw MountError(image: image, partition: step.partition, .failed(operation: what, errno: failure.errno))
        }
        made.append(landing)
    }

    /// The host path where a mount on `target` lands, to undo it: for a tree place, the
    /// directory its path resolved to inside the tree (`/home -> /etc` lands on ROOT/etc), read
    /// back from the descriptor. Never ROOT joined with the plan's path: on the host, ROOT/home
    /// is the image's symlink, and unmounting through it would detach the host's /etc.
    func landingPath(_ target: borrowing TreePath, _ place: MountPlan.Place) throws(MountError) -> String {
        guard case .tree = place else { return try absolutePath(place) }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(target.procPath, &buffer, buffer.count - 1)
        guard n > 0 else {
            throw MountError(image: image, .failed(operation: "find where \(place) lies on the host", errno: errno))
        }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: Places

    /// The absolute host path of a place, for staging places (imgboot's own directories). For a
    /// tree place it is the plan's path, which an image symlink may redirect: see `landingPath`.
    func absolutePath(_ place: MountPlan.Place) throws(MountError) -> String {
        switch place {
        case .tree(let path): path == "/" ? root : root + path
        case .staging: try stagingPath(place)
        case .host(let path): path
        case .console: throw MountError(image: image, .other("the console is the container's to bind"))
        }
    }

    func stagingPath(_ place: MountPlan.Place) throws(MountError) -> String {
        guard case .staging(let relative) = place else { return root }
        if stagingDir == nil {
            var template = Array("/tmp/imgboot-staging.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap(mkdtemp) }) != nil else {
                throw MountError(image: image, .failed(operation: "create a staging directory in /tmp", errno: errno))
            }
            stagingDir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return (stagingDir ?? "") + "/" + relative
    }

    /// Opens a place as a directory. Tree places resolve inside the tree; a missing one is
    /// created when `create` is set and its parent lies on a writable mount (a tmpfs of
    /// imgboot's own, an overlay in RAM, or the image in mode `no`), and refused otherwise.
    /// Staging places are imgboot's own directories; below their first component (a mounted
    /// image), they resolve inside that image.
    func open(_ place: MountPlan.Place, create: Bool, partition: String?) throws(MountError) -> TreePath {
        switch place {
        case .tree(let path):
            let top = try openDirectory(root, partition: partition)
            defer { close(top) }
            let resolved = try resolve(path, below: top, create: create, partition: partition)
            // A mount point that leads back to the tree's root (`/var -> ../..`) would stack the
            // partition over the whole tree: refused, as systemd refuses it.
            if path != "/" && isSameFile(resolved.fd, top) {
                throw MountError(image: image, partition: partition, .other("mount point \(path) leads to the image's root directory"))
            }
            return resolved
        case .staging(let relative):
            let components = relative.split(separator: "/", maxSplits: 1).map(String.init)
            let base = try stagingPath(.staging(components[0]))
            if components.count == 1 && create && access(base, F_OK) != 0 && mkdir(base, 0o755) != 0 {
                throw MountError(image: image, partition: partition, .failed(operation: "mkdir \(place)", errno: errno))
            }
            let top = try openDirectory(base, partition: partition)
            defer { close(top) }
            return try resolve(components.count > 1 ? "/" + components[1] : "/", below: top, create: create, partition: partition)
        case .host, .console:
            // Host paths are opened by the step that binds them (`bindHost`); the console is
            // bound by the container's first process.
            throw MountError(image: image, .other("\(place) is not a directory of the tree"))
        }
    }

    func resolve(_ path: String, below top: Int32, create: Bool, partition: String?) throws(MountError) -> TreePath {
        do {
            return try TreePath(root: top, path: path)
        } catch where error.errno == ENOENT && create && path != "/" {
            let (parentPath, name) = splitPath(path)
            let parent: TreePath
            do { parent = try TreePath(root: top, path: parentPath ?? "/") } catch {
                throw MountError(image: image, partition: partition, .other(describe(error)))
            }
            if parent.isOnReadOnlyMount { throw MountError(image: image, partition: partition, .missingMountPoint(path)) }
            let parentFD = parent.fd
            let made = creatingAs(owner.map { ($0.uid, $0.gid) }) { mkdirat(parentFD, name, 0o755) }
            guard made == 0 || errno == EEXIST else {
                throw MountError(image: image, partition: partition, .failed(operation: "create mount point \(path)", errno: errno))
            }
            do { return try TreePath(root: top, path: path) } catch {
                throw MountError(image: image, partition: partition, .other(describe(error)))
            }
        } catch {
            throw MountError(image: image, partition: partition, .other(describe(error)))
        }
    }

    private func isSameFile(_ a: Int32, _ b: Int32) -> Bool {
        var x = stat(), y = stat()
        return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    func openDirectory(_ path: String, partition: String?) throws(MountError) -> Int32 {
        let fd = Glibc.open(path, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MountError(image: image, partition: partition, .failed(operation: "open \(path)", errno: errno))
        }
        return fd
    }

    func describe(_ error: ResolveError) -> String {
        switch error.errno {
        case ENOENT: "\(error.path) does not exist in the image"
        case ENOTDIR: "mount point \(error.path) is not a directory"
        case ELOOP: "mount point \(error.path) is a symlink loop"
        case EXDEV: "mount point \(error.path) points outside the image"
        default: "cannot open \(error.path): \(errnoString(error.code))"
        }
    }

    func makeDirectory(_ place: MountPlan.Place, mode: UInt32, like: MountPlan.Place?, partition: String?) throws(MountError) {
        let dir = try open(place, create: true, partition: partition)
        // The mode is set explicitly: mkdir's is filtered by the umask (1777 would become 1755).
        var st = stat()
        if let like {
            let model = try open(like, create: false, partition: partition)
            guard fstat(model.fd, &st) == 0 else {
                throw MountError(image: image, partition: partition, .failed(operation: "stat \(like)", errno: errno))
            }
        } else {
            st.st_mode = mode
            st.st_uid = owner?.uid ?? 0
            st.st_gid = owner?.gid ?? 0
        }
        // fchmod/fchown do not work on O_PATH descriptors; go through the descriptor's proc path.
        guard chmod(dir.procPath, st.st_mode & 0o7777) == 0, chown(dir.procPath, st.st_uid, st.st_gid) == 0 else {
            throw MountError(image: image, partition: partition, .failed(operation: "set the mode of \(place)", errno: errno))
        }
    }

    // MARK: Undo

    /// Undoes what a failed `apply` did: every mount detached, the staging directory removed.
    private func rollback() {
        // NOFOLLOW: these are resolved paths; nothing in the image may redirect them now.
        for path in made.reversed() where umount2(path, Int32(MNT_DETACH | UMOUNT_NOFOLLOW)) != 0 {
            logger.debug("rollback: cannot detach \(path): \(errnoString(errno))")
        }
        made.removeAll()
        removeStaging()
        Self.removeWorkDirectories(workDirectories, logger: logger)
    }

    /// Removes overlays' work directories and what the kernel left in them (a spare whiteout).
    public static func removeWorkDirectories(_ paths: [String], logger: Logger) {
        for path in paths where !Directory.removeTree(path) {
            logger.warning("cannot remove the overlay's work directory \(path): \(errnoString(errno))")
        }
    }

    /// Removes the staging directory and what it holds (only empty directories: every staging
    /// mount has been detached by then).
    private func removeStaging() {
        guard let dir = stagingDir else { return }
        for path in made where path.hasPrefix(dir + "/") { _ = umount2(path, Int32(MNT_DETACH)) }
        made.removeAll { $0.hasPrefix(dir + "/") }
        Directory.removeEmptyTree(dir)
        stagingDir = nil
    }
}
