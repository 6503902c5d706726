#if canImport(Glibc)
import Glibc
#endif
import Attach
import Dissect
import Testing
@testable import Mount
import Support

/// The records of the state store (`StateStore`): what is written is read back as it was,
/// hostile strings cannot add or change a field, and anything but a complete record of the
/// format is no record at all.
struct StateRecordTests {
    static let machine = MachineRecord(
        name: "basic-2", kind: .run, mode: "overlay", image: "/var/lib/images/basic.raw",
        leader: ProcessIdentity(pid: 4242, startTime: 123_456), supervisor: ProcessIdentity(pid: 4200, startTime: 123_400),
        started: 1_733_230_000, cgroup: "/sys/fs/cgroup/unified/imgboot/basic-2", privateNetwork: true)

    @Test func machineRoundTrip() throws {
        let text = Self.machine.json.serialized(pretty: false)
        #expect(MachineRecord(json: try JSON(parsing: text)) == Self.machine)
        var starting = Self.machine
        starting.leader = nil
        starting.cgroup = nil
        #expect(MachineRecord(json: try JSON(parsing: starting.json.serialized(pretty: false))) == starting)
        #expect(starting.leaderPID == 0)
    }

    /// Issue 10, item 6: an image named so as to add a `leader=` line (the old `key=value`
    /// format) or a JSON member stays one string, and the leader stays the real one.
    @Test(arguments: [
        "/tmp/x\nleader=1\nsupervisor=1\n.raw",
        #"/tmp/x","leader":1,"supervisor":1,"x":".raw"#,
        "/tmp/x\\\",\\\"leader\\\":1.raw",
        "/tmp/\u{0}\u{1b}[2J\u{7f}.raw",
    ])
    func hostileImageNames(image: String) throws {
        var record = Self.machine
        record.image = image
        let text = record.json.serialized(pretty: false)
        #expect(!text.contains("\n"), "one line")
        let read = try #require(MachineRecord(json: try JSON(parsing: text)))
        #expect(read.image == image)
        #expect(read.leader == Self.machine.leader && read.supervisor == Self.machine.supervisor)
    }

    /// A record missing a field, with a field of the wrong type, or of another version, is
    /// refused whole — never completed with defaults.
    @Test(arguments: ["version", "name", "kind", "mode", "image", "leader", "leaderStartTime", "supervisor",
                      "supervisorStartTime", "started", "cgroup", "privateNetwork"])
    func machineFieldMissingOrMistyped(field: String) throws {
        guard case .object(let members) = Self.machine.json else { Issue.record("not an object"); return }
        #expect(MachineRecord(json: .object(members.filter { $0.0 != field })) == nil, "without \(field)")
        let mistyped: JSON = members.first { $0.0 == field }?.1.stringValue != nil ? .int(1) : .string("1")
        #expect(MachineRecord(json: .object(members.map { $0.0 == field ? ($0.0, mistyped) : $0 })) == nil, "\(field) mistyped")
    }

    @Test func machineImpossibleValues() throws {
        guard case .object(let members) = Self.machine.json else { Issue.record("not an object"); return }
        func with(_ field: String, _ value: JSON) -> MachineRecord? {
            MachineRecord(json: .object(members.map { $0.0 == field ? ($0.0, value) : $0 }))
        }
        #expect(with("version", .int(2)) == nil)
        #expect(with("leader", .int(-1)) == nil)
        #expect(with("leader", .int(1 << 40)) == nil, "no pid_t")
        #expect(with("supervisor", .int(0)) == nil)
        #expect(with("leaderStartTime", .int(-5)) == nil)
        #expect(with("cgroup", .null)?.cgroup == nil)
    }

