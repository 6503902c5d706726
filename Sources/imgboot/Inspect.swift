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

        @Option(help: ArgumentHelp(
            "Print one JSON object instead of a table (schema in README.md); a bare --json means short.",
            valueName: "format"))
        var json: JSONFormat = .off

        func run() throws {
            let logger = global.makeLogger()
            var dissected = try DissectedImage.dissect(path: image, logger: logger)
            var metadata: ImageMetadata? = nil
            if geteuid() != 0 {
                dissected.warnings.append("reading the image's os-release, hostname, machine ID and init needs root")
            } else if dissected.root != nil || dissected.partitions.contains(where: { $0.mountPoint == "/usr" }) {
                do {
                    var warnings: [String] = []
                    metadata = try ImageMetadata.read(dissected, logger: logger) { warnings.append($0) }
                    dissected.warnings += warnings
                } catch {
                    dissected.warnings.append("cannot read the image's os-release, hostname and machine ID: \(error)")
                }
            }
            if dissected.root == nil {
                dissected.warnings.append(dissected.partitions.contains { $0.mountPoint == "/usr" }
                    ? "no root partition to boot: `run` and `boot` need --volatile=yes (a fresh root with the image's /usr)"
                    : "no root partition to boot: `run`, `boot` and `mount` cannot use this image")
            }
            let report = InspectReport(dissected, metadata: metadata)
            switch json {
            case .off: print(report.text, terminator: "")
            case .short: print(report.json.serialized(pretty: false))
            case .pretty: print(report.json.serialized(pretty: true))
            }
        }
    }

    /// `--json=`'s values, as systemd-dissect names them.
    enum JSONFormat: String, ExpressibleByArgument, CaseIterable {
        case short, pretty, off

        static var allValueDescriptions: [String: String] {
            ["short": "one line", "pretty": "indented, one key per line", "off": "the table (the default)"]
        }
    }
}
