import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 6, malformed images: every one through `inspect`, `run` and (in
/// `MountCommandTests.HardeningMalformed`, with the other tests that mount on the host)
/// `mount --read-only`. Each command either refuses the image — status 125, one line naming
/// the image and the problem — or uses it as documented; and afterwards no loop device is
/// backed by the image, no mount of imgboot's is in the host's table, no process is left and
/// the image's bytes are the same (`Leftovers`).
///
/// Already proven elsewhere, and not repeated here: inspect's one-line errors for the
/// malformed fixtures (`InspectTests.malformedImagesGetOneLineAnd125`, without the leftover
/// checks); `mount` of bad-primary, disagree, two-roots and sector4k in every mode
/// (`MountCommandTests.EveryMode`); the newest of two-roots' versioned labels
/// (`InspectTests`, `MountCommandTests.Shapes.twoRootsTheNewestWins`); `mount` of garbage-root,
/// foreign-arch and overlap (`MountCommandTests.Errors`).
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct HardeningMalformedTests {
    /// An image every command refuses in the dissector, with one and the same line.
    struct Refused: Sendable, CustomTestStringConvertible {
        var fixture: String
        var message: String
        var testDescription: String { fixture }
    }

    static let refused: [Refused] = [
        .init(fixture: "empty", message: "empty file (0 bytes), not a disk image"),
        .init(fixture: "tiny", message: "too small (100 bytes) to hold a partition table or a filesystem"),
        .init(fixture: "random", message: "no partition table or filesystem found"),
        .init(fixture: "bad-both", message: "corrupt GPT: primary header has a bad checksum; backup header has a bad checksum"),
        .init(fixture: "bad-entries-crc", message: "corrupt GPT: primary header has a bad entry-array checksum; backup header has a bad entry-array checksum"),
        .init(fixture: "overlap", message: "invalid partition table: partitions 1 and 2 overlap"),
        .init(fixture: "past-end", message: "invalid partition table: partition 3 ends beyond the end of the image (LBA 75775; the image has 73728 sectors)"),
        .init(fixture: "end-before-start", message: "invalid partition table: partition 2 ends before it starts (LBA 43007 to 26624)"),
        .init(fixture: "zero-size", message: "invalid partition table: partition 2 is empty (zero sectors: first LBA 26624, last LBA 26623)"),
        .init(fixture: "absurd-count", message: "corrupt GPT: primary header declares 2147483647 entries of 128 bytes, more than the 1024 KiB imgboot accepts; backup header declares 2147483647 entries of 128 bytes, more than the 1024 KiB imgboot accepts"),
        .init(fixture: "entry-size", message: "corrupt GPT: primary header has an invalid entry size (96 bytes; must be 128 times a power of two); backup header has an invalid entry size (96 bytes; must be 128 times a power of two)"),
        .init(fixture: "truncated", message: "invalid partition table: partition 3 ends beyond the end of the image (LBA 71679; the image has 44236 sectors)"),
        .init(fixture: "fs-and-gpt", message: "ambiguous image: both a GPT and a filesystem (ext4) at the start of the image"),
        .init(fixture: "sector-both", message: "ambiguous image: GPT headers are valid for both 512- and 4096-byte sectors"),
    ]

    @Test(arguments: refused)
    func inspectRefuses(_ c: Refused) throws {
        let image = try ImageCopy(c.fixture)
        for json in [false, true] {
            let out = try Harness.imgboot(["inspect"] + (json ? ["--json"] : []) + [image.path])
            Hardening.expectOwnFailure(out, image: image.path, c.message)
            image.leftovers.expectNone(imageUnchanged: true)
        }
    }

    @Test(arguments: refused)
    func runRefuses(_ c: Refused) throws {
        let image = try ImageCopy(c.fixture)
        for mode in ["overlay", "no"] {
            let out = try image.run(["--volatile=\(mode)"], ["true"])
            Hardening.expectOwnFailure(out, image: image.path, c.message)
        }
        #expect(image.isUnchanged)
    }

    /// An absurd entry count allocates nothing in proportion: inspect stays small (the same as
    /// for a sound image: about 17 MB here), far below 50 MB.
    @Test(.enabled(if: Hardening.hasTime, "/usr/bin/time (Debian package time) is not installed"),
          arguments: ["absurd-count", "basic"])
    func inspectStaysSmall(_ fixture: String) throws {
        let image = try ImageCopy(fixture)
        let (out, kib) = try Hardening.peakRSS([Harness.binary, "inspect", image.path])
        #expect(out.status == (fixture == "basic" ? 0 : 125), "\(out.stderr)")
        let peak = try #require(kib, "time reported no peak RSS")
        #expect(peak < 50 * 1024, "inspect's peak RSS: \(peak) KiB")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// sector-both is refused because each of its headers is valid on its own: with either one
    /// wiped, the other is read (its three partitions), which proves the fixture is what it
    /// claims to be.
    @Test(arguments: [(512, 4096), (4096, 512)] as [(Int, Int)])
    func sectorBothHoldsTwoValidTables(wiped: Int, left: Int) throws {
        let image = try ImageCopy("sector-both")
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: image.path))
        try file.seek(toOffset: UInt64(wiped))
        try file.write(contentsOf: Data(count: 92))
        try file.close()
        let out = try Harness.imgboot(["inspect", "--json", image.path])
        try #require(out.status == 0, "\(out.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        #expect(json["sectorSize"] as? Int == left)
        #expect((json["partitions"] as? [[String: Any]])?.compactMap { $0["mountPoint"] as? String } == ["/", "/home", "/srv"])
        image.leftovers.expectNone(imageUnchanged: false)
    }

    // MARK: - Tables imgboot reads, partitions it cannot mount

    /// Images whose table is sound but whose root cannot be used: inspect shows them (with a
    /// warning), run refuses them.
    struct Unmountable: Sendable, CustomTestStringConvertible {
        var fixture: String
        /// inspect's warning.
        var warning: String
        /// run's one line (overlay mode).
        var runError: String
        var testDescription: String { fixture }
    }

    static let unmountable: [Unmountable] = [
        .init(fixture: "garbage-root", warning: "partition 1 (root): no filesystem found",
              runError: "no root partition to mount (partition 1 (root): no filesystem found)"),
        .init(fixture: "ext2-root", warning: "partition 1 (root): ext2 filesystems are not mounted automatically",
              runError: "no root partition to mount (partition 1 (root): ext2 filesystems are not mounted automatically)"),
        .init(fixture: "corrupt-root",
              warning: "cannot read the image's os-release, hostname and machine ID: %IMAGE%: partition 1 (root): mount ext4 read-only: Structure needs cleaning",
              runError: "partition 1 (root): mount ext4 on [staging]/lower-1: Structure needs cleaning"),
    ]

    @Test(arguments: unmountable)
    func rootThatCannotBeMounted(_ c: Unmountable) throws {
        let image = try ImageCopy(c.fixture)
        let inspect = try Harness.imgboot(["inspect", "--json", image.path])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect((json["warnings"] as? [String])?.contains(c.warning.replacingOccurrences(of: "%IMAGE%", with: image.path)) == true,
                "warnings: \(json["warnings"] ?? "none")")
        image.leftovers.expectNone(imageUnchanged: true)

        let run = try image.run([], ["true"])
        Hardening.expectOwnFailure(run, image: image.path, c.runError)
        #expect(image.isUnchanged)
    }

    // MARK: - Damaged or unusual tables imgboot uses

    /// A bad primary header with a good backup: the backup is used, with a warning, by every
    /// command (the documented decision); primary and backup that disagree: the primary, with
    /// a warning.
    @Test(arguments: [("bad-primary", "the primary GPT header has a bad checksum; using the backup"),
                      ("disagree", "the primary and backup GPT differ; using the primary")])
    func damagedTableIsUsedWithAWarning(fixture: String, warning: String) throws {
        let image = try ImageCopy(fixture)
        let inspect = try Harness.imgboot(["inspect", image.path])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.split(separator: "\n").contains("warning: \(warning)"), "\(inspect.stdout)")
        image.leftovers.expectNone(imageUnchanged: true)

        let run = try image.run([], ["sh", "-c", "cat /etc/imgboot-fixture /home/user/hello.txt /srv/www/index.html"])
        #expect(run.status == 0)
        #expect(run.stdout == "basic\nhello from the imgboot home partition\n<h1>imgboot srv partition</h1>\n")
        #expect(run.stderr == "imgboot: warning: \(image.path): \(warning)\n")
        #expect(image.isUnchanged)
    }

    /// 256 entries, srv in entry 200: a valid table, read in full — partition 200 is srv.
    @Test func moreThan128Entries() throws {
        let image = try ImageCopy("many-entries")
        let inspect = try Harness.imgboot(["inspect", "--json", image.path])
        try #require(inspect.status == 0, "\(inspect.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let partitions = try #require(json["partitions"] as? [[String: Any]])
        #expect(partitions.compactMap { $0["number"] as? Int } == [1, 2, 200])
        #expect(partitions.compactMap { $0["mountPoint"] as? String } == ["/", "/home", "/srv"])
        #expect((json["warnings"] as? [String]) == [])
        image.leftovers.expectNone(imageUnchanged: true)

        for mode in ["overlay", "state", "yes"] {
            let lines = try image.sh(["--volatile=\(mode)"], "cat /srv/www/index.html; grep -c ' /srv ' /proc/mounts")
            #expect(lines == ["<h1>imgboot srv partition</h1>", "1"], "\(mode)")
        }
        #expect(image.isUnchanged)
        #expect(try image.sh(["--volatile=no"], "echo written > /srv/new && cat /srv/new") == ["written"])
    }

    /// Two roots with the same label: the lower partition number wins, everywhere.
    @Test func equalLabelsTheLowerNumberWins() throws {
        let image = try ImageCopy("equal-labels")
        let inspect = try Harness.imgboot(["inspect", "--json", image.path])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let partitions = try #require(json["partitions"] as? [[String: Any]])
        #expect(partitions.map { $0["mountPoint"] as? String } == ["/", nil])
        #expect(partitions.map { $0["label"] as? String } == ["fooOS_1.0", "fooOS_1.0"])
        for mode in ["overlay", "state", "no"] {
            #expect(try image.sh(["--volatile=\(mode)"], "cat /etc/root-partition") == ["1"], "\(mode)")
        }
        // Only p1 was ever attached: mode no wrote p1's superblock (mount time), never p2's.
        let p2 = try Hardening.partitionOffset(image.path, 2)
        #expect(Harness.run(["/bin/sh", "-c", "cmp -s -i \(p2):\(p2) \"$0\" \"$1\"", image.path, try Harness.fixture("equal-labels")]).status == 0,
                "partition 2 was written")
    }

    // MARK: - A dirty journal

    /// A root ext4 with an unreplayed journal transaction: read-only and volatile runs see the
    /// filesystem as it is on disk (`norecovery`) and leave the image's bytes alone; the
    /// writable run shows the transaction is real — the kernel replays it.
    @Test func dirtyJournalIsNotReplayedOnAReadOnlyBoot() throws {
        let image = try ImageCopy("dirty-journal")
        for options in [["--volatile=state"], ["--volatile=overlay"], ["--read-only"]] {
            #expect(try image.sh(options, "cat /etc/journal-marker; cat /home/user/hello.txt") ==
                    ["not replayed", "hello from the imgboot home partition"], "\(options)")
            #expect(image.isUnchanged, "\(options) wrote the image")
        }
        // yes: only /usr comes from the root, read-only.
        #expect(try image.sh(["--volatile=yes"], "test -x /usr/bin/busybox && echo usr") == ["usr"])
        #expect(image.isUnchanged)
        // inspect reads the root too (a detached read-only mount).
        #expect(try Harness.imgboot(["inspect", image.path]).status == 0)
        #expect(image.isUnchanged)

        #expect(try image.sh(["--volatile=no"], "cat /etc/journal-marker") == ["REPLAYED!!!!"])
        #expect(!image.isUnchanged)
    }

    // MARK: - A dirty xfs log, an unreplayed btrfs log tree

    /// A fixture whose root (partition 1) holds a log that a mount would replay, made by the
    /// kernel itself (tools/lib/dirty-log.sh, as a crash leaves it): only the log says that
    /// usr/lib/log-marker reads "REPLAYED!!!!"; on disk without it, it reads "not replayed".
    struct DirtyLog: Sendable {
        var fixture: String
        var fs: String
        /// The superblock option that keeps a read-only mount from replaying the log.
        var noReplay: String

        static let xfs = DirtyLog(fixture: "dirty-xfs", fs: "xfs", noReplay: "norecovery")
        static let btrfs = DirtyLog(fixture: "dirty-btrfs", fs: "btrfs", noReplay: "rescue=nologreplay")

        /// Whether the root of `image` still has a log to replay, judged by the filesystem's own
        /// tools on a copy of the partition (xfs_repair may write): xfs_repair stops at a dirty
        /// log with exit status 2 (xfs_repair(8)) and goes on with 0 on a clean one; a btrfs
        /// superblock names its log tree (`log_root`, 0 when there is none).
        func needsReplay(_ image: String) throws -> Bool {
            let (offset, size) = try Hardening.partition(image, 1)
            let scratch = try ScratchDirectory("imgboot-dirty-log")
            let copy = scratch.path + "/root.fs"
            let dd = Harness.run(["/bin/dd", "if=\(image)", "of=\(copy)", "bs=1M", "skip=\(offset)", "count=\(size)",
                                  "iflag=skip_bytes,count_bytes", "status=none"])
            guard dd.status == 0 else { throw HarnessError("dd of partition 1 of \(image): \(dd.stderr)") }
            switch fs {
            case "xfs":
                let repair = Harness.run(["/sbin/xfs_repair", copy])
                guard repair.status == 0 || repair.status == 2 else {
                    throw HarnessError("xfs_repair exited \(repair.status): \(repair.stderr)")
                }
                return repair.status == 2
            default:
                let dump = Harness.run(["/bin/btrfs", "inspect-internal", "dump-super", copy])
                var logRoot: UInt64?
                for line in dump.stdout.split(separator: "\n") {
                    let fields = line.split(whereSeparator: \.isWhitespace)
                    if fields.count == 2, fields[0] == "log_root" { logRoot = UInt64(fields[1]) }
                }
                guard dump.status == 0, let logRoot else { throw HarnessError("btrfs dump-super: \(dump.stdout)\(dump.stderr)") }
                return logRoot != 0
            }
        }

        /// The control: a copy of the image's root mounted as anyone would mount it — writable,
        /// from a loop device at the partition's offset, in a mount namespace of the test's own.
        /// Returns what the marker reads there; the copy is what the kernel left.
        func mountWritable(_ copy: ImageCopy) throws -> Harness.Output {
            let (offset, size) = try Hardening.partition(copy.path, 1)
            let mnt = copy.directory + "/mnt"
            try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
            let out = Hardening.inPrivateMountNamespace(
                "mount -t \(fs) -o loop,offset=\(offset),sizelimit=\(size) \"$0\" \"$1\" && cat \"$1/usr/lib/log-marker\" && umount \"$1\"",
                [copy.path, mnt])
            // The loop device is mount(8)'s autoclear one: it goes with the mount, just after.
            #expect(Harness.waitUntil(upTo: 5) { Harness.loopDevices(backing: copy.path).isEmpty },
                    "loop devices still backed by \(copy.path)")
            return out
        }
    }

    /// A root xfs with a dirty log, and a root btrfs with a log tree: in every mode that does
    /// not write the image — run's overlay (the default), state and yes, `--read-only`, and
    /// inspect's metadata mount — the container sees the marker as the filesystem has it
    /// without the log ("not replayed": norecovery and rescue=nologreplay leave the log alone,
    /// and only the log holds the new version), the image's SHA-256 stays the same, nothing is
    /// left, and the log is still there to replay. The control proves the log is real and
    /// would write the image: a copy mounted writable (by mount(8), then by `--volatile=no`)
    /// has it replayed — the marker reads "REPLAYED!!!!", the log is gone, the bytes changed.
    @Test(.enabled(if: Hardening.hasXFS, "the kernel has no xfs: a dirty xfs log can be neither made nor mounted here"))
    func dirtyXFSLogIsNotReplayedOnAReadOnlyBoot() throws {
        try expectLogNotReplayed(.xfs)
    }

    @Test(.enabled(if: Hardening.hasBtrfs, "the kernel has no btrfs: a btrfs log tree can be neither made nor mounted here"))
    func btrfsLogTreeIsNotReplayedOnAReadOnlyBoot() throws {
        try expectLogNotReplayed(.btrfs)
    }

    func expectLogNotReplayed(_ log: DirtyLog, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let image = try ImageCopy(log.fixture)
        try #require(try log.needsReplay(image.path), "\(log.fixture)'s log is not dirty: nothing to attack",
                     sourceLocation: sourceLocation)
        for options in [[], ["--volatile=state"], ["--read-only"]] {
            #expect(try image.sh(options, "cat /usr/lib/log-marker /etc/imgboot-fixture", sourceLocation: sourceLocation) ==
                    ["not replayed", log.fixture], "\(options)", sourceLocation: sourceLocation)
            #expect(image.isUnchanged, "\(options) wrote the image", sourceLocation: sourceLocation)
        }
        // yes: a tmpfs root, with only the root's /usr (read-only), where the marker is.
        #expect(try image.sh(["--volatile=yes"], "cat /usr/lib/log-marker; test -e /etc/imgboot-fixture || echo no-etc",
                             sourceLocation: sourceLocation) == ["not replayed", "no-etc"], sourceLocation: sourceLocation)
        #expect(image.isUnchanged, "--volatile=yes wrote the image", sourceLocation: sourceLocation)
        // inspect reads the root's metadata through a detached read-only mount.
        let inspect = try Harness.imgboot(["inspect", image.path])
        #expect(inspect.status == 0 && inspect.stdout.contains("imgboot busybox 1.0"), "\(inspect.stdout)\(inspect.stderr)",
                sourceLocation: sourceLocation)
        image.leftovers.expectNone(imageUnchanged: true, sourceLocation: sourceLocation)
        #expect(try log.needsReplay(image.path), "the log is gone", sourceLocation: sourceLocation)

        // The control, on a copy of the image as the runs left it.
        let control = try ImageCopy(path: image.path, name: log.fixture + "-control")
        let mounted = try log.mountWritable(control)
        #expect(mounted.status == 0 && mounted.stdout == "REPLAYED!!!!\n", "mount(8): \(mounted.stdout)\(mounted.stderr)",
                sourceLocation: sourceLocation)
        #expect(!control.isUnchanged, "mounted writable, the copy was not written: the log was not replayed",
                sourceLocation: sourceLocation)
        #expect(try !log.needsReplay(control.path), "mounted writable, the log is still there", sourceLocation: sourceLocation)
        // imgboot's writable boot is the same mount: it replays the log, and writes the image.
        #expect(try image.sh(["--volatile=no"], "cat /usr/lib/log-marker", sourceLocation: sourceLocation) == ["REPLAYED!!!!"],
                sourceLocation: sourceLocation)
        #expect(!image.isUnchanged, "--volatile=no did not write the image", sourceLocation: sourceLocation)
        #expect(try !log.needsReplay(image.path), "--volatile=no left the log", sourceLocation: sourceLocation)
    }
}

