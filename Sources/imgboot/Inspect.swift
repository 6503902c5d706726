import ArgumentParser
import Dissect

extension IMGBoot {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what is inside a disk image: its partitions, their roles and filesystems.",
            discussion: """
                Reads the image only; needs no privileges beyond reading the file. Partitions \
                are recognised by their GPT type UUIDs (Discoverable Partitions Specification); \
                the MOUNT column says where each would be mounted by `imgboot mount` and `run`.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The raw disk image (or block device) to inspect.")
        var image: String

        @Flag(help: "Print one JSON object instead of a table (schema in README.md).")
        var json = false

        func run() throws {
            let logger = global.makeLogger()
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            if json {
                print(dissected.json.serialized())
            } else {
                print(InspectReport(dissected).text, terminator: "")
            }
        }
    }
}
