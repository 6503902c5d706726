import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `imgboot mount` and `imgboot umount` as a user runs them, on copies of the fixture images: what
/// the tree shows, what can be written, the image's hash before and after, and that no loop
/// device or mount is left — not for the image, and nowhere on the host outside the directory.
///
/// One test at a time (`.serialized` reaches every nested suite): each compares the host's
/// mount table before and after.
@Suite(.serialized)
enum MountCommandTests {}

// MARK: - Every image with a root, in every mode

extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct EveryMode {
        /// What a fixture's recipe puts where (fixtures/README.md).
        struct Shape: Sendable, CustomStringConvertible {
            var fixture: String
            /// The content of the root's etc/imgboot-fixture: the fixture the root was built for.
            var marker: String
            var home = false
            var srv = false
            /// A var partition (var_tree: lib/marker).
            var varPartition = false
            /// squashfs or erofs: read-only whatever the mode.
            var readOnlyRoot = false
            /// Why `--read-only` cannot mount it, if it cannot.
            var readOnlyError: String? = nil
            var description: String { fixture }
        }

        static let shapes: [Shape] = [
            Shape(fixture: "basic", marker: "basic", home: true, srv: true),
            Shape(fixture: "bare-ext4", marker: "bare-ext4"),
            // The var partition has no tmp/ for the tmp partition, and with --read-only imgboot
            // does not create it (in mode no it does, on the var partition).
            Shape(fixture: "squashfs", marker: "squashfs", varPartition: true, readOnlyRoot: true,
                  readOnlyError: "partition 3 (tmp): mount point /var/tmp does not exist in the read-only image (imgboot never writes the image to create it)"),
            Shape(fixture: "erofs", marker: "erofs", readOnlyRoot: true),
            Shape(fixture: "btrfs-xfs", marker: "btrfs-xfs", home: true),
            Shape(fixture: "split-usr", marker: "split-usr"),
            // home is no-auto (not mounted); srv is read-only by its flag.
            Shape(fixture: "flags", marker: "flags", srv: true, varPartition: true),
            Shape(fixture: "generic", marker: "generic"),
            Shape(fixture: "mbr", marker: "mbr"),
            Shape(fixture: "two-roots", marker: "two-roots"),
            Shape(fixture: "sector4k", marker: "sector4k", home: true, srv: true),
            // Derived from basic: the backup GPT is used / the primary wins.
            Shape(fixture: "bad-primary", marker: "basic", home: true, srv: true),
            Shape(fixture: "disagree", marker: "basic", home: true, srv: true),
        ]

        @Test(arguments: shapes, Mode.allCases)
        func mountShowsTheTreeAndUmountTakesItAllDown(shape: Shape, mode: Mode) throws {
            let s = try Scratch(shape.fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let fixture = try Harness.fixture(shape.fixture)
            #expect(original == Harness.sha256(fixture), "the copy is the fixture")

            let out = try s.mount(mode.arguments)
            if mode == .readOnly, let message = shape.readOnlyError {
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): \(message)\n")
                s.expectNothingLeft(host)
                #expect(Harness.sha256(s.image) == original)
                return
            }
            try #require(out.status == 0, "mount \(mode): \(out.stderr)")
            // A damaged table that is used anyway is worth a warning; nothing else is said.
            let warning = ["bad-primary": "the primary GPT header has a bad checksum; using the backup",
                           "disagree": "the primary and backup GPT differ; using the primary"][shape.fixture]
            #expect(out.stderr == (warning.map { "imgboot: warning: \(s.image): \($0)\n" } ?? ""))
            #expect(out.stdout.isEmpty)
            #expect(!Harness.loopDevices(backing: s.image).isEmpty)
            host.expectConfined(to: s.mnt)

            let m = s.mnt
            // What every mode shows.
            #expect(FileManager.default.isExecutableFile(atPath: m + "/usr/bin/busybox"))
            #expect(contents(m + "/home/user/hello.txt") == (shape.home ? Text.home : nil))
            #expect(contents(m + "/srv/www/index.html") == (shape.srv ? Text.srv : nil))

            switch mode {
            case .no:
                #expect(contents(m + "/etc/imgboot-fixture") == shape.marker + "\n")
                #expect(contents(m + "/var/lib/marker") == (shape.varPartition ? Text.varMarker : nil))
                if shape.readOnlyRoot {
                    // A squashfs or erofs root is mounted read-only even in mode no.
                    #expect(isReadOnly(m))
                    #expect(createFile(m + "/etc/imgboot-test") == EROFS)
                } else {
                    #expect(!isReadOnly(m))
                    #expect(createFile(m + "/etc/imgboot-test", "written in mode no\n") == 0)
                }
                if shape.varPartition {
                    #expect(createFile(m + "/var/imgboot-test", "written to var\n") == 0)
                }

            case .readOnly:
                #expect(contents(m + "/etc/imgboot-fixture") == shape.marker + "\n")
                #expect(contents(m + "/var/lib/marker") == (shape.varPartition ? Text.varMarker : nil))
                #expect(isReadOnly(m))
                #expect(createFile(m + "/etc/imgboot-test") == EROFS)
                if shape.home { #expect(createFile(m + "/home/imgboot-test") == EROFS) }
                if shape.varPartition { #expect(createFile(m + "/var/imgboot-test") == EROFS) }

            case .yes:
                #expect(filesystem(m) == "tmpfs")
                #expect(isReadOnly(m + "/usr"))
                #expect(createFile(m + "/usr/imgboot-test") == EROFS)
                #expect(try entries(m + "/etc") == [])
                #expect(try entries(m + "/var") == ["tmp"])
                #expect(linkTarget(m + "/bin") == "usr/bin")
                if shape.home { #expect(createFile(m + "/home/imgboot-test") == EROFS) }
                // The root is the tmpfs's: writable, in RAM.
                #expect(createFile(m + "/etc/imgboot-test") == 0)

            case .state:
                #expect(contents(m + "/etc/imgboot-fixture") == shape.marker + "\n")
                #expect(isReadOnly(m))
                #expect(createFile(m + "/etc/imgboot-test") == EROFS)
                #expect(filesystem(m + "/var") == "tmpfs")
                #expect(try entries(m + "/var") == ["tmp"])
                #expect(createFile(m + "/var/imgboot-test") == 0)
                if shape.home { #expect(createFile(m + "/home/imgboot-test") == EROFS) }

            case .overlay:
                #expect(contents(m + "/etc/imgboot-fixture") == shape.marker + "\n")
                #expect(contents(m + "/var/lib/marker") == (shape.varPartition ? Text.varMarker : nil))
                #expect(filesystem(m) == "overlay")
                #expect(createFile(m + "/etc/imgboot-test", "in RAM\n") == 0)
                if shape.home { #expect(createFile(m + "/home/imgboot-test") == 0) }
            }

            try s.umountAndExpectNothingLeft(host)

            // What a write did, seen by mounting again.
            switch mode {
            case .no:
                let mutable = !shape.readOnlyRoot || shape.varPartition
                #expect((Harness.sha256(s.image) != original) == mutable, "the image changes only if something was mounted writable")
                let again = try s.mount([])
                try #require(again.status == 0, "mount again: \(again.stderr)")
                if !shape.readOnlyRoot { #expect(contents(m + "/etc/imgboot-test") == "written in mode no\n") }
                if shape.varPartition { #expect(contents(m + "/var/imgboot-test") == "written to var\n") }
                try s.umountAndExpectNothingLeft(host)
            case .overlay:
                let again = try s.mount(mode.arguments)
                try #require(again.status == 0, "mount again: \(again.stderr)")
                #expect(contents(m + "/etc/imgboot-fixture") == shape.marker + "\n")
                #expect(contents(m + "/etc/imgboot-test") == nil, "the overlay's writes were in RAM")
                #expect(contents(m + "/home/imgboot-test") == nil)
                try s.umountAndExpectNothingLeft(host)
                #expect(Harness.sha256(s.image) == original)
            case .readOnly, .yes, .state:
                #expect(Harness.sha256(s.image) == original)
            }
        }
    }
}

// MARK: - Particular shapes

extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct Shapes {
        /// /usr comes from its own partition; the root's usr/ is empty.
        @Test func splitUsrMountsTheUsrPartition() throws {
            let s = try Scratch("split-usr")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--read-only"])
            #expect(FileManager.default.isExecutableFile(atPath: s.mnt + "/usr/bin/busybox"))
            #expect(FileManager.default.isExecutableFile(atPath: s.mnt + "/bin/busybox"), "bin -> usr/bin leads to the usr partition")
            #expect(s.mountsBelow().map(\.mountPoint) == [s.mnt, s.mnt + "/usr"])
            #expect(Set(s.loopOffsets()) == [1 << 20, 9 << 20])
            try s.umountAndExpectNothingLeft(host)
        }

        @Test func splitUsrVolatileYesIsATmpfsWithTheUsrPartition() throws {
            let s = try Scratch("split-usr")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--volatile=yes"])
            #expect(filesystem(s.mnt) == "tmpfs")
            #expect(linkTarget(s.mnt + "/bin") == "usr/bin")
            #expect(FileManager.default.isExecutableFile(atPath: s.mnt + "/usr/bin/busybox"))
            #expect(s.mountsBelow().map(\.fsType) == ["tmpfs", "ext4"])
            // Only the usr partition is used: the root's tree is not needed.
            #expect(s.loopOffsets() == [9 << 20])
            try s.umountAndExpectNothingLeft(host)
        }

        /// no-auto home is not mounted, read-only srv cannot be written, grow-fs var is mounted
        /// writable.
        @Test func flagsDecideWhatIsMountedAndHow() throws {
            let s = try Scratch("flags")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess([])
            #expect(contents(s.mnt + "/home/user/hello.txt") == nil)
            #expect(try entries(s.mnt + "/home") == [], "/home is the root's empty directory")
            #expect(contents(s.mnt + "/srv/www/index.html") == Text.srv)
            #expect(isReadOnly(s.mnt + "/srv"))
            #expect(createFile(s.mnt + "/srv/imgboot-test") == EROFS)
            #expect(!isReadOnly(s.mnt + "/var"))
            #expect(createFile(s.mnt + "/var/imgboot-test") == 0)
            #expect(s.mountsBelow().map(\.mountPoint) == [s.mnt, s.mnt + "/srv", s.mnt + "/var"])
            #expect(!s.loopOffsets().contains(13 << 20), "home's partition is not even attached")
            try s.umountAndExpectNothingLeft(host)
        }

        /// fooOS_1.10 beats fooOS_1.9; fooOS_2.0 is no-auto.
        @Test(arguments: [Mode.no, .state, .overlay])
        func twoRootsTheNewestWins(mode: Mode) throws {
            let s = try Scratch("two-roots")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(mode.arguments)
            let osRelease = try #require(contents(s.mnt + "/etc/os-release"))
            #expect(osRelease.split(separator: "\n").contains("VERSION_ID=1.10"))
            #expect(s.loopOffsets() == [13 << 20])
            try s.umountAndExpectNothingLeft(host)
        }

        @Test func squashfsWithVarAndTmpPartitions() throws {
            let s = try Scratch("squashfs")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess([])
            #expect(contents(s.mnt + "/var/lib/marker") == Text.varMarker)
            #expect(s.mountsBelow().map(\.fsType) == ["squashfs", "ext4", "ext4"])
            #expect(s.mountsBelow().map(\.mountPoint) == [s.mnt, s.mnt + "/var", s.mnt + "/var/tmp"])
            #expect(isReadOnly(s.mnt))
            #expect(!isReadOnly(s.mnt + "/var/tmp"))
            try s.umountAndExpectNothingLeft(host)
        }

        /// In state, /var is a fresh tmpfs: the var and tmp partitions are not mounted, nor attached.
        @Test func squashfsStateLeavesVarAndTmpPartitionsAlone() throws {
            let s = try Scratch("squashfs")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--volatile=state"])
            #expect(s.mountsBelow().map(\.fsType) == ["squashfs", "tmpfs"])
            #expect(try entries(s.mnt + "/var") == ["tmp"])
            #expect(contents(s.mnt + "/var/lib/marker") == nil)
            #expect(s.loopOffsets() == [1 << 20])
            try s.umountAndExpectNothingLeft(host)
        }

        /// btrfs and xfs, read-only down to the filesystem: no log replay, no recovery.
        @Test func btrfsRootAndXfsHome() throws {
            let s = try Scratch("btrfs-xfs")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--read-only"])
            let mounts = s.mountsBelow()
            #expect(mounts.map(\.fsType) == ["btrfs", "xfs"])
            #expect(mounts.first?.superOptions.contains("rescue=nologreplay") == true, "\(mounts)")
            #expect(mounts.last?.superOptions.contains("norecovery") == true, "\(mounts)")
            #expect(contents(s.mnt + "/home/user/hello.txt") == Text.home)
            try s.umountAndExpectNothingLeft(host)
        }

        /// No partition table: the whole file is the root, on one loop device from byte 0.
        @Test func bareExt4() throws {
            let s = try Scratch("bare-ext4")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess([])
            #expect(s.loopOffsets() == [0])
            #expect(s.mountsBelow().map(\.mountPoint) == [s.mnt])
            #expect(contents(s.mnt + "/etc/imgboot-fixture") == "bare-ext4\n")
            try s.umountAndExpectNothingLeft(host)
        }

        /// The bootable 0x83 partition (2) is the root, not partition 1 (which holds `/data`).
        @Test func mbrRootIsPartitionTwo() throws {
            let s = try Scratch("mbr")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--read-only"])
            #expect(s.loopOffsets() == [9 << 20])
            #expect(contents(s.mnt + "/etc/imgboot-fixture") == "mbr\n")
            #expect(!FileManager.default.fileExists(atPath: s.mnt + "/data"))
            try s.umountAndExpectNothingLeft(host)
        }

        /// A GPT written for 4096-byte sectors: offsets in 4 KiB units, every partition mounts.
        @Test func sector4k() throws {
            let s = try Scratch("sector4k")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--read-only"])
            #expect(Set(s.loopOffsets()) == [1 << 20, 13 << 20, 21 << 20])
            #expect(contents(s.mnt + "/home/user/hello.txt") == Text.home)
            #expect(contents(s.mnt + "/srv/www/index.html") == Text.srv)
            try s.umountAndExpectNothingLeft(host)
        }

        /// The lock is shared while an image is used read-only (and released when `imgboot
        /// mount` exits anyway): two read-only trees of one image live side by side.
        @Test(arguments: [["--read-only"], ["--volatile=overlay"]])
        func twoReadOnlyMountsOfOneImage(arguments: [String]) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let second = try s.makeDirectory("mnt2")
            try s.mountExpectingSuccess(arguments)
            let out = try s.mount(arguments, at: second)
            #expect(out.status == 0, "second mount: \(out.stderr)")
            #expect(contents(s.mnt + "/etc/imgboot-fixture") == "basic\n")
            #expect(contents(second + "/etc/imgboot-fixture") == "basic\n")
            #expect(Harness.loopDevices(backing: s.image).count == 6)
            host.expectConfined(to: s.dir)

            #expect(try Harness.imgboot(["umount", s.mnt]).status == 0)
            #expect(contents(second + "/home/user/hello.txt") == Text.home, "the second tree is untouched")
            #expect(Harness.loopDevices(backing: s.image).count == 3)
            #expect(try Harness.imgboot(["umount", second]).status == 0)
            s.expectNothingLeft(host)
            #expect(try entries(second) == [])
            #expect(Harness.sha256(s.image) == original)
        }
    }
}

// MARK: - --dry-run

extension MountCommandTests {
    /// `--dry-run` prints the plan and touches nothing; it needs no privileges.
    @Suite
    struct DryRun {
        /// `imgboot mount` makes every mount of the tree nosuid and nodev (`--suid` lifts nosuid).
        static let plans: [(Mode, String)] = [
            (.no, """
                attach partition 1 to a loop device
                attach partition 2 to a loop device
                attach partition 3 to a loop device
                mount partition 1 (root) ext4 on / (rw,nodev,nosuid)
                mount partition 2 (home) ext4 on /home (rw,nodev,nosuid)
                mount partition 3 (srv) ext4 on /srv (rw,nodev,nosuid)
                """),
            (.readOnly, """
                attach partition 1 to a loop device (read-only)
                attach partition 2 to a loop device (read-only)
                attach partition 3 to a loop device (read-only)
                mount partition 1 (root) ext4 on / (ro,nodev,nosuid,norecovery)
                mount partition 2 (home) ext4 on /home (ro,nodev,nosuid,norecovery)
                mount partition 3 (srv) ext4 on /srv (ro,nodev,nosuid,norecovery)
                """),
            (.yes, """
                attach partition 1 to a loop device (read-only)
                attach partition 2 to a loop device (read-only)
                attach partition 3 to a loop device (read-only)
                mount tmpfs on / (mode=0755,size=25%,nr_inodes=1m,nodev,nosuid)
                mkdir /usr (mode 755)
                mount partition 1 (root) ext4 on [staging]/root (ro,nodev,nosuid,norecovery)
                check [staging]/root has a merged /usr
                bind [staging]/root/usr on /usr (ro,nodev,nosuid)
                detach [staging]/root
                create the base filesystem on /
                mount partition 2 (home) ext4 on /home (ro,nodev,nosuid,norecovery)
                mount partition 3 (srv) ext4 on /srv (ro,nodev,nosuid,norecovery)
                """),
            (.state, """
                attach partition 1 to a loop device (read-only)
                attach partition 2 to a loop device (read-only)
                attach partition 3 to a loop device (read-only)
                mount partition 1 (root) ext4 on / (ro,nodev,nosuid,norecovery)
                mount partition 2 (home) ext4 on /home (ro,nodev,nosuid,norecovery)
                mount partition 3 (srv) ext4 on /srv (ro,nodev,nosuid,norecovery)
                mount tmpfs on /var (mode=0755,size=25%,nr_inodes=1m,nodev,nosuid)
                mkdir /var/tmp (mode 1777)
                """),
            (.overlay, """
                attach partition 1 to a loop device (read-only)
                attach partition 2 to a loop device (read-only)
                attach partition 3 to a loop device (read-only)
                mount tmpfs on [staging]/rw (mode=0755,size=25%,nr_inodes=1m,nodev,nosuid)
                mount partition 1 (root) ext4 on [staging]/lower-1 (ro,nodev,nosuid,norecovery)
                mkdir [staging]/rw/upper-1 (mode 755, owner and mode of [staging]/lower-1)
                mkdir [staging]/rw/work-1 (mode 700)
                mount overlay on / (lower [staging]/lower-1, upper [staging]/rw/upper-1, work [staging]/rw/work-1, nodev,nosuid)
                mount partition 2 (home) ext4 on [staging]/lower-2 (ro,nodev,nosuid,norecovery)
                mkdir [staging]/rw/upper-2 (mode 755, owner and mode of [staging]/lower-2)
                mkdir [staging]/rw/work-2 (mode 700)
                mount overlay on /home (lower [staging]/lower-2, upper [staging]/rw/upper-2, work [staging]/rw/work-2, nodev,nosuid)
                mount partition 3 (srv) ext4 on [staging]/lower-3 (ro,nodev,nosuid,norecovery)
                mkdir [staging]/rw/upper-3 (mode 755, owner and mode of [staging]/lower-3)
                mkdir [staging]/rw/work-3 (mode 700)
                mount overlay on /srv (lower [staging]/lower-3, upper [staging]/rw/upper-3, work [staging]/rw/work-3, nodev,nosuid)
                detach [staging]/lower-1
                detach [staging]/lower-2
                detach [staging]/lower-3
                detach [staging]/rw
                """),
        ]

        @Test(arguments: plans)
        func printsThePlanAndMountsNothing(mode: Mode, plan: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(mode.arguments + ["--dry-run"])
            #expect(out.status == 0)
            #expect(out.stdout == plan + "\n")
            #expect(out.stderr.isEmpty)
            s.expectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
        }

        /// The same plan for a user who could not mount anything.
        @Test(.enabled(if: Harness.isRoot, "needs root to become another user"), arguments: plans)
        func needsNoPrivileges(mode: Mode, plan: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = Harness.run(asNobody: ["mount"] + mode.arguments + ["--dry-run", s.image, s.mnt])
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == plan + "\n")
            #expect(out.stderr.isEmpty)
            s.expectNothingLeft(host)
        }

        /// A bare `--volatile` means yes, as in nspawn; without the option, mount means no.
        @Test func bareVolatileMeansYesAndNoneMeansNo() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let bare = try s.mount(["--volatile", "--dry-run"])
            #expect(bare.status == 0)
            #expect(bare.stdout == (try s.mount(["--volatile=yes", "--dry-run"])).stdout)
            #expect(bare.stdout.hasPrefix("attach partition 1 to a loop device (read-only)\n"))
            let none = try s.mount(["--dry-run"])
            #expect(none.status == 0)
            #expect(none.stdout == (try s.mount(["--volatile=no", "--dry-run"])).stdout)
        }
    }
}

// MARK: - Errors

extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct Errors {
        static let unusable: [(fixture: String, message: String)] = [
            ("foreign-arch", "no root partition to mount (no root partition for x86-64 (the image has one for arm64))"),
            ("garbage-root", "no root partition to mount (partition 1 (root): no filesystem found)"),
            ("overlap", "invalid partition table: partitions 1 and 2 overlap"),
        ]

        @Test(arguments: unusable)
        func unusableImageGetsOneLineAnd125(fixture: String, message: String) throws {
            let s = try Scratch(fixture)
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount([])
            #expect(out.status == 125)
            #expect(out.stdout.isEmpty)
            #expect(out.stderr == "imgboot: \(s.image): \(message)\n")
            s.expectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
        }

        /// A filesystem libblkid recognises but the kernel refuses, at a partition mounted after
        /// others: the error names the partition, and what was mounted before it is undone.
        @Test(arguments: Mode.allCases)
        func partitionTheKernelRefusesIsNamedAndTheRestUndone(mode: Mode) throws {
            let s = try Scratch("corrupt-srv")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(mode.arguments)
            #expect(out.status == 125)
            let target = mode == .overlay ? "[staging]/lower-3" : "/srv"
            #expect(out.stderr == "imgboot: \(s.image): partition 3 (srv): mount ext4 on \(target): Structure needs cleaning\n")
            s.expectNothingLeft(host)
            // In mode no, root and home were mounted writable before srv failed: their superblocks
            // record the mount. Every other mode leaves the bytes alone.
            if mode != .no { #expect(Harness.sha256(s.image) == original) }
        }

        @Test(arguments: ["yes", "state", "overlay"])
        func readOnlyWithAVolatileModeIsAUsageError(mode: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = try s.mount(["--read-only", "--volatile=\(mode)"])
            #expect(out.status == 125)
            #expect(out.stdout.isEmpty)
            #expect(out.stderr.contains("--read-only with --volatile=\(mode): a volatile mode already keeps the image read-only"))
            #expect(out.stderr.contains("Usage: imgboot mount"))
            s.expectNothingLeft(host)
        }

        @Test func unknownVolatileModeListsTheModes() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = try s.mount(["--volatile=bogus"])
            #expect(out.status == 125)
            #expect(out.stderr.contains("'bogus'"))
            for mode in ["yes", "no", "state", "overlay"] { #expect(out.stderr.contains("'\(mode)'"), "\(mode)") }
            s.expectNothingLeft(host)
        }

        @Test func missingDirectory() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let missing = s.dir + "/missing"
            let out = try s.mount([], at: missing)
            #expect(out.status == 125)
            #expect(out.stderr == "imgboot: \(missing): no such directory\n")
            #expect(!FileManager.default.fileExists(atPath: missing), "imgboot does not create it")
            s.expectNothingLeft(host)
        }

        @Test func directoryThatIsAFile() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let file = s.dir + "/file"
            #expect(createFile(file) == 0)
            let out = try s.mount([], at: file)
            #expect(out.status == 125)
            #expect(out.stderr == "imgboot: \(file): not a directory\n")
            s.expectNothingLeft(host)
        }

        @Test func mountAndUmountNeedRoot() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let mount = Harness.run(asNobody: ["mount", s.image, s.mnt])
            #expect(mount.status == 125)
            #expect(mount.stderr == "imgboot: \(s.image): mounting needs root (loop devices, mounts and namespaces)\n")
            let umount = Harness.run(asNobody: ["umount", s.mnt])
            #expect(umount.status == 125)
            #expect(umount.stderr == "imgboot: \(s.mnt): unmounting needs root (loop devices, mounts and namespaces)\n")
            s.expectNothingLeft(host)
        }

        @Test func umountWhereNothingIsMounted() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let out = try Harness.imgboot(["umount", s.mnt])
            #expect(out.status == 125)
            #expect(out.stderr == "imgboot: \(s.mnt): nothing is mounted there\n")
        }

        /// A process whose working directory is in the tree keeps it busy: umount says so, and
        /// once the process is gone, umount works.
        @Test func umountWhileAProcessWorksInTheTree() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess([])

            let sleeper = Process()
            sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
            sleeper.arguments = ["600"]
            sleeper.currentDirectoryURL = URL(fileURLWithPath: s.mnt + "/home")
            try sleeper.run()
            // SIGKILL: the test runner's children may have SIGTERM blocked.
            var running = true
            defer {
                if running {
                    kill(sleeper.processIdentifier, SIGKILL)
                    sleeper.waitUntilExit()
                }
            }
            let cwd = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(sleeper.processIdentifier)/cwd")
            #expect(cwd == s.mnt + "/home")

            let busy = try Harness.imgboot(["umount", s.mnt])
            #expect(busy.status == 125)
            #expect(busy.stderr == "imgboot: \(s.mnt)/home: target is busy (a process has a file open or its working directory there)\n")
            #expect(!s.mountsBelow().isEmpty)

            kill(sleeper.processIdentifier, SIGKILL)
            sleeper.waitUntilExit()
            running = false
            try s.umountAndExpectNothingLeft(host)
        }
    }
}

