import ArgumentParser
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "inspect",
            abstract: "Show what is inside a disk image: its partitions, their roles and filesystems.",
            discussion: """
                Reads the image only. Without root it shows the partition table; as root it also \
                reads the image's os-release, hostname and machine ID, from the root partition \
                mounted read-only where only imgboot can see it (never in the host's mount table). Partitions \
                are recognised by their GPT type UUIDs (Discoverable Partitions Specification); \
                the MOUNT column says where each would be mounted by `imgboot mount` and `run`.

                EXAMPLES:
                  imgboot inspect disk.raw
                  imgboot inspect --json disk.raw | jq '.partitions[].fsType'
                  imgboot inspect /dev/sdb
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device) to inspect.", completion: IMGBoot.imageCompletion)
        var image: String

        @Flag(help: "Print one JSON object instead of a table (schema in README.md).")
        var json = false

        func run() throws {
            let logger = global.makeLogger()
            var dissected = try DissectedImage.dissect(path: image, logger: logger)
            var metadata: ImageMetadata? = nil
            if geteuid() != 0 {
                dissected.warnings.append("reading the image's os-release, hostname and machine ID needs root")
            } else if dissected.root != nil || dissected.partitions.contains(where: { $0.mountPoint == "/usr" }) {
                do {
                    metadata = try ImageMetadata.read(dissected, logger: logger)
                } catch {
                    dissected.warnings.append("cannot read the image's os-release, hostname and machine ID: \(error)")
                }
            }
            let report = InspectReport(dissected, metadata: metadata)
            if json {
                print(report.json.serialized())
            } else {
                print(report.text, terminator: "")
            }
        }
    }
}
