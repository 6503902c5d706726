import Dissect

/// The mounts that make an image's tree, in order: a pure function of the dissected image and
/// the options, so that every mode and image shape is unit-tested without root, and so that
/// `--dry-run` can show exactly what will happen.
public struct MountPlan: Sendable, Equatable, CustomStringConvertible {
    /// Where a step acts.
    public enum Place: Sendable, Equatable, Hashable, CustomStringConvertible {
        /// A path inside the tree: "/", "/usr", "/var/tmp".
        case tree(String)
        /// A scratch directory of imgboot's own, outside the tree; detached before the tree is
        /// handed on. "lower-1", "rw/upper-1".
        case staging(String)
        /// A path of the host's (a --bind source).
        case host(String)
        /// The container's console: the pseudo-terminal imgboot relays, or /dev/null without one.
        case console

        public var description: String {
            switch self {
            case .tree(let path): path
            case .staging(let path): "[staging]/\(path)"
            case .host(let path): "[host]\(path)"
            case .console: "[the console]"
            }
        }
    }

    /// Who performs a step, and where. nspawn's mount table marks the same distinction
    /// (`MOUNT_IN_USERNS`).
    public enum Phase: String, Sendable, Equatable, Hashable {
        /// imgboot, as the host's root, in the container's mount namespace before the container
        /// starts (or, for `imgboot mount`, in the host's): the image's filesystems, the volatile
        /// layers, what the tree needs of imgboot's (/dev, /run, binds).
        case tree
        /// The container's first process, in its own namespaces (its user namespace included),
        /// before it pivots into the tree: what belongs to those namespaces (/proc, cgroup2,
        /// mqueue) and what must be done after them (masks, read-only remounts).
        case container
    }

    /// What a file a step creates holds.
    public enum FileContents: Sendable, Equatable {
        /// Nothing: a mount point for a file bind.
        case empty
        case text(String)
        /// A random (version 4) UUID and a newline, made when the step runs: a boot ID.
        case randomUUID
        /// A copy of the host's file `path`, read when the step runs (resolv.conf, localtime),
        /// never by writing the image. `boundFrom` nil: the directory is volatile (a tmpfs or
        /// an overlay in RAM), and the copy is written as a file of its own, replacing the
        /// image's. Otherwise the copy is written at `boundFrom` and bound read-only over the
        /// image's own regular file; an image whose file is a symlink (the OS manages it) or
        /// missing keeps what it has.
        case hostCopy(String, boundFrom: Place?)
        /// A copy of the host's file `path` written as the file here — unless the tree has
        /// something else than a regular file here (a symlink the OS manages is left alone), or
        /// is read-only (nspawn's `copy-` modes).
        case hostCopyUnlessLink(String)
        /// These bytes, which `--dry-run` does not show (a credential).
        case secret([UInt8])
        /// A symlink to the host's timezone in the tree's zoneinfo
        /// (`../usr/share/zoneinfo/ZONE`, ZONE from the host's /etc/localtime link), replacing
        /// what is here; nothing when the host's zone is not a zoneinfo link, the tree has no
        /// such zone file, or it is read-only (nspawn's `--timezone=symlink`).
        case hostTimezoneLink
    }

