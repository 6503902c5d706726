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
