import Foundation
import Testing
@testable import Dissect
import Support

/// `printable(_:)`, the one escape for text that reaches a terminal, and the JSON writer's
/// strings: every kind of character that could act on a terminal or hide text is escaped;
/// ordinary text of any script is kept.
struct PrintableTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var input: String
        var expected: String
        var testDescription: String { expected }
    }

    static let cases: [Case] = [
        // Kept as it is.
        .init(input: "basic.raw", expected: "basic.raw"),
        .init(input: "café", expected: "café"),
        .init(input: "e\u{301}", expected: "e\u{301}"),  // a combining accent
        .init(input: "日本語のイメージ", expected: "日本語のイメージ"),
        .init(input: "עברית", expected: "עברית"),  // right-to-left script, without controls
        .init(input: "❤\u{fe0f} 👩\u{200d}💻", expected: "❤\u{fe0f} 👩\\u{200d}💻"),  // a variation selector stays; ZWJ is escaped
        .init(input: "a b\u{a0}c", expected: "a b\u{a0}c"),
        .init(input: "\u{fffd}", expected: "\u{fffd}"),  // what invalid UTF-8 was decoded to
        // C0 controls: ESC, newline, carriage return, tab, NUL, BEL.
        .init(input: "\u{1b}[31mred\u{1b}[0m", expected: "\\x1b[31mred\\x1b[0m"),
        .init(input: "one\ntwo\r\n", expected: "one\\x0atwo\\x0d\\x0a"),
        .init(input: "a\tb\u{0}c\u{7}", expected: "a\\x09b\\x00c\\x07"),
        // DEL and C1 controls (U+009B is CSI: ESC [ in one character).
        .init(input: "\u{7f}", expected: "\\x7f"),
        .init(input: "\u{80}\u{85}\u{9b}2J\u{9f}", expected: "\\u{80}\\u{85}\\u{9b}2J\\u{9f}"),
        // Bidi controls.
        .init(input: "evil\u{202e}war.raw", expected: "evil\\u{202e}war.raw"),
        .init(input: "\u{202a}\u{202b}\u{202c}\u{202d}", expected: "\\u{202a}\\u{202b}\\u{202c}\\u{202d}"),
        .init(input: "\u{2066}\u{2067}\u{2068}\u{2069}", expected: "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"),
        .init(input: "\u{200e}\u{200f}\u{61c}", expected: "\\u{200e}\\u{200f}\\u{61c}"),
        // Invisible characters.
        .init(input: "a\u{200b}b\u{200c}c\u{200d}d", expected: "a\\u{200b}b\\u{200c}c\\u{200d}d"),
        .init(input: "\u{feff}bom\u{ad}\u{2060}", expected: "\\u{feff}bom\\u{ad}\\u{2060}"),
        .init(input: "\u{3164}\u{115f}", expected: "\\u{3164}\\u{115f}"),  // Hangul fillers
        .init(input: "\u{e0041}", expected: "\\u{e0041}"),  // a tag character, beyond U+FFFF
        // Line and paragraph separators.
        .init(input: "a\u{2028}b\u{2029}", expected: "a\\u{2028}b\\u{2029}"),
        // A backslash is escaped, so that text and escapes differ.
        .init(input: "\\x1b", expected: "\\\\x1b"),
    ]

    @Test(arguments: cases)
    func escapes(_ c: Case) {
        #expect(printable(c.input) == c.expected)
    }

    /// What `printable(_:)` returns holds no character that needs an escape, whatever it is given.
    @Test func outputIsSafe() {
        var everything = ""
        for value in UInt32(0)...0x3000 { if let s = Unicode.Scalar(value) { everything.unicodeScalars.append(s) } }
        for value in UInt32(0xE0000)...0xE0200 { if let s = Unicode.Scalar(value) { everything.unicodeScalars.append(s) } }
        #expect(!printable(everything).unicodeScalars.contains { $0.needsTerminalEscape })
    }

    /// Bytes that are not UTF-8 (a file name may hold any) are shown byte by byte; the valid
    /// sequences around them are decoded and escaped as text.
    @Test func invalidUTF8() {
        #expect(printable(bytes: Array("a".utf8) + [0xff, 0xfe] + Array("b.raw".utf8)) == "a\\xff\\xfeb.raw")
        #expect(printable(bytes: [0xc3]) == "\\xc3")  // a sequence cut short
        #expect(printable(bytes: [0xed, 0xa0, 0x80]) == "\\xed\\xa0\\x80")  // an encoded surrogate
        #expect(printable(bytes: Array("é\u{1b}\u{202e}".utf8)) == "é\\x1b\\u{202e}")
        #expect(printable(bytes: [UInt8]()) == "")
    }

    // MARK: - JSON

    static let jsonCases: [String] = [
        "plain", "café 日本", "e\u{301}", "\u{0}\u{1}\u{1f}", "\u{1b}[31m", "line\nbreak\r\ttab", "\u{7f}",
        "\u{80}\u{9b}\u{9f}", "\u{202e}\u{202a}\u{2066}\u{2069}\u{200e}\u{61c}", "\u{200b}\u{feff}\u{ad}",
        "\u{2028}\u{2029}", "\u{e0041}", "quote\" backslash\\ slash/", "\u{fffd}", "❤\u{fe0f}",
    ]

    /// Every string is written so that a strict parser reads back exactly the same string, and
    /// the text itself holds none of the characters a terminal would act on: they are `\uXXXX`.
    @Test(arguments: jsonCases)
    func jsonStrings(_ s: String) throws {
        let value = JSON.object([("key\u{1b}\u{202e}", .string(s)), ("list", .array([.string(s)]))])
        for pretty in [true, false] {
            let text = value.serialized(pretty: pretty)
            #expect(!text.unicodeScalars.contains { $0.needsTerminalEscape && !(pretty && ($0 == "\n")) }, "\(text)")
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            // Scalar by scalar: String's == would take "e\u{301}" for "é".
            #expect((parsed["key\u{1b}\u{202e}"] as? String).map { Array($0.unicodeScalars) } == Array(s.unicodeScalars))
            #expect((parsed["list"] as? [String])?.first.map { Array($0.unicodeScalars) } == Array(s.unicodeScalars))
        }
    }

    @Test func jsonEscapeForms() {
        #expect(JSON.string("\u{9b}\u{202e}\u{7f}").serialized() == #""\u009b\u202e\u007f""#)
        #expect(JSON.string("\u{e0041}").serialized() == #""\udb40\udc41""#)  // a surrogate pair
        #expect(JSON.string("é日本").serialized() == "\"é日本\"")
    }
}