    public enum Action: Sendable, Equatable {
        /// Mount the loop device of partition `number`, which holds a `fsType` filesystem.
        case partition(number: Int, fsType: String)
        /// A fresh tmpfs.
        case tmpfs
        /// Bind-mount `source` here.
        case bind(source: Place)
        /// An overlayfs of `lower` below and `upper` (with `work`) above.
        case overlay(lower: Place, upper: Place, work: Place)
        /// A directory on a tmpfs of imgboot's own, with the mode and owner of `like` if given.
        case makeDirectory(mode: UInt32, like: Place?)
        /// Refuse unless the tree here has a merged /usr (`/bin` missing or a symlink).
        case requireMergedUsr
        /// The base filesystem on a fresh tmpfs root: top-level directories, and `bin`, `sbin`,
        /// `lib`, `lib64` as symlinks into `usr/` where the target exists.
        case baseFilesystem
        /// Lazily unmount a staging mount: what the tree took from it stays alive.
        case detach
        /// A fresh instance of a kernel filesystem (proc, sysfs, devpts, mqueue, cgroup2), with
        /// `source` as mount(8)'s source field.
        case filesystem(type: String, source: String)
        /// A character device node, mode 0666.
        case characterDevice(major: UInt32, minor: UInt32)
        /// A symlink to `target`.
        case symlink(target: String)
        /// Remove the file here, if there is one and the tree is writable (never a directory).
        case removeFile
        /// A regular file (mode 0644 unless `mode`), created with `contents`.
        case file(FileContents, mode: UInt32)
        /// The notify socket (an AF_UNIX datagram socket bound here); its descriptor goes to the
        /// supervisor.
        case notifySocket
        /// Cover the file here with `with` (a bind of it over the file: /dev/null to mask a file
        /// of /proc, the console over /dev/console). Skipped where the file does not exist (a
        /// kernel without /proc/kcore).
        case cover(with: Place)
        /// Make what is here read-only (a bind of it onto itself, remounted read-only); skipped
        /// where it does not exist.
        case makeReadOnly
        /// A real directory here to mount on: checked (never a symlink), or made on a writable
        /// tree, refused on a read-only one.
        case mountPoint
        /// Bind the host's path `source` here (--bind): recursively, or — `idmap` — one mount,
        /// idmapped into the container's user namespace; read-only when the options say `ro`.
        /// The target (a directory, or a file for a file) is made when missing on a writable tree.
        case bindHost(String, idmap: Bool)
        /// An overlay of directories here (--overlay, --overlay-ro): `lower` bottom first, under
        /// `upper`. The target is made when missing on a writable tree, as for a bind.
        case overlayOf(lower: [OverlayLayer], upper: OverlayUpper)
    }

    /// A lower layer of `overlayOf`: a host directory (idmapped into the container's user
    /// namespace, where there is one), or a directory of the tree (nspawn's `+PATH`).
    public enum OverlayLayer: Sendable, Equatable, CustomStringConvertible {
        case host(String)
        case tree(String)

        public var description: String {
            switch self {
            case .host(let path): "the host's \(path)"
            case .tree(let path): "the tree's \(path)"
            }
        }
    }

    /// Where an overlay's changes go.
    public enum OverlayUpper: Sendable, Equatable {
        /// Nowhere: the overlay is read-only.
        case none
        /// A tmpfs of imgboot's, gone with the container.
        case temporary
        /// A host directory, with the overlay's work directory `work` (a path) made beside it
        /// (the kernel needs both on one filesystem) and removed when the container ends.
        case host(String, work: String)
    }

    public struct Step: Sendable, Equatable {
        public var action: Action
        public var target: Place
        /// Mount options, as passed to mount ("ro", "nodev", "norecovery", "mode=0755").
        public var options: [String]
        /// The partition the step is about, for messages ("partition 3 (srv)").
        public var partition: String?
        /// Its number: the steps of one partition (its mount, its overlay) go together.
        public var partitionNumber: Int?
        /// A failure only warns: an ESP or XBOOTLDR whose vfat the kernel may lack must not stop a boot.
        public var optional: Bool
        public var phase: Phase
        /// The target must be what it is, not a symlink to it: API filesystems and what imgboot
        /// puts in the tree go on real directories only (a symlink there is refused, never
        /// followed). The image's own mount points follow symlinks, inside the image.
        public var noFollow: Bool

        public init(_ action: Action, _ target: Place, options: [String] = [], partition: String? = nil,
                    partitionNumber: Int? = nil, optional: Bool = false, phase: Phase = .tree, noFollow: Bool = false) {
            self.action = action
            self.target = target
            self.options = options
            self.partition = partition
            self.partitionNumber = partitionNumber
            self.optional = optional
            self.phase = phase
            self.noFollow = noFollow
        }

