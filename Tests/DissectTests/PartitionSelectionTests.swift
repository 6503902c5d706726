import Testing
@testable import Dissect

/// The selection rules of DESIGN.md, one shape of image per case. Partitions are built by
/// hand: no image, no I/O.
struct PartitionSelectionTests {
    static let root = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
    static let rootArm64 = "b921b045-1df0-41c3-af44-4c6f280d3fae"
    static let usr = "8484680c-9521-48c6-9c11-b0720656f69e"
    static let home = "933ac7e1-2eb4-4f13-b844-0e14e2aef915"
    static let srv = "3b8f8425-20e0-4f3b-907f-1a25a76f98e8"
    static let `var` = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"
    static let tmp = "7ec6f557-3bc5-4aca-b293-16ef5df639d1"
    static let esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    static let xbootldr = "bc13c2ff-59e6-4262-a352-b275fd6f7172"
    static let swap = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
    static let generic = "0fc63daf-8483-4772-8e79-3d69d8477de4"

    func gpt(_ n: Int, _ type: String, label: String? = nil, fs: String? = "ext4", flags: UInt64 = 0) -> Partition {
        Partition(number: n, typeUuid: type, label: label, offset: UInt64(n) << 20, size: 1 << 20,
                  fsType: fs, readOnly: flags & GPTFlags.readOnly != 0,
                  noAuto: flags & GPTFlags.noAuto != 0, growFs: flags & GPTFlags.growFs != 0)
    }

    func mbr(_ n: Int, _ type: String, bootable: Bool = false, fs: String? = "ext4") -> Partition {
        Partition(number: n, mbrType: type, offset: UInt64(n) << 20, size: 1 << 20, fsType: fs, bootable: bootable)
    }

    func mountPoints(_ result: PartitionSelection.Result) -> [Int: String] {
        Dictionary(uniqueKeysWithValues: result.partitions.compactMap { p in p.mountPoint.map { (p.number, $0) } })
    }

