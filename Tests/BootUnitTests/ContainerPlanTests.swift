import CLinux
import Glibc
import Dissect
import Testing
@testable import Boot
@testable import Mount

/// The container's part of the mount plan, built without root or any image.
struct ContainerPlanTests {
    static let image: DissectedImage = {
        let root = Partition(number: 1, typeUuid: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", offset: 1 << 20, size: 1 << 20, fsType: "ext4")
        let selection = PartitionSelection.select([root], table: .gpt, native: .x86_64)
        return DissectedImage(image: "basic.raw", size: 64 << 20, sectorSize: 512, partitionTable: .gpt, imageUuid: nil,
                              architecture: selection.architecture, partitions: selection.partitions, warnings: selection.warnings)
    }()

    static func spec(_ mode: VolatileMode = .overlay, users: PrivateUsers = .pick, privateNetwork: Bool = false,
                     binds: [ContainerSpec.Bind] = []) throws -> ContainerSpec {
        let plan = try MountPlan.make(for: image, options: MountOptions(volatile: mode, readOnly: false))
        return ContainerSpec(image: image, plan: plan, machine: "basic", hostname: nil, arguments: [], boot: false,
                             binds: binds, privateNetwork: privateNetwork, privateUsers: users)
    }

    static func lines(_ spec: ContainerSpec, _ phase: MountPlan.Phase) -> [String] {
        Container.plan(for: spec).steps(phase).map(\.line)
    }

    /// The container does, in order: /proc and its masks, /proc/sys read-only, cgroup2, mqueue,
    /// the console — and sysfs too when it can (no user namespace, or a network of its own).
    @Test(arguments: [(PrivateUsers.pick, false), (.no, false), (.pick, true)])
    func containerPhase(users: PrivateUsers, privateNetwork: Bool) throws {
        let sysHere = users == .no || privateNetwork
        let expected = [
            "mount proc on /proc (nosuid,nodev,noexec)",
            "cover /proc/kcore with /dev/null, if it exists",
            "cover /proc/keys with /dev/null, if it exists",
            "cover /proc/timer_list with /dev/null, if it exists",
            "cover /proc/kallsyms with /dev/null, if it exists",
            "cover /proc/sys/kernel/random/boot_id with /run/host/boot_id, if it exists",
            "make /proc/sys read-only, if it exists",
            "make /proc/sysrq-trigger read-only, if it exists",
        ] + (sysHere ? ["mount sysfs on /sys (ro,nosuid,nodev,noexec)"] : []) + [
            "mount cgroup2 on /sys/fs/cgroup (nosuid,nodev,noexec)",
            "mount mqueue on /dev/mqueue (nosuid,nodev,noexec)",
            "cover /dev/console with [the console], if it exists",
        ]
        #expect(Self.lines(try Self.spec(users: users, privateNetwork: privateNetwork), .container) == expected)
        let tree = Self.lines(try Self.spec(users: users, privateNetwork: privateNetwork), .tree)
        #expect(tree.contains("mount sysfs on /sys (ro,nosuid,nodev,noexec)") == !sysHere)
    }

    /// imgboot's part after the image's: /dev with exactly the table's nodes, /run with the
    /// notify socket, /tmp; resolv.conf only when the network is the host's, written on a
    /// volatile /etc and bound over the image's file otherwise; the binds last.
    @Test func treePhase() throws {
        let bind = ContainerSpec.Bind(source: "/srv/data", target: "/data", readOnly: true, idmap: false)
        let overlay = Self.lines(try Self.spec(.overlay, binds: [bind]), .tree)
        let imageSteps = try Self.spec(.overlay).plan.steps.count
        let own = Array(overlay.dropFirst(imageSteps))
        #expect(own.first == "check /proc is a real directory (made on a writable tree)")
        #expect(own.filter { $0.hasPrefix("mknod ") } == ContainerDevices.nodes.map {
            "mknod /dev/\($0.name) (character device \($0.major):\($0.minor), mode 666)"
        })
        #expect(own.contains("mount devpts on /dev/pts (newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec)"))
        #expect(own.contains("bind the notify socket on /run/host/notify"))
        #expect(own.contains("write a copy of the host's /etc/resolv.conf at /etc/resolv.conf"))
        #expect(own.last == "bind the host's /srv/data on /data (ro)")

        let state = Self.lines(try Self.spec(.state), .tree)
        #expect(state.contains("bind a copy of the host's /etc/resolv.conf (at /run/host/resolv.conf) read-only over /etc/resolv.conf, if the image has a regular file there"))
        #expect(!Self.lines(try Self.spec(privateNetwork: true), .tree).contains { $0.contains("resolv.conf") })
        #expect(Self.lines(try Self.spec(binds: [ContainerSpec.Bind(source: "/a", target: "/b", readOnly: false)]), .tree).last
                == "bind the host's /a on /b, idmapped into the container")
    }

    /// The operations the child receives: kinds, tree-relative paths, mount(2) flags apart from
    /// the filesystem's own options, the console as a source of its own.
    @Test func operations() throws {
        let ops = try ContainerPlan.Operations(Container.plan(for: try Self.spec(users: .no)))
        let array = Array(UnsafeBufferPointer(start: ops.pointer, count: Int(ops.count)))
        try #require(array.count == ops.steps.count && array.count == 12)
        #expect(array[0].kind == Int32(IMGBOOT_OP_MOUNT.rawValue))
        #expect(String(cString: array[0].target) == "proc" && String(cString: array[0].fstype) == "proc")
        #expect(array[0].flags == UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC) && array[0].data == nil)
        #expect(array[1].kind == Int32(IMGBOOT_OP_COVER.rawValue) && String(cString: array[1].source) == "dev/null")
        #expect(array[6].kind == Int32(IMGBOOT_OP_READ_ONLY.rawValue) && String(cString: array[6].target) == "proc/sys")
        #expect(array.last?.kind == Int32(IMGBOOT_OP_COVER.rawValue) && array.last?.source == nil)
        let split = ContainerPlan.Operations.split(["newinstance", "ptmxmode=0666", "nosuid", "ro", "gid=5"])
        #expect(split.flags == UInt(MS_NOSUID | MS_RDONLY) && split.data == "newinstance,ptmxmode=0666,gid=5")
    }

    /// One device table: the v1 rules and the BPF entries cover the nodes and the ptys.
    @Test func deviceTable() {
        #expect(ContainerDevices.v1Rules == ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                                             "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"])
        #expect(ContainerDevices.filterEntries.last.map { [Int64($0.major), Int64($0.minor)] } == [136, -1])
        #expect(ContainerDevices.nodes.map(\.name) == ["null", "zero", "full", "random", "urandom", "tty"])
    }
}
