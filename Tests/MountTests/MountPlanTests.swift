import Testing
import Dissect
@testable import Mount

/// Mount plans for every image shape and every mode, built without root or any image: the
/// dissected images are made by hand and run through the real selection rules.
struct MountPlanTests {
    static func image(_ name: String, table: PartitionTableType? = .gpt, _ parts: [Partition]) -> DissectedImage {
        let selection = PartitionSelection.select(parts, table: table, native: .x86_64)
        return DissectedImage(image: name, size: 64 << 20, sectorSize: 512, partitionTable: table, imageUuid: nil,
                              architecture: selection.architecture, partitions: selection.partitions,
                              warnings: selection.warnings, rootReasons: selection.rootReasons)
    }

    static func gpt(_ n: Int, _ type: String, fs: String = "ext4", flags: UInt64 = 0) -> Partition {
        Partition(number: n, typeUuid: type, offset: UInt64(n) << 20, size: 1 << 20, fsType: fs,
                  readOnly: flags & GPTFlags.readOnly != 0, noAuto: flags & GPTFlags.noAuto != 0)
    }

    static let root = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", rootArm64 = "b921b045-1df0-41c3-af44-4c6f280d3fae"
    static let usr = "8484680c-9521-48c6-9c11-b0720656f69e", home = "933ac7e1-2eb4-4f13-b844-0e14e2aef915"
    static let srv = "3b8f8425-20e0-4f3b-907f-1a25a76f98e8", varType = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"
    static let tmp = "7ec6f557-3bc5-4aca-b293-16ef5df639d1", esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

    /// The shapes of the fixtures in fixtures/images.
    static let shapes: [String: DissectedImage] = [
        "basic": image("basic", [gpt(1, root), gpt(2, home), gpt(3, srv)]),
        "squashfs": image("squashfs", [gpt(1, root, fs: "squashfs"), gpt(2, varType), gpt(3, tmp)]),
        "erofs": image("erofs", [gpt(1, root, fs: "erofs")]),
        "btrfs-xfs": image("btrfs-xfs", [gpt(1, root, fs: "btrfs"), gpt(2, home, fs: "xfs")]),
        "split-usr": image("split-usr", [gpt(1, root), gpt(2, usr)]),
        "flags": image("flags", [gpt(1, root), gpt(2, home, flags: GPTFlags.noAuto),
                                 gpt(3, srv, flags: GPTFlags.readOnly), gpt(4, varType)]),
        "bare-ext4": image("bare-ext4", table: nil, [Partition(number: 0, offset: 0, size: 12 << 20, fsType: "ext4")]),
        "mbr": image("mbr", table: .dos, [Partition(number: 1, mbrType: "0x83", offset: 1 << 20, size: 1 << 20, fsType: "ext4"),
                                          Partition(number: 2, mbrType: "0x83", offset: 2 << 20, size: 1 << 20, fsType: "ext4", bootable: true)]),
        "with-esp": image("with-esp", [gpt(1, esp, fs: "vfat"), gpt(2, root)]),
    ]

    static let allModes = VolatileMode.allCases

    func plan(_ shape: String, _ mode: VolatileMode, readOnly: Bool = false) throws -> MountPlan {
        let image = try #require(Self.shapes[shape])
        return try MountPlan.make(for: image, options: MountOptions(volatile: mode, readOnly: readOnly))
    }

    // MARK: The exact plans for the demo image

