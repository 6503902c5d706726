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
