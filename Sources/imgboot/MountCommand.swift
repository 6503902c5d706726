import ArgumentParser
import Attach
import Dissect
import Boot
import Mount

#if canImport(Glibc)
import Glibc
import Support
#endif

extension IMGBoot {
    struct MountImage: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mount",
            abstract: "Mount an image's tree on a directory of the host, to browse it.",
            discussion: """
                Like `systemd-dissect --mount`: the partitions are mounted where the image says \
                (root on DIR, /usr, /home, /srv, ...) in the host's mount namespace. \
                `imgboot umount DIR` takes it all down again. Default --volatile=no: the image \
                is written only if you write to the tree; add --read-only to prevent that. Every \
                mount of the tree is nosuid and nodev: a setuid program in the image gives no \
                one its owner's rights (see --suid).

                EXAMPLES:
                  imgboot mount --read-only disk.raw /mnt browse, change nothing
                  imgboot mount disk.raw /mnt             edit the image's files
                  imgboot mount --volatile=overlay disk.raw /mnt    changes in RAM
                  imgboot mount --dry-run disk.raw /mnt   the mount plan only
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var layering: LayeringOptions

        @Argument(help: "The raw disk image (or block device) to mount.", completion: IMGBoot.imageCompletion)
        var image: String

        @Argument(help: "The directory to mount it on (must exist).", completion: .directory)
        var directory: String

        @Flag(help: ArgumentHelp(
            "Honour set-user-ID bits and file capabilities in the tree (nodev stays). Unsafe with an image you do not trust: its setuid-root programs give any local user root."))
        var suid = false

        @Flag(help: "Print the mount plan and do nothing.")
        var dryRun = false

        func validate() throws { try layering.validate() }

        func run() throws {
            let logger = global.makeLogger()
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
            var options = layering.options(default: .no)
            options.nosuid = !suid
            let plan = try MountPlan.make(for: dissected, options: options)
            if dryRun {
                print(printableLines(plan.description))
                return
            }
            try requireRoot(image, "mounting")
            let dir = try existingDirectory(directory)
            guard dir != "/" else { throw CommandError(description: "/: imgboot mounts an image on a directory, never on the host's root") }
            // Ctrl-C while mounting waits until the tree is whole, then takes it down again.
            let signals = Signals()
            let writable = plan.attachments.contains { !$0.readOnly }
            try StateStore.prepare([.trees], subject: image)
            let serial = try StateStore.lock(StateStore.mountLock, subject: image, stop: signals)
            defer { close(serial) }
            try MountTarget.requireFree(dir)
            if let other = try MountRecord.conflict(image: image, writable: writable, subject: image, stop: signals) {
                throw CommandError(description: "\(image): image is busy: mounted\(other.writable ? " writable" : "") on \(other.directory)")
            }
            let (tree, attached) = try ImageMount.mount(dissected, plan: plan, at: dir, logger: logger)
            var keeper: ProcessIdentity?
            do {
                // The image stays locked (for nspawn too) while the tree is mounted: by a
                // process that outlives this one.
                let pid = try attached.keepLocked()
                keeper = ProcessIdentity(pid: pid)
                // Without its record, `imgboot umount` would refuse the tree: no record, no tree.
                try MountRecord.make(directory: dir, image: image, devices: attached.devices.map(\.device.identity),
                                     writable: writable, keeper: keeper).save(stop: signals)
                try signals.checkpoint(image)
            } catch {
                try ImageUnmount.unmount(dir, requireRecord: false, logger: logger)
                if let keeper { _ = LockKeeperProcess.end(keeper) }
                throw error
            }
            for warning in tree.warnings { writeError("imgboot: " + printable("\(image): \(warning)")) }
        }
    }

    struct UnmountImage: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "umount",
            abstract: "Unmount a tree that `imgboot mount` mounted, and wait for its loop devices to go.",
            discussion: """
                Only a tree imgboot mount made: a directory it has no record of, or where the \
                mount it made has been replaced or mounted over, is refused and nothing is \
                unmounted.

                EXAMPLES:
                  imgboot umount /mnt
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The directory the image is mounted on.", completion: .directory)
        var directory: String

        func run() throws {
            try requireRoot(directory, "unmounting")
            let dir = try existingDirectory(directory)
            try ImageUnmount.unmount(dir, logger: global.makeLogger())
        }
    }
}

/// Options that choose how the tree is layered (`mount`, `run`, `boot`, `smoke`).
struct LayeringOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "How much may change (default: no for mount, overlay for run, boot and smoke; a bare --volatile means yes):",
        valueName: "mode"))
    var volatile: VolatileMode?

    @Flag(help: "Mount everything read-only (only without a volatile mode, which never writes the image anyway).")
    var readOnly = false

    func validate() throws {
        if readOnly, let volatile, volatile.isVolatile {
            throw ValidationError("--read-only with --volatile=\(volatile): a volatile mode already keeps the image read-only")
        }
    }

    /// `--read-only` without `--volatile` means the image as it is, read-only (as in nspawn),
    /// even where the default mode is a volatile one (`run`, `boot`).
    func options(default mode: VolatileMode) -> MountOptions {
        MountOptions(volatile: volatile ?? (readOnly ? .no : mode), readOnly: readOnly)
    }
}

extension VolatileMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
    public static var allValueStrings: [String] { ["no", "yes", "state", "overlay"] }
    // Listed by swift-argument-parser under the option, each once with what it means.
    public static var allValueDescriptions: [String: String] {
        [
            "no": "the image as it is (written, unless --read-only)",
            "yes": "a fresh tmpfs root with the image's /usr read-only",
            "state": "the image read-only, with a fresh /var",
            "overlay": "the image below, changes kept in RAM",
        ]
    }
}

/// A failure of imgboot's own about the command line's paths or privileges.
struct CommandError: IMGBootError {
    let description: String
}

/// Root or a one-line error that says why: `why` names what the command needs root for.
func requireRoot(_ subject: String, _ what: String, why: String = "loop devices, mounts and namespaces") throws {
    guard geteuid() == 0 else {
        throw CommandError(description: "\(subject): \(what) needs root (\(why))")
    }
}

/// A timeout is a positive, finite number of seconds.
func validateTimeout(_ seconds: Double, option: String = "--timeout") throws {
    guard seconds.isFinite, seconds > 0 else {
        throw ValidationError("\(option) \(seconds): must be a positive number of seconds")
    }
}

/// The canonical path of an existing directory, or a one-line error.
func existingDirectory(_ path: String) throws -> String {
    guard let resolved = realpath(path, nil) else {
        throw CommandError(description: "\(path): \(errno == ENOENT ? "no such directory" : errnoString(errno))")
    }
    defer { free(resolved) }
    let canonical = String(cString: resolved)
    var st = stat()
    guard stat(canonical, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
        throw CommandError(description: "\(path): not a directory")
    }
    return canonical
}
