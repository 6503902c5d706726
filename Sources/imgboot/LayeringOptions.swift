import ArgumentParser
import Attach
import Dissect
import Boot
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

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