    /// Field 22 of /proc/PID/stat, counted from the last ')': a command name may hold spaces
    /// and parentheses (a process can name itself so, to shift the fields).
    @Test func startTimeFromStat() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 98765 19 20"
        #expect(ProcessIdentity.startTime(stat: "42 (sleep) " + tail) == 98765)
        #expect(ProcessIdentity.startTime(stat: "42 (a) 1 2 3 (b) " + tail) == 98765)
        #expect(ProcessIdentity.startTime(stat: "42 ((() " + tail) == 98765)
        #expect(ProcessIdentity.startTime(stat: "42 (sleep) S 1 2") == nil)
        #expect(ProcessIdentity.startTime(stat: "") == nil)
    }

    @Test func thisProcessHasAStartTime() throws {
        let me = try #require(ProcessIdentity(pid: getpid()))
        #expect(me.startTime > 0)
        #expect(ProcessIdentity.startTime(of: getpid()) == me.startTime, "stable")
    }

    static let mount = MountRecord(
        directory: "/mnt/x\ny", image: #"img","writable":true,"x":".raw"#,
        imageFile: FileIdentity(device: 65024, inode: UInt64(Int64.max) + 5), writable: false,
        top: MountIdentity(id: 45, uniqueID: 2_147_568_607, source: "/dev/loop0", fsType: "ext4"),
        devices: [LoopIdentity(number: 0, diskSequence: 24405, backingFile: "/tmp/b.raw", offset: 1 << 20),
                  LoopIdentity(number: 7, diskSequence: nil, backingFile: nil, offset: 0)],
        namespace: FileIdentity(device: 4, inode: 4_026_531_841))

    @Test func mountRoundTrip() throws {
        let read = try #require(MountRecord(json: try JSON(parsing: Self.mount.json.serialized(pretty: false))))
        #expect(read == Self.mount)
        #expect(read.writable == false, "the image's name adds no member")
        var withoutFile = Self.mount
        withoutFile.imageFile = nil
        withoutFile.top.uniqueID = nil
        withoutFile.namespace = nil
        #expect(MountRecord(json: try JSON(parsing: withoutFile.json.serialized())) == withoutFile)
    }

    @Test(arguments: ["version", "directory", "image", "imageFile", "writable", "top", "devices", "mountNamespace"])
    func mountFieldMissing(field: String) {
        guard case .object(let members) = Self.mount.json else { Issue.record("not an object"); return }
        #expect(MountRecord(json: .object(members.filter { $0.0 != field })) == nil)
    }

    /// The tree of a mount: it and what is stacked on it, by the table's parent links — not a
    /// mount that lies below the same directory but under the tree (one it was mounted over).
    @Test func treeFollowsParentLinks() {
        let table = MountTable(parsing: """
            20 1 0:20 / / rw - ext4 /dev/sda1 rw
            30 20 0:30 / /mnt rw - tmpfs tmpfs rw
            31 30 7:0 / /mnt rw - ext4 /dev/loop0 ro
            32 31 7:1 / /mnt/home rw - ext4 /dev/loop1 ro
            33 32 0:33 / /mnt/home/x rw - tmpfs tmpfs rw
            34 20 0:34 / /other rw - tmpfs tmpfs rw
            35 31 7:2 / /mnt/srv rw - ext4 /dev/loop2 ro
            """)
        #expect(table.tree(from: 31).map(\.id) == [31, 32, 33, 35])
        #expect(table.tree(from: 35).map(\.id) == [35])
        #expect(table.tree(from: 99).map(\.id) == [])
    }

    @Test func mountIdentityMatching() {
        let recorded = MountIdentity(id: 45, uniqueID: 100, source: "/dev/loop0", fsType: "ext4")
        #expect(recorded.isSame(as: recorded))
        #expect(recorded.isSame(as: MountIdentity(id: 45, uniqueID: nil, source: "/dev/loop0", fsType: "ext4")))
        #expect(!recorded.isSame(as: MountIdentity(id: 45, uniqueID: 101, source: "/dev/loop0", fsType: "ext4")), "ID reused")
        #expect(!recorded.isSame(as: MountIdentity(id: 45, uniqueID: 100, source: "/dev/loop1", fsType: "ext4")))
        #expect(!recorded.isSame(as: MountIdentity(id: 46, uniqueID: 100, source: "/dev/loop0", fsType: "ext4")))
        #expect(!recorded.isSame(as: MountIdentity(id: 45, uniqueID: 100, source: "/dev/loop0", fsType: "xfs")))
    }
}
