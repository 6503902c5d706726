import Foundation
import Testing
@testable import Mount
import Support

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

/// The metadata fuzzer's seeds (`fixtures/fuzz-corpus/metadata`, see Fuzz/README.md), each given
/// to the parsers as the fuzzer gives it — as os-release, hostname and machine-id at once — with
/// the outcome it was made for: a seed that stopped meaning what its name says would make the
/// fuzzer quietly weaker.
struct MetadataCorpusTests {
    static let corpus: String = {
        // This file is Tests/MountTests/ParsingTests.swift.
        let parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        return parts.dropLast(3).joined(separator: "/") + "/fixtures/fuzz-corpus/metadata"
    }()

    /// Printable ASCII as it is, `\u{N}` for every other character (and `\\`, `\"`).
    static func ascii(_ s: String?) -> String {
        guard let s else { return "nil" }
        return "\"" + s.unicodeScalars.map { c in
            c == "\\" || c == "\"" ? "\\" + String(c)
                : (0x20..<0x7F).contains(c.value) ? String(c) : "\\u{\(String(c.value, radix: 16))}"
        }.joined() + "\""
    }

    /// KEY="VALUE"… for the os-release, then the hostname and the machine ID.
    static func outcome(_ name: String) throws -> String {
        let bytes = try #require(FileManager.default.contents(atPath: corpus + "/" + name)).map { $0 }
        let m = ImageMetadata(parsing: bytes, hostname: bytes, machineId: bytes)
        return (m.osRelease.map { "\($0.key)=\(ascii($0.value))" } + ["hostname \(ascii(m.hostname))", "machine-id \(ascii(m.machineId))"])
            .joined(separator: " ")
    }