        public var readOnly: Bool { options.contains("ro") }

        /// The step as one line of `--dry-run`.
        public var line: String {
            let opts = options.isEmpty ? "" : " (\(options.joined(separator: ",")))"
            let suffix = optional ? ", if the kernel can" : ""
            switch action {
            case .partition(let number, let fs):
                return "mount \(partition ?? "partition \(number)") \(fs) on \(target)\(opts)\(suffix)"
            case .tmpfs:
                return "mount tmpfs on \(target)\(opts)"
            case .bind(let source):
                return "bind \(source) on \(target)\(opts)"
            case .overlay(let lower, let upper, let work):
                return "mount overlay on \(target) (lower \(lower), upper \(upper), work \(work)\(options.isEmpty ? "" : ", " + options.joined(separator: ",")))\(suffix)"
            case .makeDirectory(let mode, let like):
                return "mkdir \(target) (mode \(String(mode, radix: 8))\(like.map { ", owner and mode of \($0)" } ?? ""))"
            case .requireMergedUsr:
                return "check \(target) has a merged /usr"
            case .baseFilesystem:
                return "create the base filesystem on \(target)"
            case .detach:
                return "detach \(target)"
            case .filesystem(let type, _):
                return "mount \(type) on \(target)\(opts)"
            case .characterDevice(let major, let minor):
                return "mknod \(target) (character device \(major):\(minor), mode 666)"
            case .symlink(let link):
                return "symlink \(target) -> \(link)"
            case .removeFile:
                return "remove \(target), if it is there and the tree is writable"
            case .file(let contents, let mode):
                switch contents {
                case .empty: return "create \(target) (empty, mode \(String(mode, radix: 8)))"
                case .text(let text):
                    let shown = text.hasSuffix("\n") ? String(text.dropLast()) : text
                    return "create \(target) (\"\(shown.replacingNewlines)\"\(text.hasSuffix("\n") ? " and a newline" : ""), mode \(String(mode, radix: 8)))"
                case .randomUUID: return "create \(target) (a random UUID, mode \(String(mode, radix: 8)))"
                case .hostCopy(let path, nil): return "write a copy of the host's \(path) at \(target)"
                case .hostCopy(let path, let from?):
                    return "bind a copy of the host's \(path) (at \(from)) read-only over \(target), if the image has a regular file there"
                case .secret(let bytes):
                    return "create \(target) (\(bytes.count) bytes, not shown, mode \(String(mode, radix: 8)))"
                case .hostCopyUnlessLink(let path):
                    return "write a copy of the host's \(path) at \(target), unless the tree has a link there or is read-only"
                case .hostTimezoneLink:
                    return "symlink \(target) -> the host's zone in the tree's /usr/share/zoneinfo, if it has it"
                }
            case .notifySocket:
                return "bind the notify socket on \(target)"
            case .cover(let with):
                return "cover \(target) with \(with), if it exists"
            case .makeReadOnly:
                return "make \(target) read-only, if it exists"
            case .mountPoint:
                return "check \(target) is a real directory (made on a writable tree)"
            case .bindHost(let path, let idmap):
                return "bind the host's \(path) on \(target)\(opts)\(idmap ? ", idmapped into the container" : "")"
            case .overlayOf(let lower, let upper):
                let layers = lower.reversed().map(\.description).joined(separator: " over ")
                let changes = switch upper {
                case .none: "read-only"
                case .temporary: "changes in a tmpfs"
                case .host(let path, let work): "changes in the host's \(path), work directory \(work)"
                }
                return "mount an overlay of \(layers) on \(target)\(opts) (\(changes))"
            }
        }
    }

    /// A partition to give a loop device.
    public struct Attachment: Sendable, Equatable {
        public var number: Int
        public var readOnly: Bool
    }

