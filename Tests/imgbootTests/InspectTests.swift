import Foundation
import Testing
@testable import Dissect

/// `imgboot inspect` against every fixture image, compared with the truth its recipe in
/// `fixtures/images/` encodes (fixed UUIDs and labels), and with systemd-dissect where installed.
struct InspectTests {
    /// What a recipe says about one partition.
    struct Expected: CustomStringConvertible {
        var number: Int
        var designator: Designator?
        var label: String?
        var fsType: String?
        var mountPoint: String?
        var readOnly = false
        var noAuto = false
        var growFs = false
        var architecture: Architecture? = nil

        var description: String { "partition \(number)" }

        /// Fixture UUIDs follow a pattern: partition N of fixture F is 9a47FFFF-000N-…, its
        /// filesystem f5f5FFFF-000N-….
        static func uuid(_ prefix: String, fixture: Int, number: Int) -> String {
            String(format: "%@%04d-%04d-4000-a000-000000000000", prefix, fixture, number)
        }
    }

    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var id: Int
        var table: PartitionTableType?
        var sectorSize = 512
        var architecture: Architecture?
        var partitions: [Expected]
        var warnings: [String] = []
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "basic", id: 1, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
            .init(number: 3, designator: .srv, label: "srv", fsType: "ext4", mountPoint: "/srv"),
        ]),
        // basic with 256-byte GPT entries, which libblkid cannot read: imgboot reads the table
        // itself. Partition numbers 1, 2, 3 (not 1, 3, 5) show that entries were read 256 bytes
        // apart; srv's name, with a surrogate pair, that imgboot decoded the UTF-16 itself.
        Case(name: "entries-256", id: 1, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
            .init(number: 3, designator: .srv, label: "srv-ü😀", fsType: "ext4", mountPoint: "/srv"),
        ]),
        Case(name: "sector4k", id: 12, table: .gpt, sectorSize: 4096, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
            .init(number: 3, designator: .srv, label: "srv", fsType: "ext4", mountPoint: "/srv"),
        ]),
        Case(name: "squashfs", id: 3, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "squashfs", mountPoint: "/", readOnly: true, architecture: .x86_64),
            .init(number: 2, designator: .var, label: "var", fsType: "ext4", mountPoint: "/var"),
            .init(number: 3, designator: .tmp, label: "tmp", fsType: "ext4", mountPoint: "/var/tmp"),
        ]),
        Case(name: "erofs", id: 4, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "erofs", mountPoint: "/", readOnly: true, architecture: .x86_64),
        ]),
        Case(name: "btrfs-xfs", id: 5, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "btrfs", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "xfs", mountPoint: "/home"),
        ]),
        Case(name: "split-usr", id: 6, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .usr, label: "usr", fsType: "ext4", mountPoint: "/usr", architecture: .x86_64),
        ]),
        Case(name: "flags", id: 7, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: nil, noAuto: true),
            .init(number: 3, designator: .srv, label: "srv", fsType: "ext4", mountPoint: "/srv", readOnly: true),
            .init(number: 4, designator: .var, label: "var", fsType: "ext4", mountPoint: "/var", growFs: true),
        ]),
        Case(name: "generic", id: 8, table: .gpt, architecture: nil, partitions: [
            .init(number: 1, designator: .root, label: "linux", fsType: "ext4", mountPoint: "/"),
        ]),
        Case(name: "foreign-arch", id: 10, table: .gpt, architecture: .arm64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: nil, architecture: .arm64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
        ], warnings: ["no root partition for x86-64 (the image has one for arm64)",
                      "no root partition to boot: `run`, `boot` and `mount` cannot use this image"]),
        Case(name: "two-roots", id: 11, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "fooOS_1.9", fsType: "ext4", mountPoint: nil, architecture: .x86_64),
            .init(number: 2, designator: .root, label: "fooOS_1.10", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 3, designator: .root, label: "fooOS_2.0", fsType: "ext4", mountPoint: nil, noAuto: true, architecture: .x86_64),
        ]),
        Case(name: "garbage-root", id: 13, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: nil, mountPoint: nil, architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
        ], warnings: ["partition 1 (root): no filesystem found",
                      "no root partition to boot: `run`, `boot` and `mount` cannot use this image"]),
        Case(name: "bad-primary", id: 14, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
            .init(number: 3, designator: .srv, label: "srv", fsType: "ext4", mountPoint: "/srv"),
        ], warnings: ["the primary GPT header has a bad checksum; using the backup"]),
        Case(name: "disagree", id: 14, table: .gpt, architecture: .x86_64, partitions: [
            .init(number: 1, designator: .root, label: "root", fsType: "ext4", mountPoint: "/", architecture: .x86_64),
            .init(number: 2, designator: .home, label: "home", fsType: "ext4", mountPoint: "/home"),
            .init(number: 3, designator: .srv, label: "srv", fsType: "ext4", mountPoint: "/srv"),
        ], warnings: ["the primary and backup GPT differ; using the primary"]),
    ]

    /// What `inspect --json` prints, decoded by the test's own reading of the documented
    /// schema (imgboot renders its JSON by hand and decodes none).
    struct Inspected: Decodable {
        var image: String
        var size: UInt64
        var sectorSize: Int
        var partitionTable: PartitionTableType?
        var imageUuid: String?
        var architecture: Architecture?
        var partitions: [InspectedPartition]
        var warnings: [String]
    }

    struct InspectedPartition: Decodable, Equatable {
        var number: Int
        var designator: Designator? = nil
        var typeUuid: String? = nil
        var mbrType: String? = nil
        var typeName: String? = nil
        var uuid: String? = nil
        var label: String? = nil
        var offset: UInt64
        var size: UInt64
        var fsType: String? = nil
        var fsUuid: String? = nil
        var fsLabel: String? = nil
        var architecture: Architecture? = nil
        var readOnly = false
        var noAuto = false
        var growFs = false
        var bootable = false
        var mountPoint: String? = nil
    }

    func inspect(_ name: String) throws -> (Inspected, [String: Any]) {
        let path = try Harness.fixture(name)
        let out = try Harness.imgboot(["inspect", "--json", path])
        try #require(out.status == 0, "inspect \(name) failed: \(out.stderr)")
        #expect(out.stderr.isEmpty)
        let data = Data(out.stdout.utf8)
        let image = try JSONDecoder().decode(Inspected.self, from: data)
        let raw = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (image, raw)
    }

    @Test(arguments: cases)
    func partitionsMatchTheRecipe(_ c: Case) throws {
        let (image, _) = try inspect(c.name)
        #expect(image.partitionTable == c.table)
        #expect(image.sectorSize == c.sectorSize)
        #expect(image.architecture == c.architecture)
        #expect(image.warnings.filter { !$0.contains("needs root") } == c.warnings)
        if c.name != "bad-primary" && c.name != "disagree" {
            #expect(image.imageUuid == String(format: "d15c%04d-0000-4000-a000-000000000000", c.id))
        }
        try #require(image.partitions.count == c.partitions.count)
        for (p, e) in zip(image.partitions, c.partitions) {
            #expect(p.number == e.number)
            #expect(p.designator == e.designator, "\(e)")
            #expect(p.label == e.label, "\(e)")
            #expect(p.fsType == e.fsType, "\(e)")
            #expect(p.mountPoint == e.mountPoint, "\(e)")
            #expect(p.readOnly == e.readOnly, "\(e)")
            #expect(p.noAuto == e.noAuto, "\(e)")
            #expect(p.growFs == e.growFs, "\(e)")
            #expect(p.architecture == e.architecture, "\(e)")
            if c.name != "bad-primary" && c.name != "disagree" {
                #expect(p.uuid == Expected.uuid("9a47", fixture: c.id, number: e.number), "\(e)")
                if e.fsType == "ext4" || e.fsType == "btrfs" || e.fsType == "xfs" || e.fsType == "erofs" {
                    #expect(p.fsUuid == Expected.uuid("f5f5", fixture: c.id, number: e.number), "\(e)")
                }
            }
            #expect(p.offset % UInt64(c.sectorSize) == 0)
        }
    }

    @Test func basicOffsetsAndSizes() throws {
        let (image, _) = try inspect("basic")
        #expect(image.size == 36 << 20)
        #expect(image.partitions.map(\.offset) == [1 << 20, 13 << 20, 21 << 20])
        #expect(image.partitions.map(\.size) == [12 << 20, 8 << 20, 14 << 20])
        #expect(image.partitions.map(\.fsLabel) == ["root", "home", "srv"])
        #expect(image.partitions.map(\.typeName) == ["Linux root (x86-64)", "Linux home", "Linux server data"])
    }

    @Test func bareFilesystem() throws {
        let (image, _) = try inspect("bare-ext4")
        #expect(image.partitionTable == nil)
        #expect(image.imageUuid == nil)
        #expect(image.partitions == [InspectedPartition(
            number: 0, designator: .root, offset: 0, size: 12 << 20, fsType: "ext4",
            fsUuid: "f5f50002-0000-4000-a000-000000000000", fsLabel: "root", mountPoint: "/")])
    }

    @Test func mbr() throws {
        let (image, _) = try inspect("mbr")
        #expect(image.partitionTable == .dos)
        #expect(image.imageUuid == "0xd15c0009")
        #expect(image.partitions.map(\.mbrType) == ["0x83", "0x83", "0x82"])
        #expect(image.partitions.map(\.bootable) == [false, true, false])
        #expect(image.partitions.map(\.designator) == [.linuxGeneric, .root, .swap])
        #expect(image.partitions.map(\.mountPoint) == [nil, "/", nil])
        #expect(image.partitions.map(\.fsType) == ["ext4", "ext4", "swap"])
        #expect(image.partitions.allSatisfy { $0.typeUuid == nil })
    }

    /// A GPT with 256-byte entries reads as basic does, in the table for people and in the JSON:
    /// same offsets, sizes, types and filesystems; its labels (srv's decoded from UTF-16 by
    /// imgboot) shown as they are.
    @Test func entriesOf256Bytes() throws {
        let (image, raw) = try inspect("entries-256")
        let (basic, _) = try inspect("basic")
        #expect(raw["partitionTable"] as? String == "gpt")
        #expect(image.partitions.map(\.offset) == basic.partitions.map(\.offset))
        #expect(image.partitions.map(\.size) == basic.partitions.map(\.size))
        #expect(image.partitions.map(\.typeName) == basic.partitions.map(\.typeName))
        #expect(image.partitions.map(\.fsUuid) == basic.partitions.map(\.fsUuid))
        let labels = (raw["partitions"] as? [[String: Any]])?.map { $0["label"] as? String }
        #expect(labels == ["root", "home", "srv-ü😀"])

        let out = try Harness.imgboot(["inspect", try Harness.fixture("entries-256")])
        #expect(out.status == 0)
        #expect(out.stderr.isEmpty)
        let lines = out.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("Table:      GPT, 512-byte sectors"))
        #expect(lines.contains("Disk UUID:  d15c0001-0000-4000-a000-000000000000"))
        let rows = lines.filter { $0.first?.isNumber == true }
        try #require(rows.count == 3, "\(out.stdout)")
        #expect(rows[0].hasPrefix("1  root (x86-64)  root ") && rows[0].hasSuffix("  /"))
        #expect(rows[1].hasPrefix("2  home           home ") && rows[1].hasSuffix("  /home"))
        #expect(rows[2].hasPrefix("3  srv            srv-ü😀 ") && rows[2].hasSuffix("  /srv"))
        #expect(rows[2].contains("9a470001-0003-4000-a000-000000000000"))
    }

    /// Every key of the documented schema is present, nulls included.
    @Test func jsonHasEveryKey() throws {
        let (_, raw) = try inspect("bare-ext4")
        #expect(Set(raw.keys) == ["image", "size", "sectorSize", "partitionTable", "imageUuid",
                                  "architecture", "osRelease", "hostname", "machineId", "init", "partitions", "warnings"])
        #expect(raw["partitionTable"] is NSNull)
        let partition = try #require((raw["partitions"] as? [[String: Any]])?.first)
        #expect(Set(partition.keys) == ["number", "designator", "typeUuid", "mbrType", "typeName", "uuid",
                                        "label", "offset", "size", "fsType", "fsUuid", "fsLabel",
                                        "architecture", "readOnly", "noAuto", "growFs", "bootable", "mountPoint"])
        #expect(partition["typeUuid"] is NSNull)
    }

    /// As root, inspect reads os-release, hostname and machine-id from the image — the newest
    /// root's, from the /usr partition when /etc/os-release points there — and leaves nothing
    /// mounted or attached.
    @Test(.enabled(if: Harness.isRoot, "reading an image's metadata needs root"),
          arguments: [("basic", "1.0"), ("entries-256", "1.0"), ("two-roots", "1.10"), ("split-usr", "1.0"), ("squashfs", "1.0"),
                      ("erofs", "1.0"), ("btrfs-xfs", "1.0"), ("bare-ext4", "1.0"), ("mbr", "1.0")])
    func metadata(name: String, version: String) throws {
        let path = try Harness.fixture(name)
        let mountsBefore = Harness.mountPoints()
        let (_, raw) = try inspect(name)
        let osRelease = try #require(raw["osRelease"] as? [String: String])
        #expect(osRelease["ID"] == "imgboot-busybox")
        #expect(osRelease["VERSION_ID"] == version)
        #expect(raw["hostname"] as? String == "busybox-demo")
        #expect(raw["machineId"] as? String == "b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b")
        #expect(Harness.loopDevices(backing: path).isEmpty)
        #expect(Harness.mountPoints() == mountsBefore)
    }

    @Test func metadataIsNullWithoutARoot() throws {
        let (_, raw) = try inspect("foreign-arch")
        #expect(raw["osRelease"] is NSNull)
        #expect(raw["hostname"] is NSNull)
        #expect(raw["machineId"] is NSNull)
    }

    @Test func humanOutput() throws {
        let path = try Harness.fixture("flags")
        let out = try Harness.imgboot(["inspect", path])
        #expect(out.status == 0)
        let lines = out.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("Table:      GPT, 512-byte sectors"))
        #expect(lines.contains("Arch:       x86-64"))
        #expect(lines.contains("Disk UUID:  d15c0007-0000-4000-a000-000000000000"))
        if Harness.isRoot {
            #expect(lines.contains("OS:         imgboot busybox 1.0"))
            #expect(lines.contains("Hostname:   busybox-demo"))
            #expect(lines.contains("Machine ID: b5b5b5b5b5b54b5b8b5b5b5b5b5b5b5b"))
        }
        let rows = lines.filter { $0.first?.isNumber == true }
        try #require(rows.count == 4)
        #expect(rows[0].hasPrefix("1  root (x86-64)") && rows[0].hasSuffix("  /"))
        #expect(rows[1].contains("no-auto") && rows[1].hasSuffix("  -"))
        #expect(rows[2].contains(" ro ") && rows[2].hasSuffix("  /srv"))
        #expect(rows[3].contains("grow-fs") && rows[3].hasSuffix("  /var"))
        #expect(rows[0].contains("9a470007-0001-4000-a000-000000000000"))
        #expect(rows[0].contains("12.0 MiB"))
    }

    /// inspect reads only: the image's bytes are the same afterwards.
    @Test func inspectDoesNotWrite() throws {
        let path = try Harness.fixture("basic")
        let before = Harness.sha256(path)
        #expect(try Harness.imgboot(["inspect", path]).status == 0)
        #expect(Harness.sha256(path) == before)
    }

    // MARK: - Compared with systemd-dissect

    static let hasSystemdDissect = FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-dissect")

    /// Fixtures on which both tools agree. Not here: foreign-arch (systemd-dissect lists the
    /// arm64 root as if usable), sector4k (systemd 252 finds no table), fs-and-gpt (it takes
    /// the ext4 superblock and ignores the GPT; imgboot refuses the ambiguity).
    @Test(.enabled(if: hasSystemdDissect, "systemd-dissect is not installed"),
          arguments: ["basic", "bare-ext4", "squashfs", "erofs", "btrfs-xfs", "split-usr", "flags",
                      "generic", "mbr", "two-roots", "bad-primary"])
    func agreesWithSystemdDissect(_ name: String) throws {
        let path = try Harness.fixture(name)
        let reference = Harness.run(["/usr/bin/systemd-dissect", "--json=short", path])
        try #require(reference.status == 0, "systemd-dissect failed: \(reference.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(reference.stdout.utf8)) as? [String: Any])
        let mounts = try #require(json["mounts"] as? [[String: Any]])
        let (image, _) = try inspect(name)
        let used = image.partitions.filter { $0.mountPoint != nil }
        #expect(used.count == mounts.count)
        for m in mounts {
            let number = (m["partno"] as? Int) ?? 0
            let p = try #require(used.first { $0.number == number }, "partition \(number) of systemd-dissect")
            #expect(p.designator?.rawValue == m["designator"] as? String)
            #expect(p.fsType == m["fstype"] as? String)
            #expect(p.readOnly == (m["rw"] as? String == "ro"), "partition \(number)")
            if let uuid = m["partition_uuid"] as? String { #expect(p.uuid == uuid) }
            if let label = m["partition_label"] as? String { #expect(p.label == label) }
        }
    }

    // MARK: - Bad input

    static let malformed: [(String, String)] = [
        ("empty", "empty file (0 bytes), not a disk image"),
        ("tiny", "too small (100 bytes) to hold a partition table or a filesystem"),
        ("random", "no partition table or filesystem found"),
        ("bad-both", "corrupt GPT: primary header has a bad checksum; backup header has a bad checksum"),
        ("bad-entries-crc", "corrupt GPT: primary header has a bad entry-array checksum; backup header has a bad entry-array checksum"),
        ("overlap", "invalid partition table: partitions 1 and 2 overlap"),
        ("past-end", "invalid partition table: partition 3 ends beyond the end of the image"),
        ("end-before-start", "invalid partition table: partition 2 ends before it starts"),
        ("absurd-count", "corrupt GPT: primary header declares 2147483647 entries of 128 bytes"),
        ("entry-size", "corrupt GPT: primary header has an invalid entry size (96 bytes"),
        ("truncated", "invalid partition table: partition 3 ends beyond the end of the image"),
        ("fs-and-gpt", "ambiguous image: both a GPT and a filesystem (ext4) at the start of the image"),
    ]

    @Test(arguments: malformed)
    func malformedImagesGetOneLineAnd125(name: String, message: String) throws {
        let path = try Harness.fixture(name)
        let out = try Harness.imgboot(["inspect", path])
        #expect(out.status == 125)
        #expect(out.stdout.isEmpty)
        #expect(out.stderr.hasPrefix("imgboot: \(path): \(message)"), "got: \(out.stderr)")
        #expect(out.stderr.split(separator: "\n").count == 1)
    }

    @Test func missingFile() throws {
        let out = try Harness.imgboot(["inspect", "/nonexistent/image.raw"])
        #expect(out.status == 125)
        #expect(out.stderr == "imgboot: /nonexistent/image.raw: no such file\n")
    }

    @Test func directory() throws {
        let out = try Harness.imgboot(["inspect", "/tmp"])
        #expect(out.status == 125)
        #expect(out.stderr == "imgboot: /tmp: is a directory, not a disk image\n")
    }

    /// A FIFO must not make inspect hang waiting for a writer.
    @Test func fifo() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("imgboot-fifo-\(getpid())").path
        try #require(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        let out = try Harness.imgboot(["inspect", path])
        #expect(out.status == 125)
        #expect(out.stderr == "imgboot: \(path): not a regular file or block device\n")
    }

    @Test(.enabled(if: Harness.isRoot, "needs root to become another user"))
    func unreadableFile() throws {
        // A copy only its owner (root) can read, in a directory anyone can enter.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgboot-unreadable-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("basic.raw").path
        try FileManager.default.copyItem(atPath: try Harness.fixture("basic"), toPath: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let out = Harness.run(["/usr/sbin/runuser", "-u", "nobody", "--", Harness.binary, "inspect", path])
        #expect(out.status == 125)
        #expect(out.stderr == "imgboot: \(path): cannot open: permission denied\n")
    }

    @Test func usageErrorsExit125() throws {
        let out = try Harness.imgboot(["inspect"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("Missing expected argument '<image>'"))
        let help = try Harness.imgboot(["inspect", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: imgboot inspect"))
    }
}

/// inspect's OS and Init lines (issue 13), and their JSON, on images whose os-release and init
/// take the shapes os-release(5) and `boot` allow: variants of basic made with debugfs.
@Suite(.enabled(if: Harness.isRoot, "reading an image's metadata needs root"))
struct InspectMetadataTests {
    struct Shape: Sendable, CustomTestStringConvertible {
        var name: String
        /// debugfs commands on the root partition.
        var edits: [String]
        var os: String
        var osRelease: [String: String]
        var initPath: String?
        var testDescription: String { name }
    }

    /// An os-release of these lines, written over the image's by debugfs.
    static func osRelease(_ lines: String) -> [String] {
        ["rm etc/os-release", "write %DIR%/os-release etc/os-release"].map { $0 + "\u{0}" + lines }
    }

    static let shapes: [Shape] = [
        Shape(name: "pretty name", edits: [], os: "imgboot busybox 1.0",
              osRelease: ["NAME": "imgboot busybox", "ID": "imgboot-busybox", "VERSION_ID": "1.0", "PRETTY_NAME": "imgboot busybox 1.0"],
              initPath: "/sbin/init"),
        Shape(name: "name and version", edits: osRelease("NAME=Foo\nVERSION=\"3 (Bar)\"\nID=foo\n"), os: "Foo 3 (Bar)",
              osRelease: ["NAME": "Foo", "VERSION": "3 (Bar)", "ID": "foo"], initPath: "/sbin/init"),
        Shape(name: "name only", edits: osRelease("NAME=Foo\nID=foo\nVERSION_ID=9\n"), os: "Foo",
              osRelease: ["NAME": "Foo", "ID": "foo", "VERSION_ID": "9"], initPath: "/sbin/init"),
        Shape(name: "id and version id", edits: osRelease("ID=foo\nVERSION_ID=3\n"), os: "foo 3",
              osRelease: ["ID": "foo", "VERSION_ID": "3"], initPath: "/sbin/init"),
        Shape(name: "empty", edits: osRelease("# nothing\n"), os: "-", osRelease: [:], initPath: "/sbin/init"),
        Shape(name: "no os-release, no init", edits: ["rm etc/os-release", "rm usr/sbin/init"], os: "-", osRelease: [:], initPath: nil),
        Shape(name: "init not executable", edits: ["sif usr/bin/busybox mode 0100644"], os: "imgboot busybox 1.0",
              osRelease: ["NAME": "imgboot busybox", "ID": "imgboot-busybox", "VERSION_ID": "1.0", "PRETTY_NAME": "imgboot busybox 1.0"],
              initPath: nil),
        Shape(name: "systemd", edits: ["mkdir usr/lib/systemd", "write %DIR%/os-release usr/lib/systemd/systemd\u{0}#!/bin/sh\n",
                                       "sif usr/lib/systemd/systemd mode 0100755"],
              os: "imgboot busybox 1.0",
              osRelease: ["NAME": "imgboot busybox", "ID": "imgboot-busybox", "VERSION_ID": "1.0", "PRETTY_NAME": "imgboot busybox 1.0"],
              initPath: "/usr/lib/systemd/systemd"),
    ]

    /// The text's OS and Init lines, and the JSON's osRelease and init, for each shape; every
    /// header line is there; nothing is left attached or mounted; the image is not written.
    @Test(arguments: shapes)
    func osAndInit(_ shape: Shape) throws {
        let image = try ImageCopy("basic")
        let scratch = try ScratchDirectory("imgboot-os-release")
        var commands: [String] = []
        for edit in shape.edits {
            // "COMMAND\0CONTENT": the content goes into a file of the scratch directory first.
            let parts = edit.split(separator: "\u{0}", maxSplits: 1).map(String.init)
            if parts.count == 2 { try parts[1].write(toFile: scratch.path + "/os-release", atomically: false, encoding: .utf8) }
            commands.append(parts[0].replacingOccurrences(of: "%DIR%", with: scratch.path))
        }
        if !commands.isEmpty { try Hardening.debugfs(image.path, commands) }
        let hash = Harness.sha256(image.path)
        // Other suites mount in directories of their own meanwhile: only a mount elsewhere can be inspect's.
        func mountPoints() -> Set<String> {
            Harness.mountPoints().filter { point in
                !["/tmp/imgboot-mount-test-", "/tmp/imgboot-staging.", "/run/imgboot/", "/var/tmp/imgboot-attach-"].contains { point.hasPrefix($0) }
            }
        }
        let mounts = mountPoints()

        let text = try Harness.imgboot(["inspect", image.path])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("OS:         \(shape.os)"), "\(lines.prefix(10))")
        #expect(lines.contains("Init:       \(shape.initPath ?? "- (use `imgboot run`)")"), "\(lines.prefix(10))")
        #expect(lines.prefix(9).map { String($0.prefix(12)) } == [
            "Image:      ", "Size:       ", "Table:      ", "Disk UUID:  ", "Arch:       ", "OS:         ", "Hostname:   ",
            "Machine ID: ", "Init:       ",
        ])

        let json = try Harness.imgboot(["inspect", "--json", image.path])
        #expect(json.status == 0)
        #expect(json.stdout.split(separator: "\n").count == 1, "bare --json is one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["osRelease"] as? [String: String] == shape.osRelease)
        if let path = shape.initPath { #expect(object["init"] as? String == path) } else { #expect(object["init"] is NSNull) }

        #expect(Harness.loopDevices(backing: image.path).isEmpty)
        #expect(mountPoints() == mounts)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// The init is looked up in the assembled tree: split-usr's /sbin -> usr/sbin leads into
    /// its usr partition.
    @Test func initThroughTheUsrPartition() throws {
        let out = try Harness.imgboot(["inspect", "--json=short", try Harness.fixture("split-usr")])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(object["init"] as? String == "/sbin/init")
    }

    /// Without a root, every line is still printed, `-` for each; the JSON says null, and a
    /// warning says there is nothing to boot.
    @Test func noRootPrintsEveryLine() throws {
        let path = try Harness.fixture("foreign-arch")
        let text = try Harness.imgboot(["inspect", path])
        let lines = text.stdout.split(separator: "\n").map(String.init)
        for line in ["OS:         -", "Hostname:   -", "Machine ID: -", "Init:       -",
                     "warning: no root partition to boot: `run`, `boot` and `mount` cannot use this image"] {
            #expect(lines.contains(line), "\(line) is missing")
        }
        let json = try Harness.imgboot(["inspect", "--json=pretty", path])
        #expect(json.stdout.split(separator: "\n").count > 10, "pretty is indented, on many lines")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["init"] is NSNull)
    }

    /// short, pretty and a bare --json carry the same object; off is the table.
    @Test func jsonFormats() throws {
        let path = try Harness.fixture("basic")
        func object(_ option: String) throws -> NSDictionary {
            let out = try Harness.imgboot(["inspect", option, path])
            #expect(out.status == 0, "\(out.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? NSDictionary)
        }
        let short = try object("--json=short")
        #expect(try object("--json") == short)
        #expect(try object("--json=pretty") == short)
        #expect(try Harness.imgboot(["inspect", "--json=off", path]).stdout.hasPrefix("Image:"))
        let bad = try Harness.imgboot(["inspect", "--json=yaml", path])
        #expect(bad.status == 125)
    }
}

extension PartitionTableType: Decodable {}
extension Designator: Decodable {}
extension Architecture: Decodable {}
