#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Mount

/// What a container's tree gets around the image, as steps of its mount plan: `--dry-run`
/// shows them with the image's, and one executor applies each phase — imgboot the tree phase
/// (`MountedTree`), the container's first process its own (`container.c`, from
/// `ContainerPlan.operations`).
///
/// The tree phase: /dev (a small tmpfs with the devices of `ContainerDevices`, devpts, shm), /run
/// (with /run/host: the notify socket, a boot ID), /tmp, the host's resolv.conf and timezone,
/// binds of host paths, and sysfs when a user namespace cannot mount it itself. The container
/// phase: what belongs to its new namespaces — /proc, sysfs, cgroup2, mqueue — and what has to
/// come after them: the masks over /proc files, /proc/sys read-only, the console.
public enum ContainerPlan {
    /// The steps for a container of `spec`: `sysInTree` when imgboot mounts sysfs (a user
    /// namespace on the host's network); `cgroup` when the machine has a cgroup2 directory.
    public static func steps(for spec: ContainerSpec, sysInTree: Bool, cgroup: Bool) -> [MountPlan.Step] {
        var steps: [MountPlan.Step] = []
        func tree(_ action: MountPlan.Action, _ path: String, _ options: [String] = []) {
            steps.append(MountPlan.Step(action, .tree(path), options: options, noFollow: true))
        }
        func container(_ action: MountPlan.Action, _ path: String, _ options: [String] = []) {
            steps.append(MountPlan.Step(action, .tree(path), options: options, phase: .container, noFollow: true))
        }
        let api = ["nosuid", "nodev", "noexec"]

        // /proc and /sys belong to the container's namespaces; their mount points are checked
        // (or made, on a writable tree) here, as /dev's is, so that an image whose /proc is a
        // symlink gets the same words as one whose /dev is.
        tree(.mountPoint, "/proc")
        tree(.mountPoint, "/sys")
        if sysInTree { tree(.filesystem(type: "sysfs", source: "sysfs"), "/sys", ["ro"] + api) }

        tree(.tmpfs, "/dev", ["mode=0755", "size=4m", "nr_inodes=64k", "nosuid", "noexec"])
        for d in ContainerDevices.nodes { tree(.characterDevice(major: d.major, minor: d.minor), "/dev/" + d.name) }
        for (name, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)] as [(String, UInt32)] {
            tree(.makeDirectory(mode: mode, like: nil), "/dev/" + name)
        }
        for (link, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            tree(.symlink(target: target), "/dev/" + link)
        }
        tree(.file(.empty, mode: 0o600), "/dev/console")
        // New ptys belong to whoever opens them, in the group tty (5).
        tree(.filesystem(type: "devpts", source: "devpts"), "/dev/pts", ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "nosuid", "noexec"])
        tree(.tmpfs, "/dev/shm", ["mode=1777", "size=25%", "nr_inodes=1m", "nosuid", "nodev"])

        tree(.tmpfs, "/run", ["mode=0755", "size=20%", "nr_inodes=800k", "nosuid", "nodev"])
        tree(.tmpfs, "/tmp", ["mode=1777", "size=25%", "nr_inodes=1m", "nosuid", "nodev"])
        tree(.makeDirectory(mode: 0o755, like: nil), "/run/host")
        tree(.file(.text("imgboot\n"), mode: 0o644), "/run/host/container-manager")
        tree(.file(.randomUUID, mode: 0o644), "/run/host/boot_id")
        tree(.notifySocket, "/run/host/notify")

        // The host's DNS configuration (a private copy: the container cannot write the host's)
        // and timezone. By default never by writing the image: a copy where the tree is
        // volatile, a read-only bind of one over the image's file otherwise.
        let volatileEtc = spec.plan.mode == .yes || spec.plan.mode == .overlay
        let resolv = "/etc/resolv.conf", localtime = "/etc/localtime"
        switch spec.resolvConf {
        case .auto where spec.privateNetwork, .off: break
        case .auto: tree(.file(.hostCopy(resolv, boundFrom: volatileEtc ? nil : .tree("/run/host/resolv.conf")), mode: 0o644), resolv)
        case .delete: tree(.removeFile, resolv)
        case let mode:
            let source = mode.source ?? resolv
            switch mode.handling {
            case .copy: tree(.file(.hostCopyUnlessLink(source), mode: 0o644), resolv)
            case .replace: tree(.file(.hostCopy(source, boundFrom: nil), mode: 0o644), resolv)
            case .bind, nil: tree(.file(.hostCopy(source, boundFrom: .tree("/run/host/resolv.conf")), mode: 0o644), resolv)
            }
        }
        switch spec.timezone {
        case .off: break
        case .auto: tree(.file(.hostCopy(localtime, boundFrom: volatileEtc ? nil : .tree("/run/host/localtime")), mode: 0o644), localtime)
        case .copy: tree(.file(.hostCopyUnlessLink(localtime), mode: 0o644), localtime)
        case .bind: tree(.file(.hostCopy(localtime, boundFrom: .tree("/run/host/localtime")), mode: 0o644), localtime)
        case .symlink: tree(.file(.hostTimezoneLink, mode: 0o777), localtime)
        case .delete: tree(.removeFile, localtime)
        }

        // systemd credentials (nspawn's --set-credential, --load-credential): files of root's
        // alone on a tmpfs of their own, made read-only by the container before its PID 1 runs.
        var credentialIDs = Set<String>()
        let credentials = spec.credentials.reversed().filter { credentialIDs.insert($0.id).inserted }.reversed()
        if !credentials.isEmpty {
            let dir = ContainerSpec.Credential.directory
            tree(.tmpfs, dir, ["mode=0700", "size=1m", "nr_inodes=1k", "nosuid", "nodev", "noexec"])
            for credential in credentials { tree(.file(.secret(credential.value), mode: 0o400), dir + "/" + credential.id) }
        }

        for bind in spec.binds {
            // Under a user namespace, idmapped unless `:noidmap` (the executor knows whether
            // there is one).
            steps.append(MountPlan.Step(.bindHost(bind.source, idmap: bind.idmap ?? true), .tree(bind.target),
                                        options: bind.readOnly ? ["ro"] : []))
        }
        // nspawn's --tmpfs: mode 0755 unless options are given (then the kernel's defaults and
        // what they say); never device nodes. Under a user namespace the executor adds the
        // range's owner, and moves a uid= or gid= given into the range.
        for t in spec.temporaryFilesystems {
            tree(.tmpfs, t.path, (t.options.map { $0.split(separator: ",").map(String.init) } ?? ["mode=0755"]) + ["nodev"])
        }
        // nspawn's --overlay, --overlay-ro: after the binds and tmpfs, as nspawn mounts them after
        // its binds. A host UPPER's work directory is named for the machine (one name per running
        // machine), beside it.
        for o in spec.overlays {
            let upper: MountPlan.OverlayUpper = o.readOnly ? .none : o.upper.map {
                .host($0, work: ContainerSpec.Overlay.workDirectory(upper: $0, run: spec.machine))
            } ?? .temporary
            tree(.overlayOf(lower: o.lower, upper: upper), o.target, o.readOnly ? ["ro", "nodev"] : ["nodev"])
        }

        container(.filesystem(type: "proc", source: "proc"), "/proc", api)
        for file in ["kcore", "keys", "timer_list", "kallsyms"] { container(.cover(with: .tree("/dev/null")), "/proc/" + file) }
        // A boot ID of the machine's own, not the host's.
        container(.cover(with: .tree("/run/host/boot_id")), "/proc/sys/kernel/random/boot_id")
        container(.makeReadOnly, "/proc/sys")
        container(.makeReadOnly, "/proc/sysrq-trigger")
        if !credentials.isEmpty { container(.makeReadOnly, ContainerSpec.Credential.directory) }
        if !sysInTree { container(.filesystem(type: "sysfs", source: "sysfs"), "/sys", ["ro"] + api) }
        if cgroup { container(.filesystem(type: "cgroup2", source: "cgroup2"), "/sys/fs/cgroup", api) }
        container(.filesystem(type: "mqueue", source: "mqueue"), "/dev/mqueue", api)
        container(.cover(with: .console), "/dev/console")
        return steps
    }
}

