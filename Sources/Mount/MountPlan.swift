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

        public var description: String {
            switch self {
            case .tree(let path): path
            case .staging(let path): "[staging]/\(path)"
            }
        }
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
    }

    public struct Step: Sendable, Equatable {
        public var action: Action
        public var target: Place
        /// Mount options, as passed to mount ("ro", "nodev", "norecovery", "mode=0755").
        public var options: [String]
        /// The partition the step mounts, for messages ("partition 3 (srv)").
        public var partition: String?
        /// A failure only warns: an ESP or XBOOTLDR whose vfat the kernel may lack must not stop a boot.
        public var optional: Bool

        public init(_ action: Action, _ target: Place, options: [String] = [], partition: String? = nil, optional: Bool = false) {
            self.action = action
            self.target = target
            self.options = options
            self.partition = partition
            self.optional = optional
        }

        public var readOnly: Bool { options.contains("ro") }
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
                let (name, optional) = (p.displayName, isOptional(p))
                builder.mount(p, at: lower, readOnly: true)
                builder.step(.makeDirectory(mode: 0o755, like: lower), upper, partition: name, optional: optional)
                builder.step(.makeDirectory(mode: 0o700, like: nil), work, partition: name, optional: optional)
                builder.step(.overlay(lower: lower, upper: upper, work: work), .tree(mountPoint(p)),
                             options: ["nodev"], partition: name, optional: optional)
            }
            for p in used {
                builder.step(.detach, .staging("lower-\(p.number)"), partition: p.displayName, optional: isOptional(p))
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
        case .makeDirectory, .requireMergedUsr, .baseFilesystem, .detach:
            return step
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
        let reasons = image.warnings.filter { $0.contains("root") }
        return reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"
    }

    struct Builder {
        let image: DissectedImage
        var attachments: [Attachment] = []
        var steps: [Step] = []

        mutating func step(_ action: Action, _ target: Place, options: [String] = [], partition: String? = nil, optional: Bool = false) {
            steps.append(Step(action, target, options: options, partition: partition, optional: optional))
        }

        mutating func mount(_ p: Partition, at target: Place, readOnly: Bool) {
            let fs = p.fsType ?? ""
            let ro = readOnly || PartitionSelection.readOnlyFilesystems.contains(fs)
            attachments.append(Attachment(number: p.number, readOnly: ro))
            step(.partition(number: p.number, fsType: fs), target,
                 options: MountPlan.mountOptions(fsType: fs, readOnly: ro),
                 partition: p.displayName, optional: MountPlan.isOptional(p))
        }
    }

    /// The plan as `--dry-run` prints it: one line per attachment and step.
    public var description: String {
        var lines: [String] = []
        for a in attachments {
            lines.append("attach partition \(a.number) to a loop device\(a.readOnly ? " (read-only)" : "")")
        }
        for s in steps {
            let opts = s.options.isEmpty ? "" : " (\(s.options.joined(separator: ",")))"
            let suffix = s.optional ? ", if the kernel can" : ""
            switch s.action {
            case .partition(let number, let fs):
                lines.append("mount \(s.partition ?? "partition \(number)") \(fs) on \(s.target)\(opts)\(suffix)")
            case .tmpfs:
                lines.append("mount tmpfs on \(s.target)\(opts)")
            case .bind(let source):
                lines.append("bind \(source) on \(s.target)\(opts)")
            case .overlay(let lower, let upper, let work):
                lines.append("mount overlay on \(s.target) (lower \(lower), upper \(upper), work \(work)\(s.options.isEmpty ? "" : ", " + s.options.joined(separator: ",")))\(suffix)")
            case .makeDirectory(let mode, let like):
                lines.append("mkdir \(s.target) (mode \(String(mode, radix: 8))\(like.map { ", owner and mode of \($0)" } ?? ""))")
            case .requireMergedUsr:
                lines.append("check \(s.target) has a merged /usr")
            case .baseFilesystem:
                lines.append("create the base filesystem on \(s.target)")
            case .detach:
                lines.append("detach \(s.target)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
