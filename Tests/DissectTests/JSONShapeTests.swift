import Testing
@testable import Dissect
import Support

/// The `inspect --json` schema documented in README.md: every key present, in order, nulls
/// written as null, UUIDs as given (lower case by construction).
struct JSONShapeTests {
    let image = DissectedImage(
        image: "basic.raw", size: 64 << 20, sectorSize: 512, partitionTable: .gpt,
        imageUuid: "00000000-0000-0000-0000-0000000000aa", architecture: .x86_64,
        partitions: [
            Partition(number: 1, designator: .root, typeUuid: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
                      typeName: "Linux root (x86-64)", uuid: "00000000-0000-0000-0000-000000000001",
                      label: "root", offset: 1 << 20, size: 24 << 20, fsType: "ext4",
                      fsUuid: "00000000-0000-0000-0000-0000000000f1", fsLabel: nil,
                      architecture: .x86_64, mountPoint: "/"),
        ])

    @Test func topLevelKeysInSchemaOrder() throws {
        guard case .object(let members) = image.json else { Issue.record("not an object"); return }
        #expect(members.map(\.0) == ["image", "size", "sectorSize", "partitionTable", "imageUuid",
                                      "architecture", "partitions", "warnings"])
    }

    @Test func partitionKeysInSchemaOrder() throws {
        guard case .object(let members) = image.partitions[0].json else { Issue.record("not an object"); return }
        #expect(members.map(\.0) == [
            "number", "designator", "typeUuid", "mbrType", "typeName", "uuid", "label", "offset", "size",
            "fsType", "fsUuid", "fsLabel", "architecture", "readOnly", "noAuto", "growFs", "bootable", "mountPoint",
        ])
    }

    @Test func serialization() {
        let text = image.json.serialized(pretty: false)
        #expect(text.hasPrefix(#"{"image":"basic.raw","size":67108864,"sectorSize":512,"partitionTable":"gpt","#))
        #expect(text.contains(#""fsLabel":null,"architecture":"x86-64","readOnly":false"#))
        #expect(text.hasSuffix(#""mountPoint":"/"}],"warnings":[]}"#))
    }

    @Test func stringsAreEscaped() {
        #expect(JSON.string("a\"b\\c\n\u{1b}[31m").serialized() == #""a\"b\\c\n\u001b[31m""#)
    }

    @Test func prettyPrinting() {
        let value = JSON.object([("a", .array([.int(1), .null])), ("b", .object([]))])
        #expect(value.serialized() == "{\n  \"a\": [\n    1,\n    null\n  ],\n  \"b\": {}\n}")
    }
}