// MARK: - mount --read-only, with the other tests that mount on the host

extension MountCommandTests {
    /// `imgboot mount --read-only` of every malformed image: the same line as the other
    /// commands, or the tree; nothing left on the host (strictly: the whole mount table outside
    /// the test's directory is as it was — hence here, serialised with MountCommandTests).
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct HardeningMalformed {
        @Test(arguments: HardeningMalformedTests.refused)
        func refused(_ c: HardeningMalformedTests.Refused) throws {
            let s = try Scratch(c.fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(["--read-only"])
            Hardening.expectOwnFailure(out, image: s.image, c.message)
            s.expectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
        }

        @Test(arguments: [("garbage-root", "no root partition to mount (partition 1 (root): no filesystem found)"),
                          ("ext2-root", "no root partition to mount (partition 1 (root): ext2 filesystems are not mounted automatically)"),
                          ("corrupt-root", "partition 1 (root): mount ext4 on /: Structure needs cleaning")])
        func rootThatCannotBeMounted(fixture: String, message: String) throws {
            let s = try Scratch(fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            Hardening.expectOwnFailure(try s.mount(["--read-only"]), image: s.image, message)
            s.expectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
        }

        /// Usable images: the tree, with the warning the damaged ones deserve.
        @Test(arguments: [("many-entries", nil, "basic"), ("equal-labels", nil, "equal-labels"),
                          ("bad-primary", "the primary GPT header has a bad checksum; using the backup", "basic"),
                          ("disagree", "the primary and backup GPT differ; using the primary", "basic"),
                          ("dirty-journal", nil, "dirty-journal")] as [(String, String?, String)])
        func usable(fixture: String, warning: String?, marker: String) throws {
            let s = try Scratch(fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(["--read-only"])
            try #require(out.status == 0, "\(out.stderr)")
            #expect(out.stderr == (warning.map { "imgboot: warning: \(s.image): \($0)\n" } ?? ""))
            host.expectConfined(to: s.mnt)
            #expect((try? String(contentsOfFile: s.mnt + "/etc/imgboot-fixture", encoding: .utf8)) == marker + "\n")
            if fixture == "many-entries" {
                #expect((try? String(contentsOfFile: s.mnt + "/srv/www/index.html", encoding: .utf8)) == "<h1>imgboot srv partition</h1>\n")
            }
            if fixture == "equal-labels" {
                #expect((try? String(contentsOfFile: s.mnt + "/etc/root-partition", encoding: .utf8)) == "1\n")
            }
            if fixture == "dirty-journal" {
                #expect((try? String(contentsOfFile: s.mnt + "/etc/journal-marker", encoding: .utf8)) == "not replayed\n")
                let options = MountInfo.current().first { $0.mountPoint == s.mnt }?.superOptions ?? []
                #expect(options.contains("norecovery"), "\(options)")
            }
            try s.umountAndExpectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
        }

        /// The dirty logs (`HardeningMalformedTests.DirtyLog`), mounted read-only on the host:
        /// norecovery or rescue=nologreplay in the superblock's options, the marker as the
        /// filesystem has it without the log, the image's bytes the same, its log still there.
        @Test(.enabled(if: Hardening.hasXFS, "the kernel has no xfs: a dirty xfs log can be neither made nor mounted here"))
        func dirtyXFSLog() throws {
            try dirtyLog(.xfs)
        }

        @Test(.enabled(if: Hardening.hasBtrfs, "the kernel has no btrfs: a btrfs log tree can be neither made nor mounted here"))
        func btrfsLogTree() throws {
            try dirtyLog(.btrfs)
        }

        func dirtyLog(_ log: HardeningMalformedTests.DirtyLog, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let s = try Scratch(log.fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(["--read-only"])
            try #require(out.status == 0, "\(out.stderr)", sourceLocation: sourceLocation)
            host.expectConfined(to: s.mnt, sourceLocation: sourceLocation)
            let root = MountInfo.current().first { $0.mountPoint == s.mnt }
            #expect(root?.fsType == log.fs, sourceLocation: sourceLocation)
            #expect(root?.superOptions.contains(log.noReplay) == true, "\(root?.superOptions ?? [])", sourceLocation: sourceLocation)
            #expect((try? String(contentsOfFile: s.mnt + "/usr/lib/log-marker", encoding: .utf8)) == "not replayed\n",
                    sourceLocation: sourceLocation)
            try s.umountAndExpectNothingLeft(host, sourceLocation: sourceLocation)
            #expect(Harness.sha256(s.image) == original, "mount --read-only wrote the image", sourceLocation: sourceLocation)
            #expect(try log.needsReplay(s.image), "the log is gone", sourceLocation: sourceLocation)
        }
    }
}