// MARK: - Hostile images

extension MountCommandTests {
    /// Images whose mount points lead out of the tree (fixtures/README.md, "Hostile images").
    /// Whatever the mode, the host is untouched: nothing is created, mounted or unmounted outside
    /// the directory, and nothing stays attached. imgboot either mounts inside the tree or fails
    /// with an error naming the mount point.
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct Hostile {
        static let escape = "/tmp/imgboot-escape"

        /// home -> /etc, srv -> ../../../../tmp/imgboot-escape, boot -> /boot (a loop).
        @Test(arguments: Mode.allCases)
        func symlinksAreFollowedInsideTheTree(mode: Mode) throws {
            try #require(!FileManager.default.fileExists(atPath: Self.escape), "\(Self.escape) exists before the test")
            let s = try Scratch("hostile-links")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(mode.arguments)
            try #require(out.status == 0, "\(out.stderr)")
            host.expectConfined(to: s.mnt)
            #expect(!FileManager.default.fileExists(atPath: Self.escape))
            let m = s.mnt
            if mode == .yes {
                // A fresh tmpfs root: the image's links are not used at all.
                #expect(out.stderr.isEmpty)
                #expect(contents(m + "/home/user/hello.txt") == Text.home)
                #expect(contents(m + "/srv/www/index.html") == Text.srv)
            } else {
                #expect(out.stderr == "imgboot: \(s.image): partition 4 (xbootldr) is not mounted: mount point /boot is a symlink loop\n")
                #expect(contents(m + "/etc/user/hello.txt") == Text.home, "home -> /etc lands on the tree's /etc")
                #expect(contents(m + "/tmp/imgboot-escape/www/index.html") == Text.srv)
                let expected = [m, m + "/etc", m + "/tmp/imgboot-escape"] + (mode == .state ? [m + "/var"] : [])
                #expect(s.mountsBelow().map(\.mountPoint) == expected)
                #expect(linkTarget(m + "/home") == "/etc")
            }
            try s.umountAndExpectNothingLeft(host)
            #expect(!FileManager.default.fileExists(atPath: Self.escape))
            if mode != .no { #expect(Harness.sha256(s.image) == original) }
        }

        /// var -> /var/../../.. is a loop. Mode yes takes nothing from the image but /usr.
        @Test(arguments: Mode.allCases)
        func varLinkClimbingOut(mode: Mode) throws {
            let s = try Scratch("hostile-var")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(mode.arguments)
            switch mode {
            case .yes:
                #expect(out.status == 0, "\(out.stderr)")
                host.expectConfined(to: s.mnt)
                #expect(try entries(s.mnt + "/var") == ["tmp"])
                try s.umountAndExpectNothingLeft(host)
            case .state:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): mount point /var is a symlink loop\n")
            case .no, .readOnly, .overlay:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): partition 2 (var): mount point /var is a symlink loop\n")
            }
            s.expectNothingLeft(host)
            if mode != .no { #expect(Harness.sha256(s.image) == original) }
        }

        /// /usr is a regular file, and there is a usr partition to mount on it.
        @Test(arguments: Mode.allCases)
        func usrIsAFile(mode: Mode) throws {
            let s = try Scratch("hostile-usr")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let out = try s.mount(mode.arguments)
            if mode == .yes {
                #expect(out.status == 0, "\(out.stderr)")
                host.expectConfined(to: s.mnt)
                #expect(FileManager.default.isExecutableFile(atPath: s.mnt + "/usr/bin/busybox"))
                try s.umountAndExpectNothingLeft(host)
            } else {
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): partition 2 (usr): mount point /usr is not a directory\n")
            }
            s.expectNothingLeft(host)
            if mode != .no { #expect(Harness.sha256(s.image) == original) }
        }

        /// srv -> ../../../../tmp/imgboot-decoy, then a var partition the kernel refuses. Undoing
        /// the srv mount must detach it where it landed in the tree, not follow the image's
        /// symlink to the host's /tmp/imgboot-decoy, where this test keeps a mount of its own.
        @Test(arguments: Mode.allCases)
        func undoingAFailedMountNeverFollowsTheImagesLinks(mode: Mode) throws {
            let decoy = "/tmp/imgboot-decoy"
            try #require(!FileManager.default.fileExists(atPath: decoy), "\(decoy) exists before the test")
            try #require(mkdir(decoy, 0o755) == 0)
            defer { rmdir(decoy) }
            try #require("size=1m".withCString { Glibc.mount("imgboot-decoy", decoy, "tmpfs", 0, $0) } == 0)
            defer { umount2(decoy, Int32(MNT_DETACH)) }

            let s = try Scratch("hostile-rollback")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = try s.mount(mode.arguments)
            switch mode {
            case .no, .readOnly:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): partition 3 (var): mount ext4 on /var: Structure needs cleaning\n")
            case .overlay:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): partition 3 (var): mount ext4 on [staging]/lower-3: Structure needs cleaning\n")
            case .state, .yes:
                // The var partition is not used: these mount.
                #expect(out.status == 0, "\(out.stderr)")
                host.expectConfined(to: s.mnt)
                try s.umountAndExpectNothingLeft(host)
            }
            s.expectNothingLeft(host)
            #expect(MountInfo.current().contains { $0.mountPoint == decoy && $0.source == "imgboot-decoy" },
                    "the host's mount at \(decoy) is still there")
        }

        /// var -> ../../.. is, inside the tree, the root itself: stacking the var partition (or
        /// state's /var tmpfs) over the whole tree is refused, and what was mounted before is
        /// undone. (yes mounts no var partition, so it works.)
        @Test(arguments: Mode.allCases)
        func mountPointThatIsTheTreesRoot(mode: Mode) throws {
            let s = try Scratch("hostile-stack")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = try s.mount(mode.arguments)
            switch mode {
            case .no, .readOnly, .overlay:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): partition 3 (var): mount point /var leads to the image's root directory\n")
            case .yes:
                #expect(out.status == 0, "\(out.stderr)")
                host.expectConfined(to: s.mnt)
                #expect(contents(s.mnt + "/home/user/hello.txt") == Text.home)
                try s.umountAndExpectNothingLeft(host)
            case .state:
                #expect(out.status == 125)
                #expect(out.stderr == "imgboot: \(s.image): mount point /var leads to the image's root directory\n")
            }
            s.expectNothingLeft(host)
        }
    }
}

