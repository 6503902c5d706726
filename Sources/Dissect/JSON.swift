/// A JSON value whose objects keep their keys in the order given, so that imgboot's `--json`
/// output reads in the order its schema is documented. Also used by the later stages' reports.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        a.serialized() == b.serialized()
    }

    /// `.string(s)` or `.null`.
    public static func string(_ s: String?) -> JSON { s.map(JSON.string) ?? .null }

    /// The JSON text, indented by two spaces per level (or on one line when `pretty` is false).
    /// Strings are written with `\uXXXX` escapes (a surrogate pair beyond U+FFFF) for every
    /// control character and the other characters `printable(_:)` escapes, so that the text is
    /// safe to show raw on a terminal; other characters (é, 日本) are written as UTF-8.
    public func serialized(pretty: Bool = true) -> String {
        var out = ""
        write(into: &out, indent: pretty ? 0 : nil)
        return out
    }

    private func write(into out: inout String, indent: Int?) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let items):
            writeContainer(items.map { (nil, $0) }, open: "[", close: "]", into: &out, indent: indent)
        case .object(let members):
            writeContainer(members.map { (Optional($0.0), $0.1) }, open: "{", close: "}", into: &out, indent: indent)
        }
    }

    private func writeContainer(_ items: [(String?, JSON)], open: String, close: String, into out: inout String, indent: Int?) {
        out += open
        guard !items.isEmpty else { out += close; return }
        let inner = indent.map { $0 + 2 }
        for (n, (key, value)) in items.enumerated() {
            if n > 0 { out += "," }
            if let inner { out += "\n" + String(repeating: " ", count: inner) }
            if let key {
                JSON.quote(key, into: &out)
                out += indent == nil ? ":" : ": "
            }
            value.write(into: &out, indent: inner)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent) }
        out += close
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            // Beyond what JSON requires (C0 controls): whatever printable(_:) would escape —
            // DEL, C1 controls, bidi and invisible characters — so that JSON shown raw on a
            // terminal is as safe as imgboot's other output. Parsers read the same string back.
            case _ where scalar.needsTerminalEscape:
                for unit in scalar.utf16 { out += "\\u" + hex(unit, width: 4) }
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension DissectedImage {
    /// The object `imgboot inspect --json` prints (schema in README.md).
    public var json: JSON {
        .object([
            ("image", .string(image)),
            ("size", .int(Int64(clamping: size))),
            ("sectorSize", .int(Int64(sectorSize))),
            ("partitionTable", .string(partitionTable?.rawValue)),
            ("imageUuid", .string(imageUuid)),
            ("architecture", .string(architecture?.rawValue)),
            ("partitions", .array(partitions.map(\.json))),
            ("warnings", .array(warnings.map(JSON.string))),
        ])
    }
}

extension Partition {
    public var json: JSON {
        .object([
            ("number", .int(Int64(number))),
            ("designator", .string(designator?.rawValue)),
            ("typeUuid", .string(typeUuid)),
            ("mbrType", .string(mbrType)),
            ("typeName", .string(typeName)),
            ("uuid", .string(uuid)),
            ("label", .string(label)),
            ("offset", .int(Int64(clamping: offset))),
            ("size", .int(Int64(clamping: size))),
            ("fsType", .string(fsType)),
            ("fsUuid", .string(fsUuid)),
            ("fsLabel", .string(fsLabel)),
            ("architecture", .string(architecture?.rawValue)),
            ("readOnly", .bool(readOnly)),
            ("noAuto", .bool(noAuto)),
            ("growFs", .bool(growFs)),
            ("bootable", .bool(bootable)),
            ("mountPoint", .string(mountPoint)),
        ])
    }
}