    public var mode: VolatileMode
    public var attachments: [Attachment]
    public var steps: [Step]

    /// Size limits of imgboot's own tmpfs mounts, so that a payload filling one cannot hurt the host.
    public static let tmpfsLimits = ["size=25%", "nr_inodes=1m"]

    /// The plan for `image` under `options`.
    public static func make(for image: DissectedImage, options: MountOptions) throws(MountError) -> MountPlan {
        if options.readOnly && options.volatile.isVolatile {
            throw MountError(image: image.image, .invalidOptions(
                "--read-only with --volatile=\(options.volatile): a volatile mode already keeps the image read-only"))
        }
        var builder = Builder(image: image)
        let used = image.usedPartitions.sorted(by: MountPlan.mountOrder)
        let root = used.first { $0.mountPoint == "/" }

        switch options.volatile {
        case .no:
            guard root != nil else { throw noRootError(image) }
            for p in used { builder.mount(p, at: .tree(mountPoint(p)), readOnly: options.readOnly || p.readOnly) }

        case .state:
            guard root != nil else { throw noRootError(image) }
            for p in used where p.designator != .var && p.designator != .tmp {
                builder.mount(p, at: .tree(mountPoint(p)), readOnly: true)
            }
            builder.step(.tmpfs, .tree("/var"), options: ["mode=0755"] + tmpfsLimits)
            builder.step(.makeDirectory(mode: 0o1777, like: nil), .tree("/var/tmp"))

        case .yes:
            let usr = used.first { $0.designator == .usr }
            guard let source = usr ?? root else {
                throw MountError(image: image.image, .noRoot("no root or /usr partition to take /usr from" + noRootDetail(image)))
            }
            builder.step(.tmpfs, .tree("/"), options: ["mode=0755"] + tmpfsLimits)
            builder.step(.makeDirectory(mode: 0o755, like: nil), .tree("/usr"))
            if source.designator == .usr {
                builder.mount(source, at: .tree("/usr"), readOnly: true)
            } else {
                builder.mount(source, at: .staging("root"), readOnly: true)
                builder.step(.requireMergedUsr, .staging("root"))
                builder.step(.bind(source: .staging("root/usr")), .tree("/usr"), options: ["ro", "nodev"])
                builder.step(.detach, .staging("root"))
            }
            builder.step(.baseFilesystem, .tree("/"))
            for p in used where p.designator == .home || p.designator == .srv {
                builder.mount(p, at: .tree(mountPoint(p)), readOnly: true)
            }

        case .overlay:
            guard root != nil else { throw noRootError(image) }
            builder.step(.tmpfs, .staging("rw"), options: ["mode=0755"] + tmpfsLimits)
            for p in used {
                let lower = Place.staging("lower-\(p.number)")
                let upper = Place.staging("rw/upper-\(p.number)"), work = Place.staging("rw/work-\(p.number)")
                let optional = isOptional(p)
                builder.mount(p, at: lower, readOnly: true)
                builder.step(.makeDirectory(mode: 0o755, like: lower), upper, partition: p, optional: optional)
                builder.step(.makeDirectory(mode: 0o700, like: nil), work, partition: p, optional: optional)
                builder.step(.overlay(lower: lower, upper: upper, work: work), .tree(mountPoint(p)),
                             options: ["nodev"], partition: p, optional: optional)
            }
            for p in used {
                builder.step(.detach, .staging("lower-\(p.number)"), partition: p, optional: isOptional(p))
            }
            builder.step(.detach, .staging("rw"))
        }
        var steps = builder.steps
        if options.nosuid { steps = steps.map(MountPlan.withoutSetuid) }
        return MountPlan(mode: options.volatile, attachments: builder.attachments, steps: steps)
    }

