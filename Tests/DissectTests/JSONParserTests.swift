import Testing
@testable import Dissect
import Support

/// The reader imgboot's state records are parsed with: what the writer writes comes back as it
/// was, and anything else — above all a text a forger shaped — is refused, never guessed at.
struct JSONParserTests {
    @Test func valuesOfEveryKind() throws {
        let text = #"{"a": [1, -2, 3.5, 1e3, true, false, null], "b": {"c": "d"}, "e": "", "f": 0}"#
        let value = try JSON(parsing: text)
        #expect(value["a"] == .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        #expect(value["b"]?["c"]?.stringValue == "d")
        #expect(value["e"]?.stringValue == "")
        #expect(value["f"]?.intValue == 0)
        #expect(value["missing"] == nil)
        #expect(JSON.int(1)["a"] == nil, "only objects have members")
    }

    @Test func keysKeepTheirOrder() throws {
        guard case .object(let members) = try JSON(parsing: #"{"z": 1, "a": 2, "m": 3}"#) else {
            Issue.record("not an object")
            return
        }
        #expect(members.map(\.0) == ["z", "a", "m"])
    }

    @Test func escapes() throws {
        let value = try JSON(parsing: #""q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20ac \ud83d\ude00""#)
        #expect(value.stringValue == "q\" b\\ s/ \u{08}\u{0C}\n\r\t Aé€ 😀")
        #expect(try JSON(parsing: "\"héllo €\"").stringValue == "héllo €", "UTF-8 as it is")
    }

    /// Whatever the writer writes, the reader reads back unchanged — strings made to look like
    /// JSON or like the old `key=value` lines included.
    @Test(arguments: [
        "plain", "a\nleader=1\nsupervisor=2", #"","leader":1,"x":""#, "\u{1b}[31m\u{7f}\u{0}",
        "\\\"\\", "😀 é", "\r\n\t", "}{][", "",
    ])
    func roundTrip(text: String) throws {
        let value = JSON.object([("image", .string(text)), ("leader", .int(42)), ("list", .array([.string(text), .null]))])
        for pretty in [false, true] {
            let parsed = try JSON(parsing: value.serialized(pretty: pretty))
            #expect(parsed == value)
            #expect(parsed["image"]?.stringValue == text)
            #expect(parsed["leader"]?.intValue == 42)
            guard case .object(let members) = parsed else { Issue.record("not an object"); return }
            #expect(members.count == 3, "a string never adds a member")
        }
    }

    @Test func integersAtTheLimits() throws {
        #expect(try JSON(parsing: "9223372036854775807").intValue == Int64.max)
        #expect(try JSON(parsing: "-9223372036854775808").intValue == Int64.min)
        // Beyond 64 bits: a double, never a wrapped integer.
        #expect(try JSON(parsing: "9223372036854775808").intValue == nil)
    }

    @Test(arguments: [
        ("", "unexpected end") as (String, String),
        ("{", "expected a key"),
        (#"{"a" 1}"#, "expected ':'"),
        (#"{"a": 1,}"#, "expected a key"),
        ("[1, 2", "unexpected end"),
        ("[1 2]", "expected ',' or ']'"),
        (#""abc"#, "unterminated string"),
        (#""a\x""#, "invalid escape"),
        (#""\u12zz""#, #"invalid \u escape"#),
        (#""\u12""#, #"short \u escape"#),
        (#""\ud83d""#, "lone surrogate"),
        (#""\ude00""#, "lone surrogate"),
        ("\"a\nb\"", "control character in a string"),
        ("01", "leading zero"),
        ("-", "expected a digit"),
        ("1.", "expected a digit"),
        ("1e", "expected a digit"),
        ("tru", "expected true"),
        ("nul", "expected null"),
        ("'a'", "unexpected character"),
        (#"{"a": 1} {"a": 2}"#, "unexpected text after the value"),
        (#"{"a": 1}x"#, "unexpected text after the value"),
        (#"{"leader": 1, "leader": 2}"#, "duplicate key \"leader\""),
        ("1e999", "number out of range"),
    ])
    func refused(text: String, problem: String) {
        #expect { try JSON(parsing: text) } throws: { error in
            (error as? JSONParseError)?.problem == problem
        }
    }

    @Test func invalidUTF8IsRefused() throws {
        #expect { try JSON(parsing: [0x22, 0x61, 0xFF, 0x22] as [UInt8]) } throws: { error in
            (error as? JSONParseError)?.problem == "invalid UTF-8 in a string"
        }
        #expect(try JSON(parsing: Array("\"a€\"".utf8)).stringValue == "a€")
    }

    @Test func depthIsBounded() throws {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: JSONParseError.self) { try JSON(parsing: deep) }
        #expect(throws: Never.self) { try JSON(parsing: deep, maxDepth: 40) }
        let hostile = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON(parsing: hostile) }
    }

    @Test func whitespaceAround() throws {
        #expect(try JSON(parsing: " \n\t{ \"a\" : [ ] , \"b\" : { } }\r\n ") == .object([("a", .array([])), ("b", .object([]))]))
    }
}
