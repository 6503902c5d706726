#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Support

/// The steps that put imgboot's own things into the tree around the image — a container's
/// /dev and its nodes, /run, /tmp, /run/host, the host's resolv.conf and timezone, binds of host
/// paths — as the tree phase of the plan has them (`ContainerPlan` in Boot builds them).
///
/// Every target is looked up inside the tree, and these steps' targets must be what they are:
/// a symlink at /dev is refused, never followed, so an image cannot send a mount elsewhere.
/// Missing directories are made on a writable tree (a tmpfs root, an overlay in RAM, a writable
/// image), never by writing a read-only image. With a user namespace (`owner`), what is created
/// belongs to the container's root, and IDs in the options (`gid=5`) are the container's.
extension MountedTree {
    func prepare(_ step: MountPlan.Step) throws(MountError) {
        guard case .tree(let path) = step.target else {
            throw MountError(image: image, .other("\(step.target): not a place in the tree"))
        }
        let top = try openDirectory(root, partition: nil)
        defer { close(top) }
        switch step.action {
        case .mountPoint:
            _ = try apiMountPoint(path, top: top)

        case .filesystem(let type, let source):
            let target = try apiMountPoint(path, top: top)
            try mount(source: source, on: target, fsType: type, options: mapped(step.options).joined(separator: ","),
                      step: step, what: "mount \(type) on \(path)")

        case .characterDevice(let major, let minor):
            let located = try parent(of: path, top: top)
            let dir = located.directory.fd, name = located.name
            guard mknodat(dir, name, S_IFCHR | 0o666, dev_t(imgboot_makedev(major, minor))) == 0,
                  fchmodat(dir, name, 0o666, 0) == 0 else {
                throw MountError(image: image, .failed(operation: "create \(path)", errno: errno))
            }
            try own(name, in: dir, path)

        case .symlink(let target):
            let located = try parent(of: path, top: top)
            let dir = located.directory.fd, name = located.name
            guard symlinkat(target, dir, name) == 0 else { throw MountError(image: image, .failed(operation: "create \(path)", errno: errno)) }
            try own(name, in: dir, path)

        case .file(let contents, let mode):
            try file(path, contents, mode: mode_t(mode), top: top)

        case .removeFile:
            guard let located = writableParent(of: path, top: top) else { return }
            var st = stat()
            guard fstatat(located.directory.fd, located.name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT != S_IFDIR else { return }
            guard unlinkat(located.directory.fd, located.name, 0) == 0 else { throw MountError(image: image, .failed(operation: "remove \(path)", errno: errno)) }

        case .notifySocket:
            let located = try parent(of: path, top: top)
            let dir = located.directory.fd, name = located.name
            notifySocket = try bindNotifySocket(located.directory.procPath + "/" + name, path)
            try own(name, in: dir, path)

        case .bindHost(let source, let idmap):
            try bindHost(source, on: path, idmap: idmap, readOnly: step.readOnly, top: top)

        case .overlayOf(let lower, let upper):
            try overlay(lower, upper, on: path, step: step, top: top)

        case .cover, .makeReadOnly:
            // The container's: its first process covers and remounts in its own namespaces.
            throw MountError(image: image, .other("\(step.line): a step of the container's"))

        default:
            throw MountError(image: image, .other("\(step.line): not a step of what imgboot adds to the tree"))
        }
    }

    // MARK: Places of imgboot's own

    /// A directory of the tree to mount an API filesystem on: a real directory (never through a
    /// symlink at its end), created when it is missing on a writable tree.
    func apiMountPoint(_ path: String, top: Int32) throws(MountError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: false)
        } catch where error.errno == ENOENT {
            try createDirectory(path, top: top)
            return try realDirectory(path, top: top)
        } catch {
            return try realDirectory(path, top: top)
        }
    }

    private func realDirectory(_ path: String, top: Int32, followFinal: Bool = false) throws(MountError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: followFinal)
        } catch {
            let what: String = switch error.errno {
            case ENOENT: "the image has no \(path) directory"
            case ELOOP: "the image's \(path) is a symlink; imgboot mounts \(path) only on a real directory"
            case ENOTDIR: "the image's \(path) is not a directory"
            default: "cannot open \(path) in the image: \(errnoString(error.code))"
            }
            throw MountError(image: image, .other(what))
        }
    }

    /// A missing directory (and its missing parents, as nspawn makes them for `--bind`): made
    /// when its parent is writable, refused on a read-only image.
    func createDirectory(_ path: String, top: Int32) throws(MountError) {
        let located = try parentCreating(path, top: top)
        let name = located.name
        if located.directory.isOnReadOnlyMount {
            throw MountError(image: image, .other("the read-only image has no \(path) directory (imgboot never writes the image to create it)"))
        }
        let parentFD = located.directory.fd
        if creatingAs(ownerIDs, { mkdirat(parentFD, name, 0o755) }) != 0 {
            guard errno == EEXIST else { throw MountError(image: image, .failed(operation: "create \(path)", errno: errno)) }
            return
        }
        try own(name, in: parentFD, path)
    }

    /// A file's place: the directory that holds it, open, and its name there.
    struct Located: ~Copyable {
        let directory: TreePath
        let name: String
    }

    /// The directory holding `path` (made first when missing), and the last component.
    private func parentCreating(_ path: String, top: Int32) throws(MountError) -> Located {
        let (directory, name) = splitPath(path)
        let parentPath = directory ?? "/"
        do {
            return Located(directory: try TreePath(root: top, path: parentPath, followFinal: true), name: name)
        } catch where error.errno == ENOENT && parentPath != "/" {
            try createDirectory(parentPath, top: top)
        } catch {
            // Any other failure: realDirectory says what it is, in the user's words.
        }
        return Located(directory: try realDirectory(parentPath, top: top, followFinal: true), name: name)
    }

    /// The directory holding `path`, which must exist, and the last component.
    private func parent(of path: String, top: Int32) throws(MountError) -> Located {
        try parentCreating(path, top: top)
    }

    // MARK: Files

    /// The container's root as the host numbers it, with a user namespace.
    var ownerIDs: (uid: UInt32, gid: UInt32)? { owner.map { ($0.uid, $0.gid) } }

    /// Gives `name` (in the directory `dir`; a symlink itself, not its target) to the container's
    /// root, when there is a user namespace.
    func own(_ name: String, in dir: Int32, _ path: String) throws(MountError) {
        guard let owner else { return }
        guard fchownat(dir, name, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw MountError(image: image, .failed(operation: "give \(path) to the container's root", errno: errno))
        }
    }

    /// Options with the container's IDs (`uid=N`, `gid=N`) made the host's, with a user namespace.
    func mapped(_ options: [String]) -> [String] {
        guard let owner else { return options }
        return options.map { option in
            for (key, base) in [("uid=", owner.uid), ("gid=", owner.gid)] where option.hasPrefix(key) {
                // (An ID past the top of the ID space stays as given: the kernel refuses it.)
                if let id = UInt32(option.dropFirst(key.count)) {
                    let (host, overflow) = base.addingReportingOverflow(id)
                    return overflow ? option : key + String(host)
                }
            }
            return option
        }
    }

    private func file(_ path: String, _ contents: MountPlan.FileContents, mode: mode_t, top: Int32) throws(MountError) {
        switch contents {
        case .empty:
            let located = try parentCreating(path, top: top)
            let dir = located.directory.fd, name = located.name
            if located.directory.isOnReadOnlyMount {
                throw MountError(image: image, .other("the read-only image has no \(path) (imgboot never writes the image to create it)"))
            }
            try writeFile(in: dir, name, [], mode: mode, path: path, exclusive: false)
        case .text(let text):
            let located = try parent(of: path, top: top)
            let dir = located.directory.fd, name = located.name
            try writeFile(in: dir, name, Array(text.utf8), mode: mode, path: path)
        case .randomUUID:
            let located = try parent(of: path, top: top)
            let dir = located.directory.fd, name = located.name
            try writeFile(in: dir, name, Array((randomUUID() + "\n").utf8), mode: mode, path: path)
        case .hostCopy(let hostPath, let boundFrom):
            try hostCopy(hostPath, at: path, boundFrom: boundFrom, mode: mode, top: top)
        case .secret(let bytes):
            let located = try parent(of: path, top: top)
            try writeFile(in: located.directory.fd, located.name, bytes, mode: mode, path: path)
        case .hostCopyUnlessLink(let hostPath):
            guard let content = readFile(hostPath), let located = writableParent(of: path, top: top) else { return }
            var st = stat()
            if fstatat(located.directory.fd, located.name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT != S_IFREG {
                logger.debug("\(path): not a regular file in the tree; left as it is")
                return
            }
            try writeFile(in: located.directory.fd, located.name, content, mode: mode, path: path)
        case .hostTimezoneLink:
            try hostTimezoneLink(at: path, top: top)
        }
    }

    /// The directory that holds `path` and the name in it, when the tree has that directory and
    /// it is writable; nil otherwise (what was to change there is left as it is).
    private func writableParent(of path: String, top: Int32) -> Located? {
        let (dirPath, name) = splitPath(path)
        guard let directory = try? TreePath(root: top, path: dirPath ?? "/"), !directory.isOnReadOnlyMount else { return nil }
        return Located(directory: directory, name: name)
    }

    /// See `MountPlan.FileContents.hostTimezoneLink`.
    private func hostTimezoneLink(at path: String, top: Int32) throws(MountError) {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/etc/localtime", &buffer, buffer.count - 1)
        guard n > 0 else { return }
        let link = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let range = link.firstRange(of: "zoneinfo/") else { return }
        let zone = String(link[range.upperBound...])
        guard !zone.isEmpty, !zone.split(separator: "/").contains(".."),
              (try? TreePath(root: top, path: "usr/share/zoneinfo/" + zone, kind: S_IFREG)) != nil,
              let located = writableParent(of: path, top: top) else {
            logger.debug("\(path): the host's zone \(zone) is not in the tree's zoneinfo, or the tree is read-only; left as it is")
            return
        }
        var st = stat()
        if fstatat(located.directory.fd, located.name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            guard st.st_mode & S_IFMT != S_IFDIR else { return }
            _ = unlinkat(located.directory.fd, located.name, 0)
        }
        let target = "../usr/share/zoneinfo/" + zone
        let made = creatingAs(ownerIDs) { symlinkat(target, located.directory.fd, located.name) }
        guard made == 0 else { throw MountError(image: image, .failed(operation: "create \(path)", errno: errno)) }
    }

    /// See `MountPlan.FileContents.hostCopy`.
    private func hostCopy(_ hostPath: String, at path: String, boundFrom: MountPlan.Place?, mode: mode_t, top: Int32) throws(MountError) {
        guard let content = readFile(hostPath) else { return }  // the host has none: nothing to copy
        let (dirPath, name) = splitPath(path)
        // No /etc in the image: nothing there expects the file.
        guard let directory = try? TreePath(root: top, path: dirPath ?? "/") else { return }
        let dir = directory.fd
        var st = stat()
        let exists = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0
        guard let boundFrom else {
            if directory.isOnReadOnlyMount || (exists && st.st_mode & S_IFMT == S_IFDIR) { return }
            if exists { _ = unlinkat(dir, name, 0) }  // replaced just below; if it stays, the write says why
            try writeFile(in: dir, name, content, mode: mode, path: path)
            return
        }
        guard exists && st.st_mode & S_IFMT == S_IFREG else {
            logger.debug("\(path): \(exists ? "not a regular file" : "missing") in the image; left as it is")
            return
        }
        guard case .tree(let copyPath) = boundFrom else {
            throw MountError(image: image, .other("\(boundFrom): a copy goes into the tree"))
        }
        let copyPlace = try parent(of: copyPath, top: top)
        try writeFile(in: copyPlace.directory.fd, copyPlace.name, content, mode: mode, path: copyPath)
        let source = try regularFile(copyPath, top: top)
        let target = try regularFile(path, top: top)
        guard Glibc.mount(source.procPath, target.procPath, nil, UInt(MS_BIND), nil) == 0 else {
            throw MountError(image: image, .failed(operation: "bind \(path)", errno: errno))
        }
        let mounted = try regularFile(path, top: top)
        guard Glibc.mount(nil, mounted.procPath, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV), nil) == 0 else {
            throw MountError(image: image, .failed(operation: "make \(path) read-only", errno: errno))
        }
    }

    private func regularFile(_ path: String, top: Int32) throws(MountError) -> TreePath {
        do {
            return try TreePath(root: top, path: path, followFinal: false, kind: S_IFREG)
        } catch {
            throw MountError(image: image, .failed(operation: "open \(path)", errno: error.code))
        }
    }

    private func writeFile(in dir: Int32, _ name: String, _ content: [UInt8], mode: mode_t, path: String,
                           exclusive: Bool = false) throws(MountError) {
        let flags = O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC)
        let fd = creatingAs(ownerIDs) { openat(dir, name, flags, mode) }
        guard fd >= 0 else { throw MountError(image: image, .failed(operation: "create \(path)", errno: errno)) }
        defer { close(fd) }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0 {
            throw MountError(image: image, .failed(operation: "give \(path) to the container's root", errno: errno))
        }
        // The mode as meant (open's went through the umask).
        guard fchmod(fd, mode) == 0 else { throw MountError(image: image, .failed(operation: "set the mode of \(path)", errno: errno)) }
        do {
            try writeFully(fd, content)
        } catch {
            throw MountError(image: image, .failed(operation: "write \(path)", errno: error.code))
        }
    }

    // MARK: The notify socket

    private func bindNotifySocket(_ procPath: String, _ path: String) throws(MountError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw MountError(image: image, .failed(operation: "create the notify socket", errno: errno)) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(procPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw MountError(image: image, .failed(operation: "bind the notify socket \(path)", errno: e))
        }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size))  // only for the sender's PID in logs
        return fd
    }

    // MARK: Binds of host paths

    /// `--bind`/`--bind-ro`: a host path at a path in the tree (made on a writable tree).
    private func bindHost(_ sourcePath: String, on path: String, idmap: Bool, readOnly: Bool, top: Int32) throws(MountError) {
        var st = stat()
        guard stat(sourcePath, &st) == 0 else { throw MountError(image: image, .failed(operation: "--bind source \(sourcePath)", errno: errno)) }
        let isDirectory = st.st_mode & S_IFMT == S_IFDIR
        let source = Glibc.open(sourcePath, Int32(IMGBOOT_O_PATH) | O_CLOEXEC)
        guard source >= 0 else { throw MountError(image: image, .failed(operation: "--bind source \(sourcePath)", errno: errno)) }
        defer { close(source) }
        let kind: mode_t = isDirectory ? S_IFDIR : S_IFREG
        let target: TreePath
        do {
            target = try TreePath(root: top, path: path, kind: kind)
        } catch where error.errno == ENOENT {
            if isDirectory { try createDirectory(path, top: top) } else { try file(path, .empty, mode: 0o644, top: top) }
            do { target = try TreePath(root: top, path: path, kind: kind) } catch {
                throw MountError(image: image, .failed(operation: "--bind target \(path)", errno: error.code))
            }
        } catch {
            throw MountError(image: image, .failed(operation: "--bind target \(path)", errno: error.code))
        }
        if idmap, let owner, owner.idmap >= 0 {
            // The host's owners, mapped into the container (the host's root is its root): one
            // mount, not recursive (a mapping is per mount), read-only from the start if asked.
            guard imgboot_bind_idmapped(source, owner.idmap, readOnly ? 1 : 0, target.fd) == 0 else {
                let e = errno
                if e == EINVAL || e == EPERM || e == EOPNOTSUPP {
                    throw MountError(image: image, .other("bind \(sourcePath) on \(path): \(errnoString(e)) (its filesystem, or a mount below it, cannot be idmapped; add :noidmap, or use --private-users=no)"))
                }
                throw MountError(image: image, .failed(operation: "bind \(sourcePath) on \(path)", errno: e))
            }
            return
        }
        guard Glibc.mount("/proc/self/fd/\(source)", target.procPath, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
            throw MountError(image: image, .failed(operation: "bind \(sourcePath) on \(path)", errno: errno))
        }
        if readOnly {
            let mounted: TreePath
            do { mounted = try TreePath(root: top, path: path, kind: kind) } catch {
                throw MountError(image: image, .failed(operation: "--bind target \(path)", errno: error.code))
            }
            guard Glibc.mount(nil, mounted.procPath, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
                throw MountError(image: image, .failed(operation: "make \(path) read-only", errno: errno))
            }
        }
    }
}