// MARK: - Helpers

extension MountCommandTests {
    /// How a test asks for a mode.
    enum Mode: String, CaseIterable, Sendable, CustomStringConvertible {
        case no, readOnly, yes, state, overlay

        /// `no` is mount's default: it is asked for by giving no option at all.
        var arguments: [String] {
            switch self {
            case .no: []
            case .readOnly: ["--read-only"]
            case .yes, .state, .overlay: ["--volatile=\(rawValue)"]
            }
        }

        var description: String { self == .readOnly ? "no --read-only" : rawValue }
    }

    /// The contents of the fixtures' files (fixtures/README.md, "Other trees").
    enum Text {
        static let home = "hello from the imgboot home partition\n"
        static let srv = "<h1>imgboot srv partition</h1>\n"
        static let varMarker = "imgboot var partition\n"
    }

    /// One test's directory: a copy of a fixture image (a test may write to it; the fixture stays
    /// as built) and an empty directory to mount it on. Mode 0755, so that `nobody` can read the copy.
    final class Scratch {
        static let prefix = "/tmp/imgboot-mount-test-"
        let dir: String
        let image: String
        let mnt: String

        init(_ fixture: String) throws {
            let source = try Harness.fixture(fixture)
            var template = Array("\(Scratch.prefix)XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap(mkdtemp) }) != nil else {
                throw HarnessError("mkdtemp: \(String(cString: strerror(errno)))")
            }
            dir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            image = dir + "/\(fixture).raw"
            mnt = dir + "/mnt"
            chmod(dir, 0o755)
            let copy = Harness.run(["/bin/cp", "--sparse=always", source, image])
            guard copy.status == 0, mkdir(mnt, 0o755) == 0 else {
                try? FileManager.default.removeItem(atPath: dir)
                throw HarnessError("cannot copy \(source) to \(image): \(copy.stderr)")
            }
        }

