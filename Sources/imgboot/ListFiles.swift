import ArgumentParser
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    struct ListFiles: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List the files in an image's tree (systemd-dissect --list), or describe them as mtree(5) (--mtree).",
            discussion: """
                The image's partitions are mounted read-only where only imgboot can see them \
                (never in the host's mount table) and assembled as the image says (/usr, /home, \
                /srv, /var on the root). One line per file below PATH, relative to it: a \
                directory with a / after its name, then what it holds, sorted by name. Paths \
                are resolved inside the image: its symlinks never lead out of it.

                EXAMPLES:
                  imgboot ls disk.raw
                  imgboot ls disk.raw /etc
                  imgboot ls --mtree disk.raw /usr/bin > usr-bin.mtree
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(help: "The directory in the image to list.")
        var path: String = "/"

        @Flag(help: "Print an mtree(5) specification: type, mode, uid, gid, size and SHA-256 of regular files, link targets.")
        var mtree = false

        func run() throws {
            let logger = global.makeLogger()
            try requireRoot(image, "reading an image's files")
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
            let tree = try ImageTree.forCommand(dissected, logger: logger)
            let out = OutputFile.standardOutput(image: image)
            func emit(_ line: String) throws { try out.write(Array((line + "\n").utf8)) }
            do {
                if mtree {
                    try TreeListing.mtree(tree, path: path, emit: emit) { logger.warning("\(image): \($0)") }
                } else {
                    try TreeListing.list(tree, path: path, emit: emit)
                }
                try out.flush()
            } catch {
                try? out.flush()  // what was listed before the error
                try? tree.close()  // read-only: the error that matters is the one thrown
                throw error
            }
            try tree.close()
        }
    }
}