    /// `step` with `nodev` and `nosuid` among its options if it mounts anything (staging mounts
    /// included: an overlay's lower layer is reachable while the tree is set up).
    static func withoutSetuid(_ step: Step) -> Step {
        switch step.action {
        case .partition, .tmpfs, .bind, .overlay:
            var step = step
            if !step.options.contains("nodev") { step.options.append("nodev") }
            if !step.options.contains("nosuid"), let nodev = step.options.firstIndex(of: "nodev") {
                step.options.insert("nosuid", at: nodev + 1)  // side by side, as mount(8) lists them
            }
            return step
        default:
            return step  // creates files or checks; mounts nothing of the image's
        }
    }

    /// Parents before children: "/" before "/var" before "/var/tmp".
    static func mountOrder(_ a: Partition, _ b: Partition) -> Bool {
        let (x, y) = (mountPoint(a), mountPoint(b))
        let (dx, dy) = (depth(x), depth(y))
        return dx != dy ? dx < dy : x < y
    }

    static func depth(_ path: String) -> Int { path.split(separator: "/").count }

    static func mountPoint(_ p: Partition) -> String { p.mountPoint ?? "/" }

    /// ESP and XBOOTLDR are vfat, which some kernels (this one) lack: their failure only warns.
    static func isOptional(_ p: Partition) -> Bool { p.designator == .esp || p.designator == .xbootldr }

    /// Options for mounting a partition's filesystem: never device nodes from the image, and
    /// when read-only, nothing that writes (no journal replay).
    public static func mountOptions(fsType: String, readOnly: Bool) -> [String] {
        guard readOnly else { return ["rw", "nodev"] }
        switch fsType {
        case "ext4", "xfs": return ["ro", "nodev", "norecovery"]
        case "btrfs": return ["ro", "nodev", "rescue=nologreplay"]
        default: return ["ro", "nodev"]
        }
    }

    static func noRootError(_ image: DissectedImage) -> MountError {
        MountError(image: image.image, .noRoot("no root partition to mount" + noRootDetail(image)))
    }

    /// Why there is no root, from what dissection noticed.
    static func noRootDetail(_ image: DissectedImage) -> String {
        let reasons = image.rootReasons
        return reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"
    }

    struct Builder {
        let image: DissectedImage
        var attachments: [Attachment] = []
        var steps: [Step] = []

        mutating func step(_ action: Action, _ target: Place, options: [String] = [], partition: Partition? = nil, optional: Bool = false) {
            steps.append(Step(action, target, options: options, partition: partition?.displayName,
                              partitionNumber: partition?.number, optional: optional))
        }

        mutating func mount(_ p: Partition, at target: Place, readOnly: Bool) {
            let fs = p.fsType ?? ""
            let ro = readOnly || PartitionSelection.readOnlyFilesystems.contains(fs)
            attachments.append(Attachment(number: p.number, readOnly: ro))
            step(.partition(number: p.number, fsType: fs), target,
                 options: MountPlan.mountOptions(fsType: fs, readOnly: ro),
                 partition: p, optional: MountPlan.isOptional(p))
        }
    }

    /// The plan as `--dry-run` prints it: one line per attachment and step; the steps the
    /// container's first process performs are marked "in the container:".
    public var description: String {
        var lines: [String] = []
        for a in attachments {
            lines.append("attach partition \(a.number) to a loop device\(a.readOnly ? " (read-only)" : "")")
        }
        for s in steps {
            lines.append((s.phase == .container ? "in the container: " : "") + s.line)
        }
        return lines.joined(separator: "\n")
    }

    /// The steps of one phase, in order.
    public func steps(_ phase: Phase) -> [Step] { steps.filter { $0.phase == phase } }

    /// This plan with `more` steps after its own.
    public func appending(_ more: [Step]) -> MountPlan {
        MountPlan(mode: mode, attachments: attachments, steps: steps + more)
    }
}

extension String {
    /// One line for a plan: a newline shown as "\\n".
    var replacingNewlines: String { split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\\n") }
}