        func makeDirectory(_ name: String) throws -> String {
            let path = dir + "/" + name
            guard mkdir(path, 0o755) == 0 else { throw HarnessError("mkdir \(path): \(String(cString: strerror(errno)))") }
            return path
        }

        /// `imgboot mount ARGUMENTS IMAGE DIR`.
        func mount(_ arguments: [String], at target: String? = nil) throws -> Harness.Output {
            try Harness.imgboot(["mount"] + arguments + [image, target ?? mnt])
        }

        func mountExpectingSuccess(_ arguments: [String]) throws {
            let out = try mount(arguments)
            try #require(out.status == 0, "mount \(arguments): \(out.stderr)")
            #expect(out.stderr.isEmpty)
        }

        /// The mounts at or below this test's directory, in the order they were made.
        func mountsBelow() -> [MountInfo.Entry] {
            MountInfo.current().filter { $0.isAtOrBelow(dir) }
        }

        /// The offsets of the loop devices backed by the image (one per attached partition).
        func loopOffsets() -> [UInt64] {
            Harness.run(["/sbin/losetup", "-n", "-O", "OFFSET", "-j", image]).stdout
                .split(separator: "\n").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        }

        /// `imgboot umount`, then what a user sees: nothing left (see `expectNothingLeft`).
        func umountAndExpectNothingLeft(_ host: HostMounts, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let out = try Harness.imgboot(["umount", mnt])
            try #require(out.status == 0, "umount: \(out.stderr)", sourceLocation: sourceLocation)
            #expect(out.stderr.isEmpty, sourceLocation: sourceLocation)
            expectNothingLeft(host, sourceLocation: sourceLocation)
        }