// MARK: Overlays of directories

extension MountedTree {
    /// `--overlay`/`--overlay-ro`: the layers opened (host directories as the host names them,
    /// the tree's inside the tree) and handed to overlayfs as descriptors' paths, so no colon or
    /// comma of a name reaches its options. With a user namespace, host directories are
    /// idmapped clones (the host's root is the container's); a host UPPER is then written
    /// through a clone of its parent (which holds the work directory too) by an overlay whose
    /// creator is the container's root — the host's root has no ID on an idmapped mount.
    fileprivate func overlay(_ lower: [MountPlan.OverlayLayer], _ upper: MountPlan.OverlayUpper, on path: String,
                             step: MountPlan.Step, top: Int32) throws(MountError) {
        overlays += 1
        let staging = "overlay\(overlays)"
        let idmap = owner.flatMap { $0.idmap >= 0 ? $0.idmap : nil }
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        func keep(_ fd: Int32) -> String {
            held.append(fd)
            return "/proc/self/fd/\(fd)"
        }
        func openHost(_ hostPath: String, _ role: String) throws(MountError) -> Int32 {
            let fd = Glibc.open(hostPath, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw MountError(image: image, .failed(operation: "--overlay \(role) \(hostPath)", errno: errno)) }
            return fd
        }
        /// An idmapped clone of the host's directory `fd` in the staging directory, opened.
        func idmapped(_ fd: Int32, _ name: String, readOnly: Bool, _ hostPath: String, idmap: Int32) throws(MountError) -> Int32 {
            let place = MountPlan.Place.staging(name)
            let landing = try absolutePath(place)
            let target = try open(place, create: true, partition: nil)
            guard imgboot_bind_idmapped(fd, idmap, readOnly ? 1 : 0, target.fd) == 0 else {
                let e = errno
                if e == EINVAL || e == EPERM || e == EOPNOTSUPP {
                    throw MountError(image: image, .other("--overlay: \(hostPath) cannot be idmapped into the container: \(errnoString(e)) (its filesystem, or a mount below it; use --private-users=no)"))
                }
                throw MountError(image: image, .failed(operation: "idmap \(hostPath) for --overlay", errno: e))
            }
            made.append(landing)
            return try openHost(landing, "layer")
        }

        // Bottom first, as given.
        var layers: [String] = []
        var topLayer: Int32 = -1
        for (k, layer) in lower.enumerated() {
            var fd: Int32
            switch layer {
            case .tree(let treePath):
                do {
                    let dir = try TreePath(root: top, path: treePath, kind: S_IFDIR)
                    fd = fcntl(dir.fd, F_DUPFD_CLOEXEC, 0)
                } catch {
                    throw MountError(image: image, .other("--overlay source +\(treePath): \(describe(error))"))
                }
                guard fd >= 0 else { throw MountError(image: image, .failed(operation: "open \(treePath)", errno: errno)) }
            case .host(let hostPath):
                fd = try openHost(hostPath, "source")
                if let idmap {
                    let host = fd
                    defer { close(host) }
                    fd = try idmapped(host, "\(staging)-lower\(k)", readOnly: true, hostPath, idmap: idmap)
                }
            }
            layers.append(keep(fd))
            topLayer = fd
        }

        var data = "lowerdir=" + layers.reversed().joined(separator: ":")
        var asContainerRoot = false
        switch upper {
        case .none:
            break

        case .temporary:
            // A tmpfs of its own, its upper directory as the top layer's (mode and owner).
            let place = MountPlan.Place.staging("\(staging)-rw")
            let rw = try open(place, create: true, partition: nil)
            // Bounded as the volatile modes' tmpfs are: a container cannot take the host's memory.
            var options = ["mode=0755"] + MountPlan.tmpfsLimits
            if let owner { options += ["uid=\(owner.uid)", "gid=\(owner.gid)"] }
            try mount(source: "tmpfs", on: rw, fsType: "tmpfs", options: options.joined(separator: ","),
                      step: step, what: "mount a tmpfs for the overlay on \(path)")
            let mounted = try openHost(try absolutePath(place), "tmpfs")
            held.append(mounted)
            var st = stat()
            guard fstat(topLayer, &st) == 0,
                  mkdirat(mounted, "upper", 0o755) == 0, mkdirat(mounted, "work", 0o700) == 0,
                  fchownat(mounted, "upper", st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) == 0,
                  fchmodat(mounted, "upper", st.st_mode & 0o7777, 0) == 0,
                  fchownat(mounted, "work", owner?.uid ?? 0, owner?.gid ?? 0, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw MountError(image: image, .failed(operation: "make the overlay's upper directory for \(path)", errno: errno))
            }
            data += ",upperdir=\(try keep(openAt(mounted, "upper"))),workdir=\(try keep(openAt(mounted, "work")))"

        case .host(let upperPath, let workPath):
            let (directory, name) = splitPath(upperPath)
            let parentPath = directory ?? "/"
            let workName = splitPath(workPath).name
            let upperFD = try openHost(upperPath, "upper directory")
            held.append(upperFD)
            let parent = try openHost(parentPath, "upper directory's parent")
            held.append(parent)
            // The work directory goes beside UPPER, on its mount (the kernel's rule).
            var upperMount: UInt64 = 0, parentMount: UInt64 = 0, unique: UInt64 = 0
            guard imgboot_mount_id(upperFD, "", &upperMount, &unique) == 0, imgboot_mount_id(parent, "", &parentMount, &unique) == 0 else {
                throw MountError(image: image, .failed(operation: "--overlay upper directory \(upperPath)", errno: errno))
            }
            guard upperMount == parentMount else {
                throw MountError(image: image, .other("--overlay: the upper directory \(upperPath) is a mount point; its work directory must be made beside it, on its filesystem (use a directory below it)"))
            }
            try makeWorkDirectory(workName, in: parent, path: workPath)
            if let idmap {
                let clone = try idmapped(parent, "\(staging)-upper", readOnly: false, "\(parentPath) (the upper directory's parent, which holds its work directory)", idmap: idmap)
                held.append(clone)
                data += ",upperdir=\(try keep(openAt(clone, name))),workdir=\(try keep(openAt(clone, workName))),userxattr"
                asContainerRoot = true
            } else {
                data += ",upperdir=/proc/self/fd/\(upperFD),workdir=\(try keep(openAt(parent, workName))),userxattr"
            }
        }

        // Where the container sees it: made when missing on a writable tree, as for a bind.
        let target: TreePath
        do {
            target = try TreePath(root: top, path: path, kind: S_IFDIR)
        } catch where error.errno == ENOENT {
            try createDirectory(path, top: top)
            do { target = try TreePath(root: top, path: path, kind: S_IFDIR) } catch {
                throw MountError(image: image, .failed(operation: "--overlay target \(path)", errno: error.code))
            }
        } catch {
            throw MountError(image: image, .failed(operation: "--overlay target \(path)", errno: error.code))
        }
        let what = "mount the overlay on \(path)"
        if asContainerRoot, let idmap {
            let landing = try landingPath(target, step.target)
            let flags = UInt(MS_NODEV) | (step.readOnly ? UInt(MS_RDONLY) : 0)
            guard imgboot_mount_in_userns(idmap, "overlay", flags, data, target.fd) == 0 else {
                throw MountError(image: image, .other("\(what): \(errnoString(errno)) (\(Self.overlayHint))"))
            }
            made.append(landing)
        } else {
            do {
                try mount(source: "overlay", on: target, fsType: "overlay", options: ([data] + step.options).joined(separator: ","),
                          step: step, what: what)
            } catch where error.errno == EINVAL {
                throw MountError(image: image, .other("\(what): \(errnoString(EINVAL)) (\(Self.overlayHint))"))
            }
        }
    }

