import Foundation
import Testing

/// Issue 11: user namespaces by default. Root in the container is a range's root on the host,
/// the image's files keep their owners inside, what the container creates belongs to the range
/// on the host, machines get disjoint ranges, and the things root could do as root fail.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces: containers with user namespaces"))
struct UserNamespaceTests {
    /// The first line of a process's uid_map, as the host reads it: (inside, outside, count).
    static func uidMap(of pid: pid_t) -> (UInt32, UInt32, UInt32)? {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/uid_map", encoding: .utf8)) ?? ""
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt32($0) }
        return fields.count >= 3 ? (fields[0], fields[1], fields[2]) : nil
    }

    /// The container's own view: root, mapped to a range of 65536 from nspawn's block.
    @Test func pickMapsRootToARangeOfItsOwn() throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh([], "id -u; cat /proc/self/uid_map /proc/self/gid_map")
        try #require(lines.count == 3, "\(lines)")
        #expect(lines[0] == "0")
        let uid = lines[1].split(separator: " ").compactMap { UInt32($0) }
        let gid = lines[2].split(separator: " ").compactMap { UInt32($0) }
        #expect(uid == gid)
        try #require(uid.count == 3)
        #expect(uid[0] == 0 && uid[2] == 65536)
        #expect(uid[1] >= 0x80000 && uid[1] < 0x7000_0000 && uid[1] % 65536 == 0, "base \(uid[1])")
        #expect(image.isUnchanged)
    }

    /// The image's owners, inside and out: a file of root's and one of UID 1000 (set on a copy
    /// with debugfs) show with those owners in the container; a file the container creates on
    /// its overlay shows, from the host (through the container's root), as the range's; the image
    /// is not written.
    @Test(arguments: ["overlay", "state", "yes"])
    func ownersInsideAndOnTheHost(mode: String) throws {
        let image = try ImageCopy("basic")
        try Hardening.debugfs(image.path, partition: 2, ["sif user/hello.txt uid 1000", "sif user/hello.txt gid 1000"])
        let hash = Harness.sha256(image.path)
        let running = try ContainmentTests.Running(image, options: ["--volatile=\(mode)"], ["sh", "-c", """
            stat -c '%u:%g' /usr/bin/busybox /home/user/hello.txt > /tmp/owners
            touch /tmp/made /var/tmp/made && chown 1000:1000 /var/tmp/made && exec sleep 100
            """], commandName: "sleep")
        let (inside, base, count) = try #require(Self.uidMap(of: running.pid1))
        #expect(inside == 0 && count == 65536)
        let root = "/proc/\(running.pid1)/root"
        #expect((try? String(contentsOfFile: root + "/tmp/owners", encoding: .utf8)) == "0:0\n1000:1000\n")
        for (path, uid) in [("/tmp/made", base), ("/var/tmp/made", base + 1000), ("/home/user/hello.txt", base + 1000), ("/usr/bin/busybox", base)] {
            var st = stat()
            #expect(stat(root + path, &st) == 0, "\(path)")
            #expect(st.st_uid == uid && st.st_gid == uid, "\(path): \(st.st_uid):\(st.st_gid) on the host, not \(uid)")
        }
        running.stop(imageUnchanged: false)  // changed by debugfs above: compared with `hash`
        #expect(Harness.sha256(image.path) == hash, "the image was written")
    }

    /// Every filesystem imgboot mounts is idmapped: the same owners on ext4, xfs, btrfs,
    /// squashfs and erofs, in the default mode.
    @Test(arguments: ["basic", "btrfs-xfs", "squashfs", "erofs"])
    func everyFilesystemIsIdmapped(fixture: String) throws {
        let image = try ImageCopy(fixture)
        // state: the partitions themselves are in the container's mount table (an overlay would hide them).
        let out = try image.run(["--volatile=state"], ["sh", "-c", "stat -c '%u:%g' /etc/os-release; grep -c idmapped /proc/self/mountinfo"])
        #expect(out.status == 0, "\(out.stderr)")
        let lines = out.stdout.split(separator: "\n")
        #expect(lines.first == "0:0", "\(out.stdout)")
        #expect((lines.last.flatMap { Int($0) } ?? 0) >= 1, "no idmapped mount: \(out.stdout)")
        #expect(image.isUnchanged)
    }

    /// What only a user namespace stops, tried by root in the container, each up to the
    /// permission and no further (nothing is set): remount /sys read-write, a fresh procfs
    /// whose core_pattern is writable, a cgroup v1 hierarchy whose release_agent is writable,
    /// a block device node, a module. Under `pick` every one fails.
    @Test func rootIsNotRootOnTheHost() throws {
        let payload = try Hardening.payload.get()
        let image = try ImageCopy("basic")
        let out = try image.run(["--bind-ro=\(payload):/tmp/payload"], ["sh", "-c", Self.rootAttempts])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.split(separator: "\n").map(String.init) == [
            "sys remount refused", "fresh proc refused", "cgroup v1 refused", "mknod refused",
            "init_module: EPERM", "finit_module: EPERM",
        ], "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// The same with `--private-users=no`: what README's Security model says root can do
    /// without a user namespace, it can (up to the permission: nothing is written).
    @Test func rootIsRootWithoutUserNamespace() throws {
        let payload = try Hardening.payload.get()
        let image = try ImageCopy("basic")
        let out = try image.run(["--private-users=no", "--bind-ro=\(payload):/tmp/payload"], ["sh", "-c", Self.rootAttempts])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.split(separator: "\n").map(String.init) == [
            "sys remounted read-write", "fresh proc: core_pattern writable", "cgroup v1: release_agent writable",
            "mknod refused", "init_module: EPERM", "finit_module: EPERM",
        ], "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// Each attempt stops at the permission: core_pattern is opened for writing and closed
    /// (busybox's `test -w` says yes to root whatever the kernel would); release_agent is only
    /// written when it is empty, and then with nothing (an empty agent, as it was).
    static let rootAttempts = """
        mount -o remount,rw /sys 2>/dev/null && echo sys remounted read-write || echo sys remount refused
        mkdir -p /tmp/p /tmp/c
        if mount -t proc proc /tmp/p 2>/dev/null; then
            /tmp/payload open /tmp/p/sys/kernel/core_pattern w | grep -q ': ok$' && echo "fresh proc: core_pattern writable" || echo fresh proc refused
            umount /tmp/p
        else echo fresh proc refused; fi
        if mount -t cgroup -o pids none /tmp/c 2>/dev/null; then
            if [ -n "$(cat /tmp/c/release_agent)" ]; then echo "release_agent is set on this host: not touched"
            elif echo > /tmp/c/release_agent 2>/dev/null; then echo "cgroup v1: release_agent writable"
            else echo cgroup v1 refused; fi
            umount /tmp/c
        else echo cgroup v1 refused; fi
        mknod /tmp/block b 7 0 2>/dev/null && echo mknod worked || echo mknod refused
        /tmp/payload modules /usr/bin/busybox
        """

    /// Two machines at once get disjoint ranges, and `list` shows each; a machine killed with
    /// SIGKILL leaves its range free: the next machine of that name gets it back.
    @Test func rangesAreDisjointAndFreedAfterSIGKILL() throws {
        let first = try ContainmentTests.Running(try ImageCopy("basic"), ["sleep", "100"], commandName: "sleep")
        let second = try ContainmentTests.Running(try ImageCopy("basic"), ["sleep", "100"], commandName: "sleep")
        let a = try #require(Self.uidMap(of: first.pid1)), b = try #require(Self.uidMap(of: second.pid1))
        #expect(a.1 != b.1 && (a.1 + a.2 <= b.1 || b.1 + b.2 <= a.1), "ranges \(a) and \(b) overlap")
        let listed = try MachinesTests.list().filter { $0.name == first.image.machine || $0.name == second.image.machine }
        #expect(Set(listed.compactMap(\.users)) == ["\(a.1):65536", "\(b.1):65536"], "\(listed)")
        let table = try MachinesTests.table()
        #expect(table[first.image.machine]?.contains("\(a.1)-\(a.1 + 65535)") == true, "\(table)")
        second.stop()

        // SIGKILL: the kernel drops the range's lock with imgboot.
        first.imgboot.signal(SIGKILL)
        #expect(first.imgboot.exitStatus(within: 30) == 137)
        #expect(Harness.waitUntil(upTo: 30) { Harness.machineProcesses(first.image.machine).isEmpty })
        #expect(Harness.waitUntil(upTo: 30) { Harness.loopDevices(backing: first.image.path).isEmpty })
        let again = try ContainmentTests.Running(first.image, ["sleep", "100"], commandName: "sleep")
        #expect(Self.uidMap(of: again.pid1)?.1 == a.1, "the killed machine's range was not given back")
        again.stop()
    }

    /// `enter` joins the machine's user namespace: the same map, root inside.
    @Test func enterJoinsTheUserNamespace() throws {
        let running = try ContainmentTests.Running(try ImageCopy("basic"), ["sleep", "100"], commandName: "sleep")
        let map = try #require(Self.uidMap(of: running.pid1))
        let out = try Harness.imgboot(["enter", running.image.machine, "--", "sh", "-c", "id -u; cat /proc/self/uid_map"])
        #expect(out.status == 0, "\(out.stderr)")
        let lines = out.stdout.split(separator: "\n")
        #expect(lines.first == "0")
        #expect(lines.last?.split(separator: " ").compactMap { UInt32($0) } == [0, map.1, 65536], "\(out.stdout)")
        running.stop()
    }

    /// `identity`: a user namespace whose IDs are the host's; `UID:COUNT`: that range, and a
    /// second machine asking for an overlapping one is refused.
    @Test func identityAndExplicitRanges() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh(["--private-users=identity"], "cat /proc/self/uid_map | tr -s ' '") == [" 0 0 65536"])
        let base = 0x6F00_0000 as UInt32
        let running = try ContainmentTests.Running(try ImageCopy("basic"), options: ["--private-users=\(base):65536"],
                                                   ["sleep", "100"], commandName: "sleep")
        #expect(Self.uidMap(of: running.pid1).map { [$0.0, $0.1, $0.2] } == [0, base, 65536])
        let other = try ImageCopy("basic")
        let refused = try other.run(["--private-users=\(base + 4096):4096"], ["true"])
        Hardening.expectOwnFailure(refused, image: other.path,
                                   "--private-users=\(base + 4096):4096: the range is in use by another machine")
        running.stop()
    }

    /// A bind whose filesystem cannot be idmapped (procfs) is a one-line error that says what to
    /// do — never a silent fallback to an unmapped bind; with `:noidmap` it works.
    @Test func bindThatCannotBeIdmapped() throws {
        let image = try ImageCopy("basic")
        let refused = try image.run(["--bind-ro=/proc/sys/kernel:/mnt"], ["true"])
        Hardening.expectOwnFailure(refused, image: image.path, "bind /proc/sys/kernel on /mnt: ", exact: false)
        #expect(refused.stderr.contains("add :noidmap"), "\(refused.stderr)")
        #expect(try image.sh(["--bind-ro=/proc/sys/kernel:/mnt:noidmap"], "cat /mnt/ostype") == ["Linux"])
        #expect(image.isUnchanged)
    }

    @Test func badValuesAreRefused() throws {
        for value in ["bogus", "12:0", "-3", "4294967295:2"] {
            let out = try Harness.imgboot(["run", "--private-users=\(value)", "/nonexistent.raw"])
            #expect(out.status == 125 || out.status == 64, "--private-users=\(value): \(out.status)")
            #expect(out.stderr.contains("--private-users"), "\(out.stderr)")
        }
        let conflict = try Harness.imgboot(["run", "-U", "--private-users=no", "/nonexistent.raw"])
        #expect(conflict.stderr.contains("-U"), "\(conflict.stderr)")
    }
}
