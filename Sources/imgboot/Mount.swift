import ArgumentParser
import Attach
import Dissect
import Boot
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

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
            guard dir != "/" else { throw CommandError("/", "imgboot mounts an image on a directory, never on the host's root") }
            // Ctrl-C while mounting waits until the tree is whole, then takes it down again.
            let tree = try ImageMount.mountRecorded(dissected, plan: plan, at: dir, stop: Signals(), logger: logger)
            for warning in tree.warnings { writeError("imgboot: " + printable("\(image): \(warning)")) }
        }
    }
}
