// The libFuzzer target over the parsers of what an image says about itself: every input is the
// contents of a file the image holds, given as they are (and within imgboot's read limits) to
// `ImageMetadata(parsing:hostname:machineId:)` as os-release, hostname and machine-id at once.
// Then everything imgboot does with the result before a user sees it: `printable` for the
// table and the JSON for `--json`. Not a SwiftPM target; `tools/fuzz` builds it as it builds
// DissectFuzzer.swift. See Fuzz/README.md.
//
// What counts as a bug: any crash (a trap, an ASan report), a hang, too much memory; and any
// broken promise below about the parsed values, the terminal escaping or the JSON.

import Dissect
import Glibc
import Mount
import Support

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let metadata = ImageMetadata(parsing: bytes, hostname: bytes, machineId: bytes)
    check(metadata)
    return 0
}

func check(_ m: ImageMetadata) {
    var keys: Set<String> = []
    for field in m.osRelease {
        require(isShellName(field.key), "os-release key \(debug(field.key)) is not a shell variable name")
        require(keys.insert(field.key).inserted, "os-release key \(field.key) appears twice")
        require(!field.value.unicodeScalars.contains("\n"), "os-release value \(debug(field.value)) spans lines")
        checkPrintable(field.value)
    }
    for (name, line) in [("hostname", m.hostname), ("machine ID", m.machineId)] {
        guard let line else { continue }
        require(!line.isEmpty, "\(name) is empty rather than nil")
        require(!line.contains(where: \.isNewline), "\(name) \(debug(line)) spans lines")
        require(!line.hasPrefix("#"), "\(name) \(debug(line)) is a comment")
        for edge in [line.unicodeScalars.first, line.unicodeScalars.last] {
            require(edge != " " && edge != "\t", "\(name) \(debug(line)) is not trimmed")
        }
        checkPrintable(line)
    }
    checkJSON(m)
}

/// A letter or underscore, then letters, digits, underscores — written again here rather than
/// taken from OSRelease, so that a mistake there cannot hide itself.
func isShellName(_ s: String) -> Bool {
    let scalars = Array(s.unicodeScalars)
    func letter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" }
    guard let first = scalars.first, letter(first) else { return false }
    return scalars.allSatisfy { letter($0) || ("0"..."9").contains($0) }
}

/// `printable` shows nothing that acts on a terminal, and can be read back exactly.
func checkPrintable(_ value: String) {
    let shown = printable(value)
    for scalar in shown.unicodeScalars {
        require(!scalar.needsTerminalEscape, "printable(\(debug(value))) keeps U+\(String(scalar.value, radix: 16))")
    }
    require(unescape(shown).map { Array($0.unicodeScalars) } == Array(value.unicodeScalars),
            "printable(\(debug(value))) = \(debug(shown)) does not read back")
}

/// The inverse of `printable(_:)`: `\\`, `\xNN`, `\u{N}`; nil for anything else after a backslash.
func unescape(_ shown: String) -> String? {
    var out = String.UnicodeScalarView()
    var scalars = shown.unicodeScalars.makeIterator()
    while let c = scalars.next() {
        guard c == "\\" else {
            out.append(c)
            continue
        }
        var digits = ""
        switch scalars.next() {
        case "\\": out.append("\\"); continue
        case "x":
            for _ in 0..<2 { guard let d = scalars.next() else { return nil }; digits.unicodeScalars.append(d) }
        case "u":
            guard scalars.next() == "{" else { return nil }
            while let d = scalars.next(), d != "}" { digits.unicodeScalars.append(d) }
        default: return nil
        }
        guard let value = UInt32(digits, radix: 16), let scalar = Unicode.Scalar(value) else { return nil }
        out.append(scalar)
    }
    return String(out)
}

/// The JSON `inspect --json` writes of it reads back as the same strings, and holds no
/// character that acts on a terminal (each is written as a `\u` escape).
func checkJSON(_ m: ImageMetadata) {
    let json = JSON.object([
        ("osRelease", .object(m.osRelease.map { ($0.key, JSON.string($0.value)) })),
        ("hostname", .string(m.hostname)),
        ("machineId", .string(m.machineId)),
    ])
    for pretty in [true, false] {
        let text = json.serialized(pretty: pretty)
        for scalar in text.unicodeScalars where scalar != "\n" || !pretty {
            require(!scalar.needsTerminalEscape, "the JSON holds U+\(String(scalar.value, radix: 16)) unescaped")
        }
        let back: JSON
        do {
            back = try JSON(parsing: Array(text.utf8))
        } catch {
            require(false, "the JSON does not parse: \(error)")
            return
        }
        let fields = back["osRelease"].map { object -> [(String, String?)] in
            guard case .object(let members) = object else { return [] }
            return members.map { ($0.0, $0.1.stringValue) }
        } ?? []
        require(fields.count == m.osRelease.count, "the JSON's osRelease has \(fields.count) fields, not \(m.osRelease.count)")
        for (field, (key, value)) in zip(m.osRelease, fields) {
            require(same(key, field.key) && same(value, field.value), "os-release \(field.key) does not read back from the JSON")
        }
        require(same(back["hostname"]?.stringValue, m.hostname), "the hostname does not read back from the JSON")
        require(same(back["machineId"]?.stringValue, m.machineId), "the machine ID does not read back from the JSON")
    }
}

/// Equal scalar for scalar (String's == would call canonically equivalent strings equal).
func same(_ a: String?, _ b: String?) -> Bool {
    a.map { Array($0.unicodeScalars) } == b.map { Array($0.unicodeScalars) }
}

/// A value in a message: escaped for the terminal the fuzzer's report goes to.
func debug(_ s: String) -> String {
    "\"" + s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\u{7f}" ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined() + "\""
}

func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    let line = "metadata-fuzzer: invariant broken: \(message())\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    abort()
}