        /// No mount below the directory, no loop device backed by the image, the directory empty,
        /// and the host's mount table outside the directory as it was.
        func expectNothingLeft(_ host: HostMounts, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(mountsBelow().isEmpty, "still mounted: \(mountsBelow().map(\.mountPoint))", sourceLocation: sourceLocation)
            #expect(Harness.loopDevices(backing: image).isEmpty, "still attached", sourceLocation: sourceLocation)
            #expect((try? entries(mnt)) == [], "the mount directory itself was written", sourceLocation: sourceLocation)
            #expect(HostMounts(outside: dir) == host, "the host's mount table changed", sourceLocation: sourceLocation)
        }

        /// Takes down whatever a failed test left mounted — `imgboot umount`, then a lazy detach of
        /// each mount, most recent first — and removes the directory once nothing is mounted there.
        /// Never removes anything below a mount: that would delete the image's files.
        func cleanUp() {
            let tops = Set(mountsBelow().map { entry in
                dir + "/" + (entry.mountPoint.dropFirst(dir.count + 1).split(separator: "/").first.map(String.init) ?? "")
            })
            for top in tops.sorted() { _ = try? Harness.imgboot(["umount", top]) }
            for entry in mountsBelow().reversed() {
                _ = umount2(entry.mountPoint, Int32(MNT_DETACH | UMOUNT_NOFOLLOW))
            }
            guard mountsBelow().isEmpty else { return }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// The host's mount table outside one test's directory, to compare before and after. Mounts of
    /// AttachTests (under /var/tmp/imgboot-attach-), which may run beside these suites, are left out.
    struct HostMounts: Equatable {
        let entries: [String]
        let excluded: String

        init(outside dir: String) {
            excluded = dir
            entries = MountInfo.current()
                .filter { !$0.isAtOrBelow(dir) && !$0.mountPoint.hasPrefix("/var/tmp/imgboot-attach-") }
                .map { "\($0.mountPoint) \($0.fsType) \($0.source)" }.sorted()
        }

        /// While a tree is mounted: every mount that was not there before is at or below `dir`
        /// (staging mounts detached, nothing on the host's /etc, nothing where an image's symlink
        /// points on the host).
        func expectConfined(to dir: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let now = HostMounts(outside: excluded)
            #expect(now == self, "mounts outside \(dir): \(Set(now.entries).symmetricDifference(entries).sorted())",
                    sourceLocation: sourceLocation)
            let outsideDir = MountInfo.current().filter { $0.isAtOrBelow(excluded) && !$0.isAtOrBelow(dir) }
            #expect(outsideDir.isEmpty, "mounted beside \(dir): \(outsideDir.map(\.mountPoint))", sourceLocation: sourceLocation)
        }
    }

