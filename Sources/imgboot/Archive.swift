import ArgumentParser
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
    struct Archive: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "archive",
            abstract: "Write the image's tree as a tar archive (systemd-dissect --make-archive).",
            discussion: """
                A POSIX (pax) tar of every file in the image's tree, its partitions assembled as \
                the image says: types, modes, numeric owners, mtimes, symlinks, hard links and \
                device nodes kept (not extended attributes or ACLs; sockets left out). Entries \
                are named ./PATH. The archive gets its name only when complete, replacing a file \
                of that name: a failure leaves nothing. The image is only read.

                EXAMPLES:
                  imgboot archive disk.raw disk.tar
                  imgboot archive disk.raw - | tar -tvf -
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(help: "The tar file to write; - for standard output.")
        var output: String

        func run() throws {
            let logger = global.makeLogger()
            try requireRoot(image, "reading an image's files")
            if output == "-" && isatty(1) == 1 {
                throw CommandError(image, "standard output is a terminal; give a file name or redirect it")
            }
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
            // Before the image is mounted: a name that cannot be written is refused at once.
            let out = output == "-" ? OutputFile.standardOutput(image: image) : try OutputFile.replacing(output, image: image)
            let tree = try ImageTree.forCommand(dissected, logger: logger)
            do {
                try TarArchive.write(tree, to: out) { logger.warning("\(image): \($0)") }
                try out.commit()
            } catch {
                try? tree.close()  // read-only: the error that matters is the one thrown
                throw error
            }
            try tree.close()
        }
    }
}