    static let overlayHint = "each layer must be a directory; the upper one on a filesystem that can hold an overlay's changes, not an overlay itself"

    /// The work directory of a host UPPER, made empty. A directory of root's of that name is
    /// one an earlier run of this machine left (killed before it could remove it: the name is
    /// the machine's, and one machine of a name runs at a time): removed first. Anything else
    /// of that name is left alone and refused.
    private func makeWorkDirectory(_ name: String, in parent: Int32, path: String) throws(MountError) {
        if mkdirat(parent, name, 0o700) == 0 {
            workDirectories.append(path)
            return
        }
        guard errno == EEXIST else { throw MountError(image: image, .failed(operation: "create the overlay's work directory \(path)", errno: errno)) }
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == 0,
              Directory.removeTree(path), mkdirat(parent, name, 0o700) == 0 else {
            throw MountError(image: image, .other("--overlay: \(path) exists and is not a work directory imgboot left; remove it"))
        }
        workDirectories.append(path)
    }

    private func openAt(_ dir: Int32, _ name: String) throws(MountError) -> Int32 {
        let fd = openat(dir, name, Int32(IMGBOOT_O_PATH) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw MountError(image: image, .failed(operation: "open \(name) for the overlay", errno: errno)) }
        return fd
    }
}

/// A random (version 4) UUID, lower case: a boot ID, a container_uuid (systemd makes it the
/// machine ID when the image has none).
public func randomUUID() -> String {
    var bytes = [UInt8](repeating: 0, count: 16)
    _ = bytes.withUnsafeMutableBytes { imgboot_random($0.baseAddress, 16) }
    bytes[6] = bytes[6] & 0x0F | 0x40
    bytes[8] = bytes[8] & 0x3F | 0x80
    let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
    return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]].map { $0.joined() }.joined(separator: "-")
}
