import Dissect
import Mount
import Support

/// The forms of `imgboot inspect`: for people, a header and a table of partitions; for
/// programs, one JSON object.
struct InspectReport {
    let image: DissectedImage
    /// Nil when it could not be read (no root, no root partition).
    let metadata: ImageMetadata?

    init(_ image: DissectedImage, metadata: ImageMetadata? = nil) {
        self.image = image
        self.metadata = metadata
    }

    /// `DissectedImage.json` with `osRelease`, `hostname`, `machineId` and `init` after
    /// `architecture`.
    var json: JSON {
        guard case .object(var members) = image.json else { return image.json }
        let at = (members.firstIndex { $0.0 == "architecture" } ?? members.count - 1) + 1
        let osRelease: JSON = metadata.map { .object($0.osRelease.map { ($0.key, JSON.string($0.value)) }) } ?? .null
        members.insert(contentsOf: [
            ("osRelease", osRelease),
            ("hostname", .string(metadata?.hostname)),
            ("machineId", .string(metadata?.machineId)),
            ("init", .string(metadata?.initPath)),
        ], at: at)
        return .object(members)
    }

    var text: String {
        var out = ""
        let table: String = switch image.partitionTable {
        case .gpt: "GPT, \(image.sectorSize)-byte sectors"
        case .dos: "MBR (DOS), \(image.sectorSize)-byte sectors"
        case nil: "none (a bare filesystem image)"
        }
        let header: [(String, String)] = [
            ("Image", image.image),
            ("Size", "\(humanSize(image.size)) (\(image.size) bytes)"),
            ("Table", table),
            ("Disk UUID", image.imageUuid ?? "-"),
            ("Arch", image.architecture?.rawValue ?? "-"),
        ] + metadataLines
        // Every value may come from the image (or be a file name): each is escaped here, once.
        for (key, value) in header {
            out += (key + ":").padding(to: 12) + printable(value) + "\n"
        }
        out += "\n"

        var rows = [["#", "DESIGNATOR", "LABEL", "PARTITION UUID", "FS", "SIZE", "FLAGS", "MOUNT"]]
        for p in image.partitions {
            var flags: [String] = []
            if p.readOnly { flags.append("ro") }
            if p.noAuto { flags.append("no-auto") }
            if p.growFs { flags.append("grow-fs") }
            if p.bootable { flags.append("boot") }
            let designator = p.designator.map { d in
                p.architecture.map { "\(d.rawValue) (\($0.rawValue))" } ?? d.rawValue
            } ?? p.typeName ?? p.typeUuid ?? p.mbrType ?? "-"
            rows.append([
                p.number == 0 ? "-" : String(p.number),
                printable(designator),
                printable(p.label ?? p.fsLabel ?? "-"),
                printable(p.uuid ?? "-"),
                printable(p.fsType ?? "-"),
                humanSize(p.size),
                flags.isEmpty ? "-" : flags.joined(separator: ","),
                p.mountPoint ?? "-",
            ])
        }
        out += textTable(rows)
        for warning in image.warnings {
            out += "\nwarning: \(printable(warning))"
        }
        if !image.warnings.isEmpty { out += "\n" }
        return out
    }
}

extension InspectReport {
    /// OS, hostname, machine ID and init lines: always all four, `-` for what is not known.
    var metadataLines: [(String, String)] {
        let fields = Dictionary((metadata?.osRelease ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { _, b in b })
        let initLine: String = if let path = metadata?.initPath { path } else if metadata != nil { "- (use `imgboot run`)" } else { "-" }
        return [
            ("OS", InspectReport.osName(fields) ?? "-"),
            ("Hostname", metadata?.hostname ?? "-"),
            ("Machine ID", metadata?.machineId ?? "-"),
            ("Init", initLine),
        ]
    }

    /// The OS as os-release(5) suggests naming it: PRETTY_NAME, else NAME and VERSION, else ID
    /// and VERSION_ID; nil when none of them is there.
    static func osName(_ fields: [String: String]) -> String? {
        func nonEmpty(_ key: String) -> String? { fields[key].flatMap { $0.isEmpty ? nil : $0 } }
        if let pretty = nonEmpty("PRETTY_NAME") { return pretty }
        for (name, version) in [("NAME", "VERSION"), ("ID", "VERSION_ID")] {
            if let first = nonEmpty(name) { return [first, nonEmpty(version)].compactMap { $0 }.joined(separator: " ") }
        }
        return nil
    }
}

/// Sizes as people read them: "512 B", "24.0 MiB", "1.5 GiB".
func humanSize(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var unit = 0
    var value = Double(bytes)
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
}