    @Test func basicNo() throws {
        #expect(try plan("basic", .no).description == """
            attach partition 1 to a loop device
            attach partition 2 to a loop device
            attach partition 3 to a loop device
            mount partition 1 (root) ext4 on / (rw,nodev)
            mount partition 2 (home) ext4 on /home (rw,nodev)
            mount partition 3 (srv) ext4 on /srv (rw,nodev)
            """)
    }

    @Test func basicReadOnly() throws {
        #expect(try plan("basic", .no, readOnly: true).description == """
            attach partition 1 to a loop device (read-only)
            attach partition 2 to a loop device (read-only)
            attach partition 3 to a loop device (read-only)
            mount partition 1 (root) ext4 on / (ro,nodev,norecovery)
            mount partition 2 (home) ext4 on /home (ro,nodev,norecovery)
            mount partition 3 (srv) ext4 on /srv (ro,nodev,norecovery)
            """)
    }

    @Test func basicState() throws {
        #expect(try plan("basic", .state).description == """
            attach partition 1 to a loop device (read-only)
            attach partition 2 to a loop device (read-only)
            attach partition 3 to a loop device (read-only)
            mount partition 1 (root) ext4 on / (ro,nodev,norecovery)
            mount partition 2 (home) ext4 on /home (ro,nodev,norecovery)
            mount partition 3 (srv) ext4 on /srv (ro,nodev,norecovery)
            mount tmpfs on /var (mode=0755,size=25%,nr_inodes=1m)
            mkdir /var/tmp (mode 1777)
            """)
    }

    @Test func basicYes() throws {
        #expect(try plan("basic", .yes).description == """
            attach partition 1 to a loop device (read-only)
            attach partition 2 to a loop device (read-only)
            attach partition 3 to a loop device (read-only)
            mount tmpfs on / (mode=0755,size=25%,nr_inodes=1m)
            mkdir /usr (mode 755)
            mount partition 1 (root) ext4 on [staging]/root (ro,nodev,norecovery)
            check [staging]/root has a merged /usr
            bind [staging]/root/usr on /usr (ro,nodev)
            detach [staging]/root
            create the base filesystem on /
            mount partition 2 (home) ext4 on /home (ro,nodev,norecovery)
            mount partition 3 (srv) ext4 on /srv (ro,nodev,norecovery)
            """)
    }

    @Test func basicOverlay() throws {
        let text = try plan("basic", .overlay).description
        #expect(text.hasPrefix("""
            attach partition 1 to a loop device (read-only)
            attach partition 2 to a loop device (read-only)
            attach partition 3 to a loop device (read-only)
            mount tmpfs on [staging]/rw (mode=0755,size=25%,nr_inodes=1m)
            mount partition 1 (root) ext4 on [staging]/lower-1 (ro,nodev,norecovery)
            mkdir [staging]/rw/upper-1 (mode 755, owner and mode of [staging]/lower-1)
            mkdir [staging]/rw/work-1 (mode 700)
            mount overlay on / (lower [staging]/lower-1, upper [staging]/rw/upper-1, work [staging]/rw/work-1, nodev)
            """))
        #expect(text.hasSuffix("""
            detach [staging]/lower-1
            detach [staging]/lower-2
            detach [staging]/lower-3
            detach [staging]/rw
            """))
    }

    // MARK: Properties of every shape in every mode

    static let shapesWithRoot = ["basic", "squashfs", "erofs", "btrfs-xfs", "split-usr", "flags", "bare-ext4", "mbr", "with-esp"]

    @Test(arguments: shapesWithRoot, [VolatileMode.yes, .state, .overlay])
    func volatileModesNeverWriteTheImage(shape: String, mode: VolatileMode) throws {
        let p = try plan(shape, mode)
        #expect(p.attachments.allSatisfy { $0.readOnly })
        for step in p.steps {
            if case .partition = step.action { #expect(step.readOnly, "\(step.target)") }
        }
    }

    @Test(arguments: shapesWithRoot)
    func modeNoFollowsFlagsAndFilesystems(shape: String) throws {
        let image = try #require(Self.shapes[shape])
        let p = try plan(shape, .no)
        for a in p.attachments {
            let partition = try #require(image.partitions.first { $0.number == a.number })
            #expect(a.readOnly == partition.readOnly, "partition \(a.number)")
        }
        #expect(p.attachments.count == image.usedPartitions.count)
    }

    @Test(arguments: shapesWithRoot)
    func readOnlyMakesEverythingReadOnly(shape: String) throws {
        let p = try plan(shape, .no, readOnly: true)
        #expect(p.attachments.allSatisfy { $0.readOnly })
        for step in p.steps { #expect(step.readOnly) }
    }

    @Test(arguments: shapesWithRoot, allModes)
    func parentsAreMountedBeforeChildren(shape: String, mode: VolatileMode) throws {
        var mounted: [String] = []
        for step in try plan(shape, mode).steps {
            guard case .tree(let path) = step.target else { continue }
            switch step.action {
            case .partition, .tmpfs, .overlay, .bind:
                if path != "/" {
                    #expect(mounted.contains("/"), "\(path) before /")
                    #expect(!mounted.contains { $0.hasPrefix(path + "/") }, "\(path) after a child")
                }
                mounted.append(path)
            default: break
            }
        }
        #expect(mounted.first == "/")
    }

    @Test func stateLeavesOutVarAndTmpPartitions() throws {
        let p = try plan("squashfs", .state)
        #expect(p.attachments.map(\.number) == [1])
        #expect(p.steps.map(\.target) == [.tree("/"), .tree("/var"), .tree("/var/tmp")])
        #expect(p.steps[1].action == .tmpfs)
    }

    @Test func flagsNoAutoHomeIsNotMountedAndReadOnlySrvIsReadOnly() throws {
        let p = try plan("flags", .no)
        #expect(p.attachments.map(\.number) == [1, 3, 4])
        #expect(p.attachments.map(\.readOnly) == [false, true, false])
        #expect(p.steps.map(\.target) == [.tree("/"), .tree("/srv"), .tree("/var")])
    }

    @Test func squashfsRootIsReadOnlyEvenInModeNo() throws {
        let p = try plan("squashfs", .no)
        #expect(p.attachments.map(\.readOnly) == [true, false, false])
        #expect(p.steps.map(\.target) == [.tree("/"), .tree("/var"), .tree("/var/tmp")])
        #expect(p.steps[0].options == ["ro", "nodev"])
    }

    @Test func btrfsReadOnlyDoesNotReplayItsLog() throws {
        #expect(try plan("btrfs-xfs", .state).steps.map(\.options) == [
            ["ro", "nodev", "rescue=nologreplay"], ["ro", "nodev", "norecovery"], ["mode=0755", "size=25%", "nr_inodes=1m"], [],
        ])
    }

    @Test func yesTakesUsrFromTheUsrPartition() throws {
        let p = try plan("split-usr", .yes)
        #expect(p.attachments.map(\.number) == [2])
        #expect(p.steps.map(\.action) == [
            .tmpfs, .makeDirectory(mode: 0o755, like: nil), .partition(number: 2, fsType: "ext4"), .baseFilesystem,
        ])
        #expect(p.steps[2].target == .tree("/usr"))
    }

    @Test func yesWithoutHomeOrSrvMountsOnlyUsr() throws {
        let p = try plan("squashfs", .yes)
        #expect(p.attachments.map(\.number) == [1])
        #expect(!p.steps.contains { $0.target == .tree("/var") })
    }

    @Test func overlayGivesEveryPartitionItsOwnOverlay() throws {
        let p = try plan("squashfs", .overlay)
        let overlays = p.steps.filter { if case .overlay = $0.action { true } else { false } }
        #expect(overlays.map(\.target) == [.tree("/"), .tree("/var"), .tree("/var/tmp")])
        #expect(p.steps.last == MountPlan.Step(.detach, .staging("rw")))
    }

    @Test(arguments: allModes)
    func espIsOptional(mode: VolatileMode) throws {
        let p = try plan("with-esp", mode)
        for step in p.steps where step.partition?.contains("esp") == true {
            #expect(step.optional)
        }
        if mode == .no || mode == .state || mode == .overlay {
            #expect(p.steps.contains { $0.target == .tree("/efi") })
        }
    }

    @Test(arguments: [VolatileMode.yes, .state, .overlay])
    func readOnlyWithVolatileIsRefused(mode: VolatileMode) throws {
        #expect(throws: MountError(image: "basic", .invalidOptions(
            "--read-only with --volatile=\(mode): a volatile mode already keeps the image read-only"))) {
            try plan("basic", mode, readOnly: true)
        }
    }

    @Test(arguments: allModes)
    func noRootIsRefused(mode: VolatileMode) throws {
        let foreign = Self.image("foreign-arch", [Self.gpt(1, Self.rootArm64), Self.gpt(2, Self.home)])
        #expect(throws: MountError.self) { try MountPlan.make(for: foreign, options: MountOptions(volatile: mode)) }
        do {
            _ = try MountPlan.make(for: foreign, options: MountOptions(volatile: mode))
        } catch {
            #expect(error.description.contains("no root for x86-64") || error.description.contains("no root partition for x86-64"))
        }
    }

    @Test(arguments: [
        ("yes", VolatileMode.yes), ("true", .yes), ("on", .yes), ("1", .yes), ("YES", .yes),
        ("no", .no), ("false", .no), ("off", .no), ("0", .no),
        ("state", .state), ("overlay", .overlay),
    ])
    func volatileSpellings(text: String, mode: VolatileMode) {
        #expect(VolatileMode(parsing: text) == mode)
    }

    @Test(arguments: ["", "y", "ephemeral", "2", "statee"])
    func volatileNonsense(text: String) {
        #expect(VolatileMode(parsing: text) == nil)
    }

    // MARK: nosuid (imgboot mount)

    /// With `nosuid` (what `imgboot mount` asks for unless `--suid`), every step that mounts
    /// something — partitions, tmpfs, binds, overlays, staging mounts included — has nodev and
    /// nosuid; nothing else changes.
    @Test(arguments: shapesWithRoot, allModes)
    func nosuidReachesEveryMount(shape: String, mode: VolatileMode) throws {
        let image = try #require(Self.shapes[shape])
        let plain = try MountPlan.make(for: image, options: MountOptions(volatile: mode))
        let hardened = try MountPlan.make(for: image, options: MountOptions(volatile: mode, nosuid: true))
        #expect(hardened.attachments == plain.attachments)
        #expect(hardened.steps.count == plain.steps.count)
        for (step, before) in zip(hardened.steps, plain.steps) {
            #expect(step.action == before.action && step.target == before.target)
            switch step.action {
            case .partition, .tmpfs, .bind, .overlay:
                #expect(step.options.contains("nodev") && step.options.contains("nosuid"), "\(step.target): \(step.options)")
                let others = { (options: [String]) in options.filter { $0 != "nodev" && $0 != "nosuid" } }
                #expect(others(step.options) == others(before.options), "only nodev and nosuid are added: \(before.options) → \(step.options)")
            default:
                #expect(step.options == before.options)
            }
        }
    }

    /// Containers keep their plans: no nosuid unless asked for (their setuid programs work).
    @Test(arguments: shapesWithRoot, allModes)
    func containersKeepSetuid(shape: String, mode: VolatileMode) throws {
        #expect(try !plan(shape, mode).steps.contains { $0.options.contains("nosuid") })
    }

    @Test func basicReadOnlyNosuidAsDryRunShowsIt() throws {
        let image = try #require(Self.shapes["basic"])
        #expect(try MountPlan.make(for: image, options: MountOptions(volatile: .no, readOnly: true, nosuid: true)).description == """
            attach partition 1 to a loop device (read-only)
            attach partition 2 to a loop device (read-only)
            attach partition 3 to a loop device (read-only)
            mount partition 1 (root) ext4 on / (ro,nodev,nosuid,norecovery)
            mount partition 2 (home) ext4 on /home (ro,nodev,nosuid,norecovery)
            mount partition 3 (srv) ext4 on /srv (ro,nodev,nosuid,norecovery)
            """)
    }
}