    @Test(arguments: [
        ("debian-os-release", #"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)" NAME="Debian GNU/Linux" VERSION_ID="12" VERSION="12 (bookworm)" VERSION_CODENAME="bookworm" ID="debian" HOME_URL="https://www.debian.org/" SUPPORT_URL="https://www.debian.org/support" BUG_REPORT_URL="https://bugs.debian.org/" hostname "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"" machine-id "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"""#),
        ("busybox-os-release", #"NAME="imgboot busybox" ID="imgboot-busybox" VERSION_ID="1.0" PRETTY_NAME="imgboot busybox 1.0" hostname "NAME=\"imgboot busybox\"" machine-id "NAME=\"imgboot busybox\"""#),
        ("hostname", #"hostname "busybox-demo" machine-id "busybox-demo""#),
        ("machine-id", #"hostname "b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b" machine-id "b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b""#),
        // Every rule of the os-release syntax: comments, blank and indented lines, CRLF, both
        // quotes and their escapes, a value ended by a space, concatenation, broken quoting,
        // keys that are not shell names, a key given twice (the later wins).
        ("quoting", #"INDENTED="kept" SINGLE="its \"raw\" \\n" BARE="value" CONCAT="ab cd e" EMPTY="" DOUBLE="again," hostname "INDENTED=kept" machine-id "INDENTED=kept""#),
        // What a hostile image writes: terminal sequences, bidi and invisible characters, a
        // forged line after a CR, NUL and DEL, bytes that are not UTF-8 (each U+FFFD).
        ("hostile", #"NAME="evil\u{202e}war\u{200b}\u{85}\u{2028}x" PRETTY_NAME="forged\u{d}OS:         Windows" ID="\u{0}nul\u{7f}" HOME_URL="\u{ad}\u{feff}\u{2066}\u{3164}" VERSION="\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}" hostname "\u{1b}[31mred\u{1b}[0m\u{1b}]0;owned\u{7}" machine-id "\u{1b}[31mred\u{1b}[0m\u{1b}]0;owned\u{7}""#),
    ])
    func seed(name: String, expected: String) throws {
        #expect(try Self.outcome(name) == expected)
    }

    /// Every seed in the directory is in the table above.
    @Test func everySeedIsPinned() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus).sorted()
        #expect(names == ["busybox-os-release", "debian-os-release", "hostile", "hostname", "machine-id", "quoting"])
    }
}

/// Root's login shell from an image's /etc/passwd: the words a container without a command runs.
struct LoginShellTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var passwd: String
        var shell: [String]?
        var testDescription: String { passwd.debugDescription }
    }

    static let cases: [Case] = [
        .init(passwd: "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/zsh\n", shell: ["/bin/bash"]),
        .init(passwd: "daemon:x:1:1::/:/usr/sbin/nologin\nroot:x:0:0:root:/root:/bin/ash", shell: ["/bin/ash"]),
        .init(passwd: "root:x:0:0:root:/root:/usr/bin/busybox sh\n", shell: ["/usr/bin/busybox", "sh"]),
        .init(passwd: "root:x:0:0:root:/root:/usr/bin/busybox\t sh  -l\r\n", shell: ["/usr/bin/busybox", "sh", "-l"]),
        // passwd(5): an empty shell field means /bin/sh.
        .init(passwd: "root:x:0:0:root:/root:\n", shell: ["/bin/sh"]),
        // The first root entry counts, as getpwnam finds it; a malformed line is skipped.
        .init(passwd: "root:x:0:0\nroot:x:0:0:root:/root:/bin/first\nroot:x:0:0:root:/root:/bin/second\n", shell: ["/bin/first"]),
        .init(passwd: "toor:x:0:0:root:/root:/bin/bash\n", shell: nil),
        .init(passwd: "", shell: nil),
        .init(passwd: "root:x:0:0:root:/root:bin/sh\n", shell: nil),
        .init(passwd: "root:x:0:0:root:/root:/bin/sh\u{1b}[31m\n", shell: nil),
        .init(passwd: "root:x:0:0:root:/root:/bin/s\u{0}h\n", shell: nil),
        .init(passwd: "root:x:0:0:root:/root:/" + String(repeating: "a", count: 1100) + "\n", shell: nil),
        .init(passwd: "root:x:0:0:root:/root:/bin/sh" + String(repeating: " a", count: 16) + "\n", shell: nil),
    ]

    @Test(arguments: cases)
    func rootShell(_ c: Case) {
        #expect(LoginShell.parse(passwd: c.passwd) == c.shell)
    }
}

/// The one place paths are split into a directory and a name (Support's `splitPath`).
struct PathSplitTests {
    @Test func directoriesAndNames() {
        let cases: [(String, String?, String)] = [
            ("/a/b", "/a", "b"), ("/b", "/", "b"), ("/a/b/", "/a", "b"), ("/a//", "/", "a"), ("/", "/", ""),
            ("b", nil, "b"), ("a/b", "a", "b"), ("/a/..", "/a", ".."),
        ]
        for (path, directory, name) in cases {
            let split = splitPath(path)
            #expect(split.directory == directory && split.name == name, "\(path): \(split)")
        }
        #expect(pathBeside("/srv/img.raw") { ".#\($0).lck" } == "/srv/.#img.raw.lck")
        #expect(pathBeside("/img.raw") { ".#\($0).lck" } == "/.#img.raw.lck")
        #expect(pathBeside("img.raw") { ".#\($0).lck" } == ".#img.raw.lck")
    }
}

/// Trimming is by Unicode scalars: a space followed by a combining mark is one Character that is
/// not " ", and kept its space (the metadata fuzzer's find: hostname " \u{fe0f}\0/…").
struct TrimmingTests {
    @Test func spaceBeforeACombiningMarkIsTrimmed() {
        let hostname = ImageMetadata.firstLine(" \u{fe0f}host \u{fe0f}\t")
        #expect(hostname.map { Array($0.unicodeScalars) } == Array("\u{fe0f}host \u{fe0f}".unicodeScalars))
    }
}
