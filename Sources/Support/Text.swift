#if canImport(Glibc)
import Glibc
#endif

/// Seconds as people read them in imgboot's messages: "0.417" (three decimals, without
/// Foundation's formatters).
public func formatSeconds(_ seconds: Double) -> String {
    let millis = max(0, Int((seconds * 1000).rounded()))
    let frac = String(millis % 1000)
    return "\(millis / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}

/// "stage NAME: N µs" for the time since `start`, as every stage's timing line reads.
public func stageLine(_ name: String, since start: Double) -> String {
    "stage \(name): \(Int(((monotonicSeconds() - start) * 1_000_000).rounded())) µs"
}

// MARK: - Text for a terminal

/// Text made safe to show on a terminal, on one line. Names from an image, a partition table
/// or a file system are the image author's, and a file name is anyone's: none may move the
/// cursor, change colours, set the window title, reorder what follows (a bidi override makes
/// `evil\u{202e}war.raw` read as `evilwar.raw` backwards), hide text, or break a line of
/// output in two. What could do so is shown as an escape; everything else (é, 日本, emoji) is
/// kept as it is. One representation, so that a name can be read back exactly:
///
/// - `\xNN` (two lowercase hex digits) stands for one byte: an ASCII control character
///   (U+0000–U+001F — tab, newline, carriage return and ESC among them — and DEL, U+007F), or,
///   from `printable(bytes:)`, a byte that is not part of valid UTF-8;
/// - `\u{N}` (lowercase hex, no leading zeros) stands for a character that does not show
///   itself: C1 controls (U+0080–U+009F), format characters (bidi controls U+061C, U+200E,
///   U+200F, U+202A–U+202E, U+2066–U+2069; zero-width U+200B–U+200D, U+2060, U+FEFF; the soft
///   hyphen U+00AD; …), the line and paragraph separators U+2028 and U+2029, and the other
///   default-ignorable characters (Hangul fillers, …) — variation selectors excepted;
/// - `\\` stands for a backslash, so that the text `\x1b` and the character ESC differ.
public func printable(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        if scalar == "\\" {
            out += "\\\\"
        } else if scalar.needsTerminalEscape {
            out += terminalEscape(scalar)
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// `printable(_:)` for bytes that should be UTF-8 but may not be (a file name is any bytes but
/// `/` and NUL): each byte of an invalid sequence is shown as `\xNN`.
public func printable(bytes: some Collection<UInt8>) -> String {
    let bytes = Array(bytes)
    var out = ""
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = bytes.makeIterator()
    var position = 0
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let encoded):
            position += encoded.count
            out += printable(String(Unicode.UTF8.decode(encoded)))
        case .error(let length):
            for byte in bytes[position..<(position + length)] { out += "\\x" + hex(byte, width: 2) }
            position += length
        case .emptyInput:
            return out
        }
    }
}

/// The escape `printable(_:)` shows for `scalar`, whether or not it needs one: `\x1b`, `\u{202e}`.
public func terminalEscape(_ scalar: Unicode.Scalar) -> String {
    scalar.value < 0x80 ? "\\x" + hex(scalar.value, width: 2) : "\\u{" + hex(scalar.value, width: 1) + "}"
}

extension Unicode.Scalar {
    /// Whether the character acts on a terminal or on the text around it rather than showing
    /// itself: controls, format characters, line and paragraph separators, and the other
    /// default-ignorable characters but variation selectors (which only pick a glyph, as in
    /// emoji). `printable(_:)` escapes these; the JSON and XML writers write them as
    /// character escapes.
    public var needsTerminalEscape: Bool {
        switch properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: return true
        default: return properties.isDefaultIgnorableCodePoint && !properties.isVariationSelector
        }
    }
}

/// Lowercase hex digits, zero-padded to `width`.
public func hex(_ value: some BinaryInteger, width: Int) -> String {
    let digits = String(value, radix: 16)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}