    @Test func rootHomeSrv() {
        let r = PartitionSelection.select([gpt(1, Self.root), gpt(2, Self.home), gpt(3, Self.srv)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/", 2: "/home", 3: "/srv"])
        #expect(r.partitions.map(\.designator) == [.root, .home, .srv])
        #expect(r.architecture == .x86_64)
        #expect(r.warnings.isEmpty)
    }

    @Test func everyMountableRole() {
        let r = PartitionSelection.select([
            gpt(1, Self.root), gpt(2, Self.usr), gpt(3, Self.var), gpt(4, Self.tmp),
            gpt(5, Self.esp, fs: "vfat"), gpt(6, Self.xbootldr, fs: "vfat"), gpt(7, Self.swap, fs: "swap"),
        ], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/", 2: "/usr", 3: "/var", 4: "/var/tmp", 5: "/efi", 6: "/boot"])
        #expect(r.partitions[6].designator == .swap)
    }

    @Test func newestVersionedRootWins() {
        let r = PartitionSelection.select([
            gpt(1, Self.root, label: "fooOS_1.9"), gpt(2, Self.root, label: "fooOS_1.10"),
            gpt(3, Self.root, label: "fooOS_2.0", flags: GPTFlags.noAuto),
        ], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [2: "/"])
    }

    @Test func equalLabelsGoToTheLowerNumber() {
        let r = PartitionSelection.select([gpt(1, Self.root, label: "os_1"), gpt(2, Self.root, label: "os_1")],
                                          table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/"])
    }

    @Test func firstHomeWinsWhateverItsLabel() {
        let r = PartitionSelection.select([gpt(1, Self.root), gpt(2, Self.home, label: "a_1"), gpt(3, Self.home, label: "a_2")],
                                          table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/", 2: "/home"])
    }

    @Test func noAutoPartitionsAreNotUsed() {
        let r = PartitionSelection.select([gpt(1, Self.root), gpt(2, Self.home, flags: GPTFlags.noAuto),
                                           gpt(3, Self.srv, flags: GPTFlags.readOnly)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/", 3: "/srv"])
        #expect(r.partitions[1].noAuto)
        #expect(r.partitions[2].readOnly)
    }

    @Test func foreignArchitectureRootIsReportedNotUsed() {
        let r = PartitionSelection.select([gpt(1, Self.rootArm64), gpt(2, Self.home)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [2: "/home"])
        #expect(r.partitions[0].designator == .root)
        #expect(r.partitions[0].architecture == .arm64)
        #expect(r.architecture == .arm64)
        #expect(r.warnings == ["no root partition for x86-64 (the image has one for arm64)"])
    }

    @Test func singleGenericLinuxPartitionIsTheRoot() {
        let r = PartitionSelection.select([gpt(1, Self.generic)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/"])
        #expect(r.partitions[0].designator == .root)
    }

    @Test func severalGenericPartitionsGiveNoRoot() {
        let r = PartitionSelection.select([gpt(1, Self.generic), gpt(2, Self.generic)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r).isEmpty)
        #expect(r.partitions.map(\.designator) == [.linuxGeneric, .linuxGeneric])
        #expect(r.warnings.count == 1)
    }

    @Test func genericPartitionIsIgnoredWhenThereIsARoot() {
        let r = PartitionSelection.select([gpt(1, Self.generic), gpt(2, Self.root)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [2: "/"])
        #expect(r.partitions[0].designator == .linuxGeneric)
    }

    @Test func mbrSingleBootableLinuxPartitionIsTheRoot() {
        let r = PartitionSelection.select([mbr(1, "0x83"), mbr(2, "0x83", bootable: true), mbr(3, "0x82", fs: "swap")],
                                          table: .dos, native: .x86_64)
        #expect(mountPoints(r) == [2: "/"])
        #expect(r.partitions.map(\.designator) == [.linuxGeneric, .root, .swap])
        #expect(r.architecture == nil)
    }

    @Test func mbrWithTwoBootableLinuxPartitionsHasNoRoot() {
        let r = PartitionSelection.select([mbr(1, "0x83", bootable: true), mbr(2, "0x83", bootable: true)],
                                          table: .dos, native: .x86_64)
        #expect(mountPoints(r).isEmpty)
        #expect(r.warnings.count == 1)
    }

    @Test func mbrBootableNonLinuxPartitionIsNotTheRoot() {
        let r = PartitionSelection.select([mbr(1, "0x07", bootable: true, fs: "ntfs")], table: .dos, native: .x86_64)
        #expect(mountPoints(r).isEmpty)
    }

    @Test func bareFilesystemIsTheRoot() {
        let r = PartitionSelection.select([Partition(number: 0, offset: 0, size: 1 << 24, fsType: "squashfs")],
                                          table: nil, native: .x86_64)
        #expect(mountPoints(r) == [0: "/"])
        #expect(r.partitions[0].readOnly)
    }

    @Test(arguments: ["btrfs", "erofs", "ext4", "squashfs", "vfat", "xfs"])
    func allowedFilesystemsAreMounted(fs: String) {
        let r = PartitionSelection.select([gpt(1, Self.root, fs: fs)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/"])
        #expect(r.partitions[0].readOnly == (fs == "squashfs" || fs == "erofs"))
    }

    @Test(arguments: ["ext2", "ext3", "ntfs", "crypto_LUKS", "swap", "iso9660"])
    func otherFilesystemsAreNotMounted(fs: String) {
        let r = PartitionSelection.select([gpt(1, Self.root), gpt(2, Self.home, fs: fs)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r) == [1: "/"])
        #expect(r.warnings == ["partition 2 (home): \(fs) filesystems are not mounted automatically"])
    }

    @Test func partitionWithoutFilesystemIsNotMounted() {
        let r = PartitionSelection.select([gpt(1, Self.root, fs: nil)], table: .gpt, native: .x86_64)
        #expect(mountPoints(r).isEmpty)
        #expect(r.warnings == ["partition 1 (root): no filesystem found"])
    }

    @Test func unknownTypesHaveNoDesignator() {
        let r = PartitionSelection.select([gpt(1, Self.root), gpt(2, "21686148-6449-6e6f-744e-656564454649", fs: nil)],
                                          table: .gpt, native: .x86_64)
        #expect(r.partitions[1].designator == nil)
        #expect(r.warnings.isEmpty)
    }
}
