import Testing
@testable import Dissect

/// The structural checks on GPT entries, which refuse a table rather than guess.
struct GPTCheckTests {
    let header = GPT.Header(
        myLBA: 1, alternateLBA: 2047, firstUsableLBA: 34, lastUsableLBA: 2014,
        diskGUID: "00000000-0000-0000-0000-000000000000", entriesLBA: 2,
        entryCount: 128, entrySize: 128, entriesCRC: 0)

    func entry(_ n: Int, _ first: UInt64, _ last: UInt64) -> GPT.Entry {
        GPT.Entry(number: n, typeGUID: "0fc63daf-8483-4772-8e79-3d69d8477de4",
                  uniqueGUID: "00000000-0000-0000-0000-00000000000\(n)", firstLBA: first, lastLBA: last, attributes: 0)
    }

    func check(_ entries: [GPT.Entry]) -> [String] {
        GPT.check(entries, header: header, sectorSize: 512, imageSize: 2048 * 512)
    }

    @Test func validTable() {
        #expect(check([entry(1, 34, 999), entry(2, 1000, 2014)]).isEmpty)
    }

    @Test func overlap() {
        #expect(check([entry(1, 34, 1000), entry(2, 1000, 2014)]) == ["partitions 1 and 2 overlap"])
    }

    @Test func overlapIsFoundBehindAWidePartition() {
        #expect(check([entry(1, 34, 2000), entry(2, 100, 200), entry(3, 300, 400)])
                == ["partitions 1 and 2 overlap", "partitions 1 and 3 overlap"])
    }

    @Test func endBeforeStart() {
        #expect(check([entry(1, 500, 400)]) == ["partition 1 ends before it starts (LBA 500 to 400)"])
    }

    /// LBAs are inclusive: last = first - 1 is a table's way of saying "no sectors at all".
    @Test func zeroSize() {
        #expect(check([entry(1, 34, 999), entry(2, 1000, 999)])
                == ["partition 2 is empty (zero sectors: first LBA 1000, last LBA 999)"])
    }

    @Test func pastTheEnd() {
        #expect(check([entry(3, 34, 4096)])
                == ["partition 3 ends beyond the end of the image (LBA 4096; the image has 2048 sectors)"])
    }

    @Test func hugeLBADoesNotOverflow() {
        #expect(check([entry(1, 34, .max)]).count == 1)
        #expect(check([entry(1, .max - 1, .max)]).count == 1)
    }

    @Test func outsideTheUsableArea() {
        #expect(check([entry(1, 2, 100)])
                == ["partition 1 lies outside the table's usable area (LBA 34 to 2014)"])
    }

    @Test func manyProblemsStayOneShortLine() {
        let problems = (1...500).map { "partition \($0) ends before it starts (LBA 9 to 1)" }
        let message = DissectError(image: "x.raw", .invalidTable(problems)).description
        #expect(message.hasSuffix("; and 497 more problems"))
        #expect(!message.contains("\n"))
        #expect(message.count < 300)
    }
}

/// GPT partition names as imgboot decodes them itself (for tables libblkid cannot read): 36
/// UTF-16LE code units, up to the first NUL.
struct GPTNameTests {
    static func bytes(_ units: [UInt16]) -> [UInt8] {
        let padded = units + Array(repeating: 0, count: max(0, 36 - units.count))
        return [UInt8](repeating: 0xAA, count: 56) + padded.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
    }

    @Test(arguments: [
        ([], ""),
        (Array("root".utf16), "root"),
        (Array("srv-ü😀".utf16), "srv-ü😀"),
        (Array("a".utf16) + [0] + Array("hidden".utf16), "a"),
        (Array(String(repeating: "x", count: 36).utf16), String(repeating: "x", count: 36)),
        ([0xD800] + Array("x".utf16), "\u{FFFD}x"),
        (Array("x".utf16) + [0xDC00], "x\u{FFFD}"),
    ] as [([UInt16], String)])
    func decode(units: [UInt16], expected: String) {
        #expect(utf16Name(Self.bytes(units), 56) == expected)
    }
}
