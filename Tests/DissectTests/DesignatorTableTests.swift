import Testing
@testable import Dissect

/// The DPS table, checked against a few entries read by hand from the specification and
/// against its shape: every architecture has root, /usr and their verity kinds.
struct DesignatorTableTests {
    @Test(arguments: [
        ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", Designator.root, Architecture.x86_64),
        ("b921b045-1df0-41c3-af44-4c6f280d3fae", .root, .arm64),
        ("8484680c-9521-48c6-9c11-b0720656f69e", .usr, .x86_64),
        ("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", .rootVerity, .x86_64),
        ("41092b05-9fc8-4523-994f-2def0408b176", .rootVeritySignature, .x86_64),
        ("77ff5f63-e7b6-4633-acf4-1565b864c0e6", .usrVerity, .x86_64),
        ("e7bb33fb-06cf-4e81-8273-e543b413e2e2", .usrVeritySignature, .x86_64),
        ("44479540-f297-41b2-9af7-d131d5f0458a", .root, .x86),
        ("e9434544-6e2c-47cc-bae2-12d6deafb44c", .root, .mips),
        ("c31c45e6-3f39-412e-80fb-4809c4980599", .root, .ppc64LE),
        ("72ec70a6-cf74-40e6-bd49-4bda08e8f224", .root, .riscv64),
        ("77055800-792c-4f94-b39a-98c91b762bb6", .root, .loongarch64),
        ("974a71c0-de41-43c3-be5d-5c5ccd1ad2c0", .usrVeritySignature, .x86),
    ])
    func perArchitectureTypes(uuid: String, designator: Designator, architecture: Architecture) throws {
        let type = try #require(PartitionType.lookup(uuid))
        #expect(type.designator == designator)
        #expect(type.architecture == architecture)
    }

    @Test(arguments: [
        ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", Designator.esp, "/efi"),
        ("bc13c2ff-59e6-4262-a352-b275fd6f7172", .xbootldr, "/boot"),
        ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", .swap, nil),
        ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", .home, "/home"),
        ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", .srv, "/srv"),
        ("4d21b016-b534-45c2-a9fb-5c16e091fd2d", .var, "/var"),
        ("7ec6f557-3bc5-4aca-b293-16ef5df639d1", .tmp, "/var/tmp"),
        ("773f91ef-66d4-49b5-bd83-d683bf40ad16", .userHome, nil),
        ("0fc63daf-8483-4772-8e79-3d69d8477de4", .linuxGeneric, nil),
    ] as [(String, Designator, String?)])
    func singleTypes(uuid: String, designator: Designator, mountPoint: String?) throws {
        let type = try #require(PartitionType.lookup(uuid))
        #expect(type.designator == designator)
        #expect(type.architecture == nil)
        #expect(designator.mountPoint == mountPoint)
    }

    @Test func lookupIgnoresCase() {
        #expect(PartitionType.lookup("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")?.designator == .root)
        #expect(PartitionType.lookup("00000000-0000-0000-0000-000000000001") == nil)
    }

    @Test func everyArchitectureHasAllSixPerArchitectureKinds() {
        for arch in Architecture.allCases {
            let kinds = Set(PartitionType.all.filter { $0.architecture == arch }.map(\.designator))
            #expect(kinds == [.root, .usr, .rootVerity, .usrVerity, .rootVeritySignature, .usrVeritySignature],
                    "architecture \(arch.rawValue)")
        }
    }

    @Test func tableHasNoDuplicatesAndOnlyLowerCase() {
        #expect(PartitionType.all.count == 21 * 6 + 9)
        #expect(Set(PartitionType.all.map(\.uuid)).count == PartitionType.all.count)
        for type in PartitionType.all {
            #expect(type.uuid == type.uuid.lowercased())
            #expect(type.uuid.count == 36)
        }
    }
}
