import Testing
@testable import Mount

struct OSReleaseTests {
    @Test func typicalFile() {
        let text = """
            PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
            NAME="Debian GNU/Linux"
            VERSION_ID="12"
            ID=debian
            # a comment
            HOME_URL='https://www.debian.org/'
            """
        let parsed = OSRelease.parse(text)
        #expect(parsed.map(\.key) == ["PRETTY_NAME", "NAME", "VERSION_ID", "ID", "HOME_URL"])
        #expect(parsed.map(\.value) == ["Debian GNU/Linux 12 (bookworm)", "Debian GNU/Linux", "12", "debian", "https://www.debian.org/"])
    }

    @Test func escapesAndOddLines() {
        let parsed = OSRelease.parse("A=\"x \\\"y\\\" \\$z \\n\"\n=nokey\n9BAD=1\nBROKEN=\"open\nB=plain value\nA=again\n  C = 1\n")
        #expect(parsed.map(\.key) == ["B", "A"])
        #expect(parsed.first { $0.key == "B" }?.value == "plain")
        #expect(parsed.first { $0.key == "A" }?.value == "again")
    }

    @Test func controlCharactersAreKeptForTheCallerToEscape() {
        #expect(OSRelease.parse("NAME=\"a\u{1b}[31mb\"").first?.value == "a\u{1b}[31mb")
    }
}

/// The metadata from the files' bytes, as `inspect` shows it and the fuzzer feeds it.
struct ImageMetadataParsingTests {
    @Test func typicalFiles() {
        let m = ImageMetadata(parsing: Array("ID=debian\nNAME='Debian'\n".utf8),
                              hostname: Array("\n# set by the installer\n  host-1\t\nignored\n".utf8),
                              machineId: Array("b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b\n".utf8))
        #expect(m.osRelease == [.init(key: "ID", value: "debian"), .init(key: "NAME", value: "Debian")])
        #expect(m.hostname == "host-1")
        #expect(m.machineId == "b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b")
    }

    @Test func missingEmptyAndCommentOnlyFiles() {
        let missing = ImageMetadata(parsing: nil, hostname: nil, machineId: nil)
        #expect(missing.osRelease.isEmpty && missing.hostname == nil && missing.machineId == nil)
        let empty = ImageMetadata(parsing: [], hostname: Array("# only\n\n \t\n".utf8), machineId: [])
        #expect(empty.osRelease.isEmpty && empty.hostname == nil && empty.machineId == nil)
    }

    /// Bytes that are not UTF-8 are U+FFFD; a line ends at any newline, CR and U+2028 included.
    @Test func binaryAndOddNewlines() {
        let m = ImageMetadata(parsing: [0x4E, 0x3D, 0xFF, 0xFE, 0x61], // N=\xff\xfea
                              hostname: Array("a\rb".utf8), machineId: Array("x\u{2028}y".utf8))
        #expect(m.osRelease == [.init(key: "N", value: "\u{FFFD}\u{FFFD}a")])
        #expect(m.hostname == "a")
        #expect(m.machineId == "x")
    }

    /// Only the first 64 KiB, 256 and 128 bytes of the files count.
    @Test func limits() {
        let pad = Array(repeating: UInt8(ascii: "\n"), count: 64 * 1024 - 4)
        let m = ImageMetadata(parsing: pad + Array("A=1\nB=2\n".utf8),
                              hostname: Array(repeating: UInt8(ascii: "h"), count: 300),
                              machineId: Array(repeating: UInt8(ascii: "m"), count: 200))
        #expect(m.osRelease == [.init(key: "A", value: "1")])
        #expect(m.hostname == String(repeating: "h", count: 256))
        #expect(m.machineId == String(repeating: "m", count: 128))
    }
}

struct MountTableTests {
    let text = """
        22 27 0:21 / /proc rw,relatime - proc proc rw
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
        100 27 7:0 / /mnt/img rw,relatime shared:5 - ext4 /dev/loop0 rw
        101 100 7:1 / /mnt/img/home rw,relatime - ext4 /dev/loop1 rw
        102 100 7:2 / /mnt/img/srv ro,relatime - ext4 /dev/loop2 ro
        103 27 0:50 / /mnt/img\\040two rw - tmpfs tmpfs rw
        104 27 0:51 / /mnt/imgx rw - tmpfs tmpfs rw
        """

    @Test func parsesEveryLine() {
        let table = MountTable(parsing: text)
        #expect(table.entries.count == 7)
        #expect(table.entries[2] == .init(id: 100, parent: 27, mountPoint: "/mnt/img", fsType: "ext4", source: "/dev/loop0", options: "rw,relatime"))
        #expect(table.entries[5].mountPoint == "/mnt/img two")
    }

    @Test func mountsBelowADirectoryDeepestFirst() {
        let mounts = MountTable(parsing: text).mounts(atOrBelow: "/mnt/img")
        #expect(mounts.map(\.mountPoint) == ["/mnt/img/srv", "/mnt/img/home", "/mnt/img"])
        #expect(MountTable(parsing: text).mounts(atOrBelow: "/mnt/img/").count == 3)
    }

    /// A partition stacked on the tree's root after the deeper mounts (an image's `/var -> ../..`)
    /// hides them: it must go first, though it is the shallowest.
    @Test func mountsStackedOnTheRootGoFirst() {
        let stacked = text + "\n105 100 7:3 / /mnt/img rw,relatime - ext4 /dev/loop3 rw"
        let mounts = MountTable(parsing: stacked).mounts(atOrBelow: "/mnt/img")
        #expect(mounts.map(\.source) == ["/dev/loop3", "/dev/loop2", "/dev/loop1", "/dev/loop0"])
    }
}
