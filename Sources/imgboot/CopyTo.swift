import ArgumentParser
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    struct CopyTo: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy-to",
            abstract: "Copy a file or a directory tree into an image (systemd-dissect --copy-to).",
            usage: "imgboot copy-to <image> [<source>] <path>",
            discussion: """
                Writes the image: it is locked for imgboot alone, and refused while in use \
                (mounted by imgboot mount, or a running machine's). Only the partition that \
                PATH lies on is mounted writable (a read-only one — GPT flag 60, squashfs, \
                erofs — is refused); every other partition is read-only, and no journal of one \
                is replayed. PATH is resolved inside the image, never out of it, and must not \
                exist — but a directory is merged into a directory that does (files of the \
                same name replaced). SOURCE: a regular file (its mode and mtime kept; it \
                belongs to root), a directory (modes, owners, mtimes and symlinks kept), or - \
                or nothing for standard input (a file of mode 0644).

                EXAMPLES:
                  imgboot copy-to disk.raw app.conf /etc/app.conf
                  imgboot copy-to disk.raw ./site /srv/www
                  imgboot copy-to disk.raw /etc/motd < motd.txt
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(help: ArgumentHelp("[SOURCE] PATH: what to copy (default: standard input) and where it goes in the image.",
                                     valueName: "source-and-path"))
        var arguments: [String]

        func validate() throws {
            guard (1...2).contains(arguments.count) else {
                throw ValidationError("copy-to takes an image, an optional source, and the path in the image")
            }
        }

        func run() throws {
            let logger = global.makeLogger()
            try requireRoot(image, "writing into an image")
            let source = arguments.count == 2 ? arguments[0] : nil
            let path = arguments[arguments.count - 1]
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
            let (fd, st) = try ImageFiles.openHostSource(source, image: image)
            defer { if fd != 0 { close(fd) } }

            // First on a read-only tree: where the path leads, and whether that can be written.
            // Nothing is written until everything has been checked.
            let probe = try ImageTree.forCommand(dissected, willWrite: true, logger: logger)
            let destination: ImageFiles.Destination
            do {
                destination = try ImageFiles.destination(probe, path: path, source: st)
            } catch {
                try? probe.close()  // read-only: the error that matters is the one thrown
                throw error
            }
            try probe.close()

            let tree = try ImageTree.forCommand(dissected, writable: destination.partition.number, logger: logger)
            do {
                try ImageFiles.copyIn(tree, source: fd, stat: st, sourceName: source ?? "standard input", path: path,
                                      destination: destination) { logger.warning("\(image): \($0)") }
            } catch {
                try? tree.close()  // the copy's error first; the tree still goes
                throw error
            }
            try tree.close()
        }
    }
}