extension ContainerPlan {
    /// The container phase of `plan` as the flat array of operations its first process carries
    /// out (`struct imgboot_mount_op`), kept alive as long as this object. `steps[i]` is the
    /// step of operation i, to name it when it fails.
    final class Operations {
        let steps: [MountPlan.Step]
        let pointer: UnsafeMutablePointer<imgboot_mount_op>
        private var strings: [UnsafeMutablePointer<CChar>] = []

        init(_ plan: MountPlan) throws(BootError) {
            steps = plan.steps(.container)
            pointer = .allocate(capacity: max(1, steps.count))
            for (i, step) in steps.enumerated() {
                guard case .tree(let path) = step.target else { throw BootError(image: "plan", "\(step.line): not in the tree") }
                var op = imgboot_mount_op()
                op.target = try keep(String(path.drop { $0 == "/" }))
                switch step.action {
                case .filesystem(let type, let source):
                    let (flags, data) = Self.split(step.options)
                    op.kind = Int32(IMGBOOT_OP_MOUNT.rawValue)
                    op.source = try keep(source)
                    op.fstype = try keep(type)
                    op.flags = flags
                    op.data = data.isEmpty ? nil : try keep(data)
                case .cover(let with):
                    op.kind = Int32(IMGBOOT_OP_COVER.rawValue)
                    switch with {
                    case .tree(let source): op.source = try keep(String(source.drop { $0 == "/" }))
                    case .console: op.source = nil
                    default: throw BootError(image: "plan", "\(step.line): covers with what is not in the tree")
                    }
                case .makeReadOnly:
                    op.kind = Int32(IMGBOOT_OP_READ_ONLY.rawValue)
                default:
                    throw BootError(image: "plan", "\(step.line): not something the container does")
                }
                (pointer + i).initialize(to: op)
            }
        }

        deinit {
            pointer.deinitialize(count: steps.count)
            pointer.deallocate()
            strings.forEach { free($0) }
        }

        var count: UInt32 { UInt32(steps.count) }

        private func keep(_ string: String) throws(BootError) -> UnsafePointer<CChar> {
            guard let copy = strdup(string) else { throw BootError(image: "plan", "copy \"\(string)\"", errno: errno) }
            strings.append(copy)
            return UnsafePointer(copy)
        }

        /// mount(8)-style options as mount(2)'s flags and the filesystem's data string.
        static func split(_ options: [String]) -> (flags: UInt, data: String) {
            let flags: [String: UInt] = ["ro": UInt(MS_RDONLY), "nosuid": UInt(MS_NOSUID), "nodev": UInt(MS_NODEV), "noexec": UInt(MS_NOEXEC)]
            var mask: UInt = 0
            var data: [String] = []
            for option in options {
                if let flag = flags[option] { mask |= flag } else { data.append(option) }
            }
            return (mask, data.joined(separator: ","))
        }
    }
}