    /// /proc/self/mountinfo, in the order the mounts were made.
    enum MountInfo {
        struct Entry: CustomStringConvertible {
            var mountPoint: String
            var fsType: String
            var source: String
            var superOptions: [String]

            func isAtOrBelow(_ dir: String) -> Bool { mountPoint == dir || mountPoint.hasPrefix(dir + "/") }
            var description: String { "\(mountPoint) \(fsType) \(source)" }
        }

        static func current() -> [Entry] {
            let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ").map(String.init)
                guard let dash = f.firstIndex(of: "-"), dash + 3 < f.count, f.count > 4 else { return nil }
                return Entry(mountPoint: unescape(f[4]), fsType: f[dash + 1], source: unescape(f[dash + 2]),
                             superOptions: f[dash + 3].split(separator: ",").map(String.init))
            }
        }

        /// mountinfo writes space, tab, newline and backslash as \ooo.
        static func unescape(_ field: String) -> String {
            guard field.contains("\\") else { return field }
            var out = "", rest = Substring(field)
            while let i = rest.firstIndex(of: "\\") {
                out += rest[..<i]
                let code = rest[rest.index(after: i)...].prefix(3)
                if code.count == 3, let byte = UInt8(code, radix: 8) {
                    out += String(decoding: [byte], as: UTF8.self)
                    rest = rest[rest.index(i, offsetBy: 4)...]
                } else {
                    out += "\\"
                    rest = rest[rest.index(after: i)...]
                }
            }
            return out + rest
        }
    }
}

