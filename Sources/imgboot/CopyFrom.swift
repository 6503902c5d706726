import ArgumentParser
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
    struct CopyFrom: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy-from",
            abstract: "Copy a file or a directory tree out of an image (systemd-dissect --copy-from).",
            discussion: """
                PATH is resolved inside the image, through its symlinks but never out of it. A \
                file keeps its mode and mtime; a tree keeps modes, owners, mtimes and symlinks. \
                Set-user-ID and set-group-ID bits are dropped and device nodes and sockets left \
                out (with a warning each): the image's files are not to give anyone privileges \
                on the host. TARGET must not exist (a tree may go into an empty directory). The \
                image is only read: its partitions are mounted read-only where only imgboot can \
                see them (never in the host's mount table).

                EXAMPLES:
                  imgboot copy-from disk.raw /etc/os-release
                  imgboot copy-from disk.raw /var/log logs
                  imgboot copy-from disk.raw /etc/passwd - | grep root
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(help: "The file or directory in the image.")
        var path: String

        @Argument(help: "Where to put it (default: its name, in the current directory); - for standard output (a regular file only).")
        var target: String?

        func run() throws {
            let logger = global.makeLogger()
            try requireRoot(image, "reading an image's files")
            guard let target = target ?? defaultTarget(path) else {
                throw CommandError(image, "\(path): has no name to copy it to; give a TARGET")
            }
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
            let tree = try ImageTree.forCommand(dissected, logger: logger)
            do {
                if target == "-" {
                    try ImageFiles.copyOut(tree, path: path, to: OutputFile.standardOutput(image: image))
                } else {
                    try ImageFiles.copyOut(tree, path: path, to: target) { logger.warning("\(image): \($0)") }
                }
            } catch {
                try? tree.close()  // read-only: the error that matters is the one thrown
                throw error
            }
            try tree.close()
        }

        /// The last component of `path`, if it has one that names a file.
        func defaultTarget(_ path: String) -> String? {
            let name = path.split(separator: "/").last.map(String.init)
            return name == "." || name == ".." ? nil : name
        }
    }
}
