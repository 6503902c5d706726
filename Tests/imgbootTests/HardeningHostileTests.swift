import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 6, hostile image contents, in containers (`imgboot run`, every volatile mode where it
/// means something): mount points that are links out of the tree, loops, files, FIFOs or
/// device nodes; host device nodes in the image; hostile metadata files; payloads that fill
/// their filesystems or try the kernel's doors (modules, TIOCSTI, /proc/1/exe).
/// After every run nothing is left (`ImageCopy.run`: no loop device, no mount of imgboot's on
/// the host, no process, no cgroup or registry entry) and, unless the run is writable, the
/// image's bytes are the same.
///
/// Variants of the fixtures are made per test with debugfs (`Hardening.debugfs`) on a private
/// copy: 60 mount-point variants would be 60 more recipes.
///
/// Proven elsewhere: `mount` of the hostile-* fixtures in every mode, with the host's mount
/// table compared (`MountCommandTests.Hostile`); PID 1 of `run` holds no descriptor, its
/// command only the standard streams (`RunTests.noInheritedFileDescriptors`); /proc/sys
/// mounted read-only (`RunTests.procAndSys`); /proc/sysrq-trigger read-only, kcore, keys,
/// timer_list and kallsyms masked, where this kernel has them (`ContainmentTests`); no host
/// disk in /dev and mknod of one refused (`RunTests.dev`); nspawn's capability set in all five
/// sets (`RunTests.capabilityBoundingSet`); the attacks of issue 10 (`ContainmentTests`).
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct HardeningHostileTests {
    /// What a mount point in the image is, instead of a directory.
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case absoluteLink, climbingLink, linkLoop, regularFile, fifo, deviceNode

        /// The debugfs command that makes `name` (in debugfs's current directory) this kind;
        /// the links lead to `host`, a directory on the host.
        func command(_ name: String, host: String) -> String {
            switch self {
            case .absoluteLink: "symlink \(name) \(host)"
            case .climbingLink: "symlink \(name) ../../../../../..\(host)"
            case .linkLoop: "symlink \(name) \(name)"
            case .regularFile: "write /dev/null \(name)"
            case .fifo: "mknod \(name) p"
            case .deviceNode: "mknod \(name) b 254 0"  // the first virtio disk: this host's root
            }
        }

        var isLink: Bool { self == .absoluteLink || self == .climbingLink || self == .linkLoop }
        var testDescription: String { rawValue }
    }

    /// A directory on the host that an image's links point at: it must stay empty, and nothing
    /// may be mounted on it.
    final class HostDecoy {
        let path = "/tmp/imgboot-hostile-\(UUID().uuidString.prefix(8).lowercased())"

        init() throws {
            guard mkdir(path, 0o755) == 0 else { throw HarnessError("mkdir \(path): \(String(cString: strerror(errno)))") }
        }

        deinit { rmdir(path) }

        func expectUntouched(sourceLocation: SourceLocation = #_sourceLocation) {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? ["(unreadable)"]
            #expect(entries.isEmpty, "\(path) was written: \(entries)", sourceLocation: sourceLocation)
            #expect(!Harness.mountPoints().contains(path), "something was mounted on \(path)", sourceLocation: sourceLocation)
        }
    }

    // MARK: - API mount points

    /// /proc, /sys, /dev, /run and /tmp as links (out of the tree, climbing, looping), files,
    /// FIFOs or device nodes: refused with one line naming the path, in every mode that uses
    /// the image's root; `yes` has a tmpfs root of imgboot's own and works.
    @Test(arguments: ["proc", "sys", "dev", "run", "tmp"], Kind.allCases)
    func apiMountPointThatIsNotADirectory(path: String, kind: Kind) throws {
        let decoy = try HostDecoy()
        let image = try ImageCopy("basic")
        try Hardening.debugfs(image.path, ["rmdir \(path)", kind.command(path, host: decoy.path)])
        let edited = Harness.sha256(image.path)
        let expected = kind.isLink
            ? "the image's /\(path) is a symlink; imgboot mounts /\(path) only on a real directory"
            : "the image's /\(path) is not a directory"
        for mode in ["overlay", "state"] {
            Hardening.expectOwnFailure(try image.run(["--volatile=\(mode)"], ["true"]), image: image.path, expected)
        }
        #expect(try image.sh(["--volatile=yes"], "test -d /\(path)/. && grep -c ' /\(path) ' /proc/mounts") == ["1"])
        #expect(Harness.sha256(image.path) == edited, "the image was written")
        Hardening.expectOwnFailure(try image.run(["--volatile=no"], ["true"]), image: image.path, expected)
        decoy.expectUntouched()
    }

    // MARK: - Partition mount points

    /// A mount point of a partition, replaced in a fixture by something else.
    struct Target: Sendable, CustomTestStringConvertible {
        var fixture: String
        /// The partition whose filesystem holds the entry, the debugfs commands that remove the
        /// directory, and the entry's name there.
        var holder: Int
        var remove: [String]
        var name: String
        /// The mount point in the tree, and the partition that would be mounted there.
        var path: String
        var partition: String
        /// In `state`, /var is imgboot's tmpfs (no partition named) and /var/tmp unused.
        var stateUsesIt: Bool = true
        var statePartition: String?
        /// A script whose output proves `yes` (and an unused `state`) worked, and that output.
        var check: String
        var checked: [String]
        var testDescription: String { path }
    }

    static let targets: [Target] = [
        Target(fixture: "basic", holder: 1, remove: ["rmdir home"], name: "home", path: "/home",
               partition: "partition 2 (home)", statePartition: "partition 2 (home)",
               check: "cat /home/user/hello.txt", checked: ["hello from the imgboot home partition"]),
        Target(fixture: "basic", holder: 1, remove: ["rmdir srv"], name: "srv", path: "/srv",
               partition: "partition 3 (srv)", statePartition: "partition 3 (srv)",
               check: "cat /srv/www/index.html", checked: ["<h1>imgboot srv partition</h1>"]),
        Target(fixture: "split-usr", holder: 1, remove: ["rmdir usr"], name: "usr", path: "/usr",
               partition: "partition 2 (usr)", statePartition: "partition 2 (usr)",
               check: "test -x /usr/bin/busybox && echo usr", checked: ["usr"]),
        Target(fixture: "flags", holder: 1, remove: ["rmdir var/tmp", "rmdir var"], name: "var", path: "/var",
               partition: "partition 4 (var)", statePartition: nil,
               check: "ls -A /var", checked: ["tmp"]),
        Target(fixture: "squashfs", holder: 2, remove: [], name: "tmp", path: "/var/tmp",
               partition: "partition 3 (tmp)", stateUsesIt: false,
               check: "test -d /var/tmp && echo ok", checked: ["ok"]),
    ]

    /// Links resolve inside the image (here to nothing: the error says the mount point does not
    /// exist in the image), loops and non-directories are refused by name, in every mode that
    /// mounts the partition there; the host's directory the links name is never touched.
    @Test(arguments: targets, Kind.allCases)
    func partitionMountPointThatIsNotADirectory(target t: Target, kind: Kind) throws {
        let decoy = try HostDecoy()
        let image = try ImageCopy(t.fixture)
        try Hardening.debugfs(image.path, partition: t.holder, t.remove + [kind.command(t.name, host: decoy.path)])
        let edited = Harness.sha256(image.path)

        func problem(readOnly: Bool) -> String {
            switch kind {
            case .absoluteLink, .climbingLink:
                readOnly ? "mount point \(t.path) does not exist in the read-only image (imgboot never writes the image to create it)"
                    : "\(t.path) does not exist in the image"
            case .linkLoop: "mount point \(t.path) is a symlink loop"
            case .regularFile, .fifo, .deviceNode: "mount point \(t.path) is not a directory"
            }
        }
        Hardening.expectOwnFailure(try image.run(["--volatile=overlay"], ["true"]), image: image.path,
                                   "\(t.partition): \(problem(readOnly: false))")
        if t.stateUsesIt {
            Hardening.expectOwnFailure(try image.run(["--volatile=state"], ["true"]), image: image.path,
                                       (t.statePartition.map { "\($0): " } ?? "") + problem(readOnly: true))
        } else {
            #expect(try image.sh(["--volatile=state"], t.check) == t.checked)
        }
        #expect(try image.sh(["--volatile=yes"], t.check) == t.checked)
        #expect(Harness.sha256(image.path) == edited, "the image was written")
        Hardening.expectOwnFailure(try image.run(["--volatile=no"], ["true"]), image: image.path,
                                   "\(t.partition): \(problem(readOnly: false))")
        decoy.expectUntouched()
    }

    /// The hostile-* fixtures (made for `mount`, see fixtures/README.md) in containers: a link
    /// out of the tree lands inside it, the rest is refused by name; nothing of the host's.
    @Test(arguments: ["overlay", "state", "no", "yes"])
    func hostileLinksLandInsideTheTree(mode: String) throws {
        let image = try ImageCopy("hostile-links")
        let out = try image.run(["--volatile=\(mode)"], ["sh", "-c", "cat /etc/user/hello.txt /home/user/hello.txt 2>/dev/null; grep -E ' /(etc|home|srv|tmp/imgboot-escape) ' /proc/mounts | cut -d' ' -f2"])
        #expect(out.status == 0, "\(out.stderr)")
        if mode == "yes" {
            // The tmpfs root's own /home and /srv.
            #expect(out.stdout == "hello from the imgboot home partition\n/home\n/srv\n")
            #expect(out.stderr.isEmpty)
        } else {
            // home -> /etc: the home partition is the image's /etc; srv -> ../../../../tmp/imgboot-escape:
            // the image's /tmp/imgboot-escape (under the container's own /tmp).
            // Inside, /home -> /etc leads there too.
            #expect(out.stdout == "hello from the imgboot home partition\nhello from the imgboot home partition\n/etc\n/tmp/imgboot-escape\n")
            #expect(out.stderr == "imgboot: warning: \(image.path): partition 4 (xbootldr) is not mounted: mount point /boot is a symlink loop\n")
        }
        #expect(!FileManager.default.fileExists(atPath: "/etc/user/hello.txt"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/imgboot-escape/www"))
        if mode != "no" { #expect(image.isUnchanged) }
    }

    @Test(arguments: [
        ("hostile-var", ["overlay": "partition 2 (var): mount point /var is a symlink loop",
                         "state": "mount point /var is a symlink loop",
                         "no": "partition 2 (var): mount point /var is a symlink loop"]),
        ("hostile-usr", ["overlay": "partition 2 (usr): mount point /usr is not a directory",
                         "state": "partition 2 (usr): mount point /usr is not a directory",
                         "no": "partition 2 (usr): mount point /usr is not a directory"]),
        ("hostile-stack", ["overlay": "partition 3 (var): mount point /var leads to the image's root directory",
                           "state": "mount point /var leads to the image's root directory",
                           "no": "partition 3 (var): mount point /var leads to the image's root directory"]),
        ("hostile-rollback", ["overlay": "partition 3 (var): mount ext4 on [staging]/lower-3: Structure needs cleaning",
                              "no": "partition 3 (var): mount ext4 on /var: Structure needs cleaning"]),
    ] as [(String, [String: String])])
    func hostileFixturesAreRefusedByName(fixture: String, errors: [String: String]) throws {
        let image = try ImageCopy(fixture)
        for mode in ["overlay", "state", "yes", "no"] {
            let out = try image.run(["--volatile=\(mode)"], ["true"])
            if let error = errors[mode] {
                Hardening.expectOwnFailure(out, image: image.path, error)
            } else {
                #expect(out.status == 0, "\(mode): \(out.stderr)")
            }
            if mode != "no" { #expect(image.isUnchanged, "\(mode)") }
        }
    }

    // MARK: - Host devices in the image

    /// Device nodes of host devices in the image (the host's root disk, /dev/mem, /dev/kmsg…)
    /// cannot be opened in any mode: the image's partitions are mounted nodev, and the device
    /// policy refuses them besides. (On the host, `MountCommandTests.HardeningHostNodes`.)
    @Test(arguments: ["overlay", "state", "yes", "no"])
    func hostDeviceNodesAreUnusable(mode: String) throws {
        let payload = try Hardening.payload.get()
        let image = try ImageCopy("host-nodes")
        // yes has only /usr of the root, and home.
        let nodes = mode == "yes" ? ["/usr/vda", "/home/vda"]
            : ["/root/vda", "/root/sda", "/root/nvme", "/root/mem", "/root/kmsg", "/usr/vda", "/home/vda"]
        let script = nodes.map { "ls -l \($0) | cut -c1; /tmp/payload open \($0) r; /tmp/payload open \($0) w" }.joined(separator: "; ")
        let lines = try image.sh(["--volatile=\(mode)", "--bind-ro=\(payload):/tmp/payload"], script)
        try #require(lines.count == 3 * nodes.count, "\(lines)")
        for (i, node) in nodes.enumerated() {
            let kind = lines[3 * i]
            #expect(kind == (node.hasSuffix("mem") || node.hasSuffix("kmsg") ? "c" : "b"), "\(node) is not a device node in the image: \(kind)")
            for line in lines[(3 * i + 1)...(3 * i + 2)] {
                #expect(line.hasSuffix(": EACCES") || line.hasSuffix(": EPERM"), "\(line)")
            }
        }
        if mode != "no" { #expect(image.isUnchanged) }
    }

    // MARK: - Hostile metadata

    /// A 200 MiB sparse os-release, and metadata full of terminal escapes, forged lines and
    /// binary bytes: inspect reads a bounded prefix (peak RSS as for any image, far below
    /// 50 MB), prints one line per field with every control character escaped, and valid JSON.
    @Test(.enabled(if: Hardening.hasTime, "/usr/bin/time (Debian package time) is not installed"))
    func hugeAndBinaryMetadataIsReadWithBounds() throws {
        let image = try ImageCopy("huge-metadata")
        let (out, kib) = try Hardening.peakRSS([Harness.binary, "inspect", image.path])
        #expect(out.status == 0, "\(out.stderr)")
        let peak = try #require(kib)
        #expect(peak < 50 * 1024, "inspect's peak RSS: \(peak) KiB")
        let bytes = Array(out.stdout.utf8)
        #expect(!bytes.contains { ($0 < 0x20 && $0 != 0x0a) || $0 == 0x7f }, "a control character reached the output")
        let lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        for key in ["Image:", "OS:", "Hostname:", "Machine ID:", "Arch:"] {
            #expect(lines.filter { $0.hasPrefix(key) }.count == 1, "\(key) lines: \(lines)")
        }
        #expect(lines.contains(#"OS:         \x1b]0;owned\x07\x1b[2Jhuge\x0dOS: forged\x01\#u{FFFD}\#u{FFFD}"#), "\(lines)")
        #expect(lines.contains(#"Hostname:   \x1b[31mred\x1b[0m\x1b]0;owned\x07"#), "\(lines)")
        let machineID = try #require(lines.first { $0.hasPrefix("Machine ID: ") })
        #expect(machineID.utf8.count < 128 * 4 + 12, "machine ID line: \(machineID.utf8.count) bytes")

        let json = try Harness.imgboot(["inspect", "--json", image.path])
        #expect(json.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let osRelease = try #require(object["osRelease"] as? [String: String])
        #expect(osRelease["ID"] == "imgboot-huge", "the first key=value wins; ID=too-far at 100 MiB is never read")
        #expect(osRelease["PRETTY_NAME"]?.hasPrefix("\u{1b}]0;owned\u{07}") == true)
        #expect(object["hostname"] as? String == "\u{1b}[31mred\u{1b}[0m\u{1b}]0;owned\u{07}")
        image.leftovers.expectNone(imageUnchanged: true)

        // The container does not care.
        #expect(try image.sh([], "wc -c < /etc/os-release") == ["209715200"])
        #expect(image.isUnchanged)
    }

    /// os-release a FIFO, hostname a link to /proc/self/environ, machine-id /dev/zero's node:
    /// inspect neither hangs on the FIFO, nor follows the link out of the image (into its own
    /// environment), nor reads the device — no OS, hostname or machine ID.
    @Test func oddMetadataFilesAreNotFollowed() throws {
        let image = try ImageCopy("odd-metadata")
        let secret = "imgboot-secret-\(image.machine)"
        let inspect = try BackgroundProcess(["/usr/bin/env", "IMGBOOT_TEST_SECRET=\(secret)", Harness.binary, "inspect", "--json", image.path])
        defer { inspect.kill() }
        try #require(inspect.exitStatus(within: 60) == 0, "inspect hung or failed: \(inspect.stderr)")
        #expect(!inspect.stdout.contains(secret))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect((object["osRelease"] as? [String: String]) == [:])
        #expect(object["hostname"] is NSNull)
        #expect(object["machineId"] is NSNull)
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(try image.sh([], "test -p /etc/os-release && test -c /etc/machine-id && hostname") == [image.machine])
        #expect(image.isUnchanged)
    }

    // MARK: - Payloads

    /// A payload fills its writable filesystem: the root tmpfs of `yes`, /var's tmpfs of
    /// `state`. It gets ENOSPC at imgboot's size limit (25% of RAM), never more; imgboot exits
    /// with the command's status and leaves nothing. One at a time: each fills a quarter of
    /// the machine's memory for a moment.
    @Test(.serialized, arguments: [("yes", "/"), ("state", "/var")])
    func fillingTheTmpfsStopsAtItsLimit(mode: String, directory: String) throws {
        let image = try ImageCopy("basic")
        let memory = try hostMemoryKiB()
        let out = try image.run(["--volatile=\(mode)"], ["sh", "-c", """
            df -k \(directory) | tail -1 | awk '{ print $2 }'
            dd if=/dev/zero of=\(directory)/fill bs=1M 2>&1 | grep -o 'No space left on device' | head -1
            df -k \(directory) | tail -1 | awk '{ print $4 }'
            rm \(directory)/fill && echo removed
            exit 7
            """])
        #expect(out.status == 7, "\(out.stderr)")
        let lines = out.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(lines)")
        let size = try #require(Int(lines[0]))
        #expect(size <= memory / 4 + 4, "the tmpfs is \(size) KiB; a quarter of the host's memory is \(memory / 4) KiB")
        #expect(lines[1] == "No space left on device")
        #expect(lines[2] == "0", "free after filling: \(lines[2]) KiB")
        #expect(lines[3] == "removed")
        #expect(image.isUnchanged)
    }

    private func hostMemoryKiB() throws -> Int {
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let line = try #require(meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") })
        return try #require(Int(line.split(separator: " ")[1]))
    }

    /// Kernel modules (busybox insmod, and init_module/finit_module directly) and PID 1's
    /// executable through /proc/1/exe: all refused. The module calls fail with EPERM whatever
    /// the kernel supports (the seccomp filter answers first), and the container lacks
    /// CAP_SYS_MODULE besides. /proc/1/exe is imgboot-init's sealed memfd, not a host file:
    /// it cannot be opened for writing (it is being executed) and it is not imgboot's binary.
    /// (sysrq and kcore: ContainmentTests, where this kernel has them.)
    @Test(arguments: ["overlay", "state", "yes"])
    func kernelDoorsAreClosed(mode: String) throws {
        let payload = try Hardening.payload.get()
        let binaryBefore = Harness.sha256(Harness.binary)
        let image = try ImageCopy("basic")
        let out = try image.run(["--volatile=\(mode)", "--bind-ro=\(payload):/tmp/payload"], ["sh", "-c", """
            insmod /usr/bin/busybox || echo insmod refused
            /tmp/payload modules /usr/bin/busybox
            echo $(( 0x$(grep CapEff /proc/self/status | cut -f2) >> 16 & 1 ))
            /tmp/payload open /proc/1/exe w
            /tmp/payload open /proc/1/exe rw
            echo x >> /proc/1/exe || echo exe refused
            readlink /proc/1/exe
            ls /proc/1/fd | wc -l
            """])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.split(separator: "\n").map(String.init) == [
            "insmod refused", "init_module: EPERM", "finit_module: EPERM", "0",
            "open /proc/1/exe w: ETXTBSY", "open /proc/1/exe rw: ETXTBSY", "exe refused",
            "/memfd:imgboot-init (deleted)", "0",
        ])
        #expect(out.stderr.contains("Operation not permitted"), "insmod: \(out.stderr)")
        #expect(Harness.sha256(Harness.binary) == binaryBefore, "imgboot's binary was written")
        #expect(image.isUnchanged)
    }

    /// TIOCSTI on every terminal the container can reach types into its own pty only: nothing
    /// reaches the terminal imgboot runs on. The check: under script(1), after imgboot exits,
    /// the shell that ran it drains its terminal's input queue without waiting (non-canonical,
    /// MIN 0, TIME 0) and prints what it found. The control shows the check works: the same
    /// program run directly on that terminal does get its text into the queue.
    @Test(.enabled(if: Hardening.hasScript, "script(1) (Debian package bsdutils) is not installed"),
          arguments: ["all", "stdin", "stdout"])
    func tiocstiNeverReachesImgbootsTerminal(terminals: String) throws {
        let payload = try Hardening.payload.get()
        let image = try ImageCopy("basic")
        let token = "injected-\(image.machine)"
        let redirect = switch terminals {
        case "stdin": "> \(image.directory)/stdout"   // only stdin is a terminal
        case "stdout": "< /dev/null"                 // only stdout and stderr are
        default: ""
        }
        func underScript(_ command: String) -> Harness.Output {
            // MIN 0, TIME 1: each read waits at most 0.1 s for more, so a busy host cannot end
            // the drain between two bytes of what is queued.
            let inner = "\(command); stty -icanon min 0 time 1; printf drained:; cat; echo :end"
            return Harness.run(["/usr/bin/script", "-qec", "/bin/sh -c '\(inner)'", "/dev/null"], stdin: "")
        }
        func drained(_ out: Harness.Output) -> String {
            guard let start = out.stdout.range(of: "drained:"), let end = out.stdout.range(of: ":end", range: start.upperBound..<out.stdout.endIndex) else { return "(no drain: \(out.stdout))" }
            return String(out.stdout[start.upperBound..<end.lowerBound])
        }

        // The control may take a second try on a loaded host (it shows the check can see typed
        // text; the attack below gets one try).
        var control = underScript("\(payload) tiocsti-stdin \(token)-control")
        for _ in 0..<2 where !drained(control).contains("\(token)-control") {
            control = underScript("\(payload) tiocsti-stdin \(token)-control")
        }
        #expect(control.stdout.contains("tiocsti fd 0: ok"), "\(control.stdout)")
        #expect(drained(control).contains("\(token)-control"), "the control did not reach the terminal: \(control.stdout)")

        let out = underScript("\(Harness.binary) run --bind-ro=\(payload):/tmp/payload \(image.path) -- /tmp/payload tiocsti \(token) \(redirect)")
        #expect(out.status == 0, "\(out.stdout)")
        #expect(!drained(out).contains(token), "the container typed into imgboot's terminal: \(drained(out))")
        let report = terminals == "stdin" ? ((try? String(contentsOfFile: "\(image.directory)/stdout", encoding: .utf8)) ?? "") : out.stdout
        // It did reach a terminal: its own.
        #expect(report.contains("tiocsti fd \(terminals == "stdout" ? 1 : 0): ok"), "\(report)")
        image.leftovers.expectNone(imageUnchanged: true)
    }
}

// MARK: - Host devices, seen on the host

extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct HardeningHostNodes {
        /// `mount --read-only` (and a writable mount) of host-nodes: the nodes are there, and
        /// opening them fails with EACCES — nodev, not the device policy, which is not on the host.
        @Test(arguments: [["--read-only"], []])
        func hostDeviceNodesInAMountedImageCannotBeOpened(options: [String]) throws {
            try #require(Hardening.hostHasBlockDevice(254, 0) || Hardening.hostHasBlockDevice(8, 0),
                         "neither /dev/vda (254:0) nor /dev/sda (8:0) exists here: nothing to prove")
            let s = try Scratch("host-nodes")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let out = try s.mount(options)
            try #require(out.status == 0, "\(out.stderr)")
            for node in ["root/vda", "root/sda", "root/nvme", "root/mem", "root/kmsg", "usr/vda", "home/vda"] {
                var st = stat()
                #expect(lstat(s.mnt + "/" + node, &st) == 0 && (st.st_mode & S_IFMT == S_IFBLK || st.st_mode & S_IFMT == S_IFCHR),
                        "\(node) is not a device node")
                let fd = open(s.mnt + "/" + node, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                let error = errno
                if fd >= 0 { close(fd) }
                #expect(fd < 0 && error == EACCES, "\(node): \(fd >= 0 ? "opened" : String(cString: strerror(error)))")
            }
            try s.umountAndExpectNothingLeft(host)
        }
    }
}