fileprivate extension Harness {
    /// Runs `imgboot ARGS…` as the user nobody.
    static func run(asNobody arguments: [String]) -> Output {
        run(["/usr/sbin/runuser", "-u", "nobody", "--", binary] + arguments)
    }
}

// MARK: - Looking at a tree

/// A file's text, or nil if it cannot be read.
private func contents(_ path: String) -> String? {
    try? String(contentsOfFile: path, encoding: .utf8)
}

/// Creates (or truncates) `path` and writes `content`; 0, or the errno of the first failure.
private func createFile(_ path: String, _ content: String = "") -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return errno }
    defer { close(fd) }
    let bytes = Array(content.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    return n == bytes.count ? 0 : errno
}

private func entries(_ path: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path).sorted()
}

private func linkTarget(_ path: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: path)
}

private func isReadOnly(_ path: String) -> Bool {
    var s = statvfs()
    return statvfs(path, &s) == 0 && s.f_flag & UInt(ST_RDONLY) != 0
}

/// The type of the filesystem `path` (a path without symlinks) lies on, from the mount table:
/// the deepest mount at or above it, the topmost of those stacked there.
private func filesystem(_ path: String) -> String? {
    MountCommandTests.MountInfo.current().enumerated()
        .filter { path == $0.element.mountPoint || path.hasPrefix($0.element.mountPoint == "/" ? "/" : $0.element.mountPoint + "/") }
        .max { ($0.element.mountPoint.count, $0.offset) < ($1.element.mountPoint.count, $1.offset) }?.element.fsType
}
