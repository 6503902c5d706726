import Foundation
import Testing

/// Issue 10: nothing in a container reaches the host. Each test performs an attack that worked
/// against imgboot before — from inside a container, with `fixtures/attacker.c` — and judges
/// by what happened on the host: the MTU of the host's `lo`, a secret file, a marker file, a
/// host block device's bytes, a key's secret, a process's capabilities as the host's /proc
/// shows them. (The attacker's lines say why a test failed; they are not what it checks.)
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces: attacks on containers"))
struct ContainmentTests {
    /// The container's capability set: nspawn's (plus CAP_NET_ADMIN with a private network) —
    /// exactly, in the container's own user namespace (the default); without one, within what
    /// imgboot itself holds.
    static func containerCapabilities(privateNetwork: Bool = false, userNamespace: Bool = true) -> UInt64 {
        (RunTests.nspawnCapabilities | (privateNetwork ? 1 << 12 : 0)) & (userNamespace ? ~0 : RunTests.hostBoundingSet)
    }

    /// The five capability sets of a host process, from the host's /proc.
    static func capabilities(of pid: pid_t) -> [String: UInt64] {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        var sets: [String: UInt64] = [:]
        for line in status.split(separator: "\n") where line.hasPrefix("Cap") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, let value = UInt64(parts[1].trimmingCharacters(in: .whitespaces), radix: 16) {
                sets[String(parts[0])] = value
            }
        }
        return sets
    }

    static func expectWithinContainerSet(_ sets: [String: UInt64], privateNetwork: Bool = false, userNamespace: Bool = true,
                                         _ who: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let keep = containerCapabilities(privateNetwork: privateNetwork, userNamespace: userNamespace)
        #expect(Set(sets.keys) == ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"], "\(who): \(sets)", sourceLocation: sourceLocation)
        #expect(sets["CapBnd"] == keep, "\(who): bounding \(String(sets["CapBnd"] ?? 0, radix: 16))", sourceLocation: sourceLocation)
        #expect(sets["CapPrm"] == keep, "\(who): permitted \(String(sets["CapPrm"] ?? 0, radix: 16))", sourceLocation: sourceLocation)
        #expect(sets["CapEff"] == keep, "\(who): effective \(String(sets["CapEff"] ?? 0, radix: 16))", sourceLocation: sourceLocation)
        #expect(sets["CapInh"] == 0, "\(who): inheritable \(String(sets["CapInh"] ?? 0, radix: 16))", sourceLocation: sourceLocation)
        #expect(sets["CapAmb"] == 0, "\(who): ambient \(String(sets["CapAmb"] ?? 0, radix: 16))", sourceLocation: sourceLocation)
    }

    /// A `run` container in the background with `command`; its PID 1 and the command as the
    /// host numbers them, once the command runs.
    final class Running {
        let image: ImageCopy
        let imgboot: BackgroundProcess
        let pid1: pid_t
        let command: pid_t

        init(_ image: ImageCopy, options: [String] = [], _ command: [String], commandName: String) throws {
            self.image = image
            let imgboot = try BackgroundProcess([Harness.binary, "run"] + options + [image.path, "--"] + command)
            self.imgboot = imgboot
            var found: (pid_t, pid_t)?
            _ = imgboot.wait(upTo: 60) {
                for pid1 in imgboot.children() {
                    if let child = Harness.children(of: pid1).first(where: { Harness.commandName(of: $0) == commandName }) {
                        found = (pid1, child)
                        return true
                    }
                }
                return false
            }
            let (pid1, child) = try #require(found, "\(commandName) did not start in the container: \(imgboot.stderr)")
            self.pid1 = pid1
            self.command = child
        }

        /// Ends the container (SIGTERM to imgboot) and checks that nothing is left (and that the
        /// image is as the copy was made, unless the test changed it itself).
        func stop(imageUnchanged: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
            imgboot.signal(SIGTERM)
            #expect(imgboot.exitStatus(within: 60) != nil, sourceLocation: sourceLocation)
            image.leftovers.expectNone(imageUnchanged: imageUnchanged, sourceLocation: sourceLocation)
        }
    }

    // MARK: 1, 2: PID 1

    /// Item 1: container root attaches to PID 1 with ptrace (it holds CAP_SYS_PTRACE, as under
    /// nspawn) and makes it call ioctl(SIOCSIFMTU) on the host's `lo` (the network is shared):
    /// that needs CAP_NET_ADMIN, which PID 1 has no more than the container. The host's `lo`
    /// keeps its MTU.
    @Test(arguments: ["pick", "no"])
    func pid1CannotActWithCapabilitiesTheContainerLacks(users: String) throws {
        let attacker = try Attacker.bind()
        let before = try String(contentsOfFile: "/sys/class/net/lo/mtu", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let wanted = (Int(before) ?? 65536) - 1
        let image = try ImageCopy("basic")
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "ptrace-mtu", "1", String(wanted)])
        let after = try String(contentsOfFile: "/sys/class/net/lo/mtu", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        if after != before { _ = Harness.run(["/sbin/ip", "link", "set", "lo", "mtu", before]) }
        #expect(after == before, "PID 1 changed the host's lo MTU to \(after): \(out.stdout)")
        // The attack itself ran: PID 1 was attached and made to call; only the capability failed.
        #expect(Attacker.lines(out.stdout, "ptrace seize") == ["ptrace seize: ok"], "\(out.stdout)\(out.stderr)")
        #expect(Attacker.lines(out.stdout, "socket in the tracee") == ["socket in the tracee: ok"], "\(out.stdout)")
        #expect(Attacker.lines(out.stdout, "ioctl SIOCSIFMTU") == ["ioctl SIOCSIFMTU in the tracee: EPERM"], "\(out.stdout)")
        #expect(image.isUnchanged)
    }

    /// Items 1 and 2, from the host's side: `run`'s PID 1 and its command hold the container's
    /// capability set in all five sets; PID 1 maps no file but its own memfd and holds no
    /// descriptor.
    @Test(arguments: ["pick", "no"])
    func pid1HoldsNothingOfTheHosts(users: String) throws {
        let running = try Running(try ImageCopy("basic"), options: ["--private-users=\(users)"], ["sleep", "100"], commandName: "sleep")
        Self.expectWithinContainerSet(Self.capabilities(of: running.pid1), userNamespace: users != "no", "PID 1")
        Self.expectWithinContainerSet(Self.capabilities(of: running.command), userNamespace: users != "no", "the command")
        let maps = (try? String(contentsOfFile: "/proc/\(running.pid1)/maps", encoding: .utf8)) ?? ""
        let files = Set(maps.split(separator: "\n").compactMap { line -> String? in
            // ADDRESS PERMS OFFSET DEV INODE [PATH], the path possibly with spaces in it
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            let path = fields.count == 6 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
            return path.hasPrefix("/") ? path : nil
        })
        #expect(!maps.isEmpty)
        #expect(files == ["/memfd:imgboot-init (deleted)"], "PID 1 maps \(files)")
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(running.pid1)/exe")
        #expect(exe == "/memfd:imgboot-init (deleted)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(running.pid1)/fd").isEmpty)
        running.stop()
    }

    /// Item 2: every file PID 1 maps, opened for writing through /proc/1/map_files (container
    /// root holds CAP_SYS_ADMIN), and written: none is a host file, and none can be written —
    /// imgboot-init's memfd is sealed and being executed.
    @Test(arguments: ["pick", "no"])
    func mapFilesOfPid1WriteNothing(users: String) throws {
        let attacker = try Attacker.bind()
        let image = try ImageCopy("basic")
        let libcBefore = Harness.sha256("/lib/x86_64-linux-gnu/libc.so.6")
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "map-files", "1"])
        let opens = Attacker.lines(out.stdout, "open for writing ")
        #expect(!opens.isEmpty, "the attacker found nothing mapped: \(out.stdout)\(out.stderr)")
        for line in opens {
            #expect(line.hasPrefix("open for writing /memfd:imgboot-init (deleted): "), "PID 1 maps a host file: \(line)")
            #expect(!line.hasSuffix(": ok"), "\(line)")
        }
        #expect(Attacker.lines(out.stdout, "write ").isEmpty, "\(out.stdout)")
        #expect(Harness.sha256("/lib/x86_64-linux-gnu/libc.so.6") == libcBefore)
        #expect(image.isUnchanged)
    }

    // MARK: 3: file handles

    /// Item 3: open_by_handle_at with the handle of a host file, through the container's
    /// stdout (a file of the host's, as in `imgboot run … > log`) and through /proc/1/exe; and
    /// through the handle of a host directory, a file created in it. The secret stays unread,
    /// the marker is not created. As a control, the same handle read on the host works — the
    /// attack is real.
    @Test(arguments: ["pick", "no"])
    func fileHandlesDoNotReachTheHost(users: String) throws {
        let attacker = try Attacker.bind()
        let scratch = try ScratchDirectory("imgboot-handles")
        let secret = "host-secret-\(UUID().uuidString)"
        let secretFile = scratch.path + "/secret"
        try secret.write(toFile: secretFile, atomically: false, encoding: .utf8)
        chmod(secretFile, 0o600)
        let fileHandle = Harness.run([attacker.path, "handle-of", secretFile]).stdout.split(separator: " ").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let dirHandle = Harness.run([attacker.path, "handle-of", scratch.path]).stdout.split(separator: " ").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try #require(fileHandle.count == 2 && dirHandle.count == 2, "no file handles on this host's /tmp")
        // Control: on the host, through a descriptor of a file on the same filesystem, the handle opens.
        let control = Harness.run(["/bin/sh", "-c", "exec 5<\"$1\"; \"$0\" open-handle 5 \"$2\" \"$3\"",
                                   attacker.path, scratch.path + "/secret", fileHandle[0], fileHandle[1]])
        try #require(control.stdout.contains(secret), "the handle does not open even on the host: \(control.stdout)\(control.stderr)")

        let image = try ImageCopy("basic")
        // stdout is a file of the host's (Harness.run collects output in files under /tmp).
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["sh", "-c", """
            /tmp/attacker open-handle 1 \(fileHandle[0]) \(fileHandle[1])
            /tmp/attacker open-handle 2 \(fileHandle[0]) \(fileHandle[1])
            /tmp/attacker open-handle /proc/1/exe \(fileHandle[0]) \(fileHandle[1])
            /tmp/attacker open-handle 1 \(dirHandle[0]) \(dirHandle[1]) marker
            """])
        #expect(!out.stdout.contains(secret) && !out.stderr.contains(secret), "the container read the host's secret")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/marker"), "the container created a file on the host")
        #expect(Attacker.lines(out.stdout, "open_by_handle_at") == Array(repeating: "open_by_handle_at: EPERM", count: 4), "\(out.stdout)")
        #expect(image.isUnchanged)
    }

    // MARK: 4: BPF and the rest of the kernel

    /// Item 4: the container queries and detaches its cgroup's BPF device program, then makes a
    /// node for a host block device (a loop device of a file holding a secret) and reads and
    /// writes it. The secret is not read and the file's bytes are unchanged.
    @Test(arguments: ["pick", "no"])
    func bpfCannotLiftTheDevicePolicy(users: String) throws {
        let attacker = try Attacker.bind()
        let scratch = try ScratchDirectory("imgboot-victim")
        let victim = scratch.path + "/victim"
        let secret = "victim-secret-\(UUID().uuidString.prefix(8))"
        var bytes = Data(secret.utf8)
        bytes.append(Data(count: 1 << 20 - bytes.count))
        try bytes.write(to: URL(fileURLWithPath: victim))
        let hash = Harness.sha256(victim)
        let attach = Harness.run(["/sbin/losetup", "--find", "--show", victim])
        let device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(attach.status == 0 && !device.isEmpty, "losetup: \(attach.stderr)")
        defer { _ = Harness.run(["/sbin/losetup", "-d", device]) }
        var st = stat()
        try #require(stat(device, &st) == 0)
        let major = Int(st.st_rdev >> 8 & 0xfff), minor = Int(st.st_rdev & 0xff | (st.st_rdev >> 12 & 0xfff00))

        let image = try ImageCopy("basic")
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "bpf-devices", String(major), String(minor)])
        #expect(!out.stdout.contains(secret), "the container read the host's block device: \(out.stdout)")
        #expect(Harness.sha256(victim) == hash, "the container wrote the host's block device")
        #expect(Attacker.lines(out.stdout, "bpf ").allSatisfy { $0.hasSuffix(": EPERM") }, "\(out.stdout)")
        #expect(!Attacker.lines(out.stdout, "bpf prog query").isEmpty, "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// Item 4 and the rest of the filter: the system calls that reach past the container's
    /// namespaces fail with EPERM — perf on the whole system, kexec, BPF, file handles, swap,
    /// I/O ports, accounting, the kernel log, the clock, fanotify, another process's
    /// descriptors — whatever this kernel supports (EPERM comes before any other check). A
    /// bind mount or open_tree clone of a host descriptor's mount is refused by the kernel.
    @Test(arguments: ["pick", "no"])
    func kernelInterfacesAreRefused(users: String) throws {
        let attacker = try Attacker.bind()
        let image = try ImageCopy("basic")
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "kernel"])
        #expect(out.stdout.split(separator: "\n").map(String.init) == [
            "perf_event_open system-wide: EPERM", "kexec_file_load: EPERM", "kexec_load: EPERM", "bpf prog load: EPERM",
            "open_by_handle_at: EPERM", "swapon: EPERM", "iopl: EPERM", "acct: EPERM", "syslog read all: EPERM",
            "settimeofday: EPERM", "fanotify_init: EPERM", "pidfd_getfd: EPERM",
            "open_tree of a host descriptor: EINVAL", "bind a host descriptor: EINVAL",
        ], "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// Swap: the container turns on a real swap file of the host's (bound in, writable), which
    /// the host itself can turn on (the control): the host's /proc/swaps never lists it.
    @Test(arguments: ["pick", "no"])
    func swapIsNotTurnedOn(users: String) throws {
        let attacker = try Attacker.bind()
        let image = try ImageCopy("basic")
        let swap = try Self.swapFile(in: image.directory)
        let control = Harness.run([try Attacker.binary.get(), "swapon", swap])
        try #require(control.stdout == "swapon: ok\n" && Self.turnOffSwap(swap), "the control could not turn the swap file on (and off) on the host: \(control.stdout)")

        let out = try image.run([attacker.option, "--bind=\(swap):/tmp/swap", "--private-users=\(users)"], ["/tmp/attacker", "swapon", "/tmp/swap"])
        let turnedOn = Self.turnOffSwap(swap)
        #expect(!turnedOn, "the container turned on swap on the host: \(out.stdout)")
        #expect(out.stdout == "swapon: EPERM\n", "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// A real 8 MiB swap file in `directory` (root's, mode 0600, mkswap'd), for the container to try.
    static func swapFile(in directory: String) throws -> String {
        let swap = directory + "/swap"
        try #require(Harness.run(["/usr/bin/dd", "if=/dev/zero", "of=\(swap)", "bs=1M", "count=8", "status=none"]).status == 0)
        chmod(swap, 0o600)
        try #require(Harness.run(["/sbin/mkswap", swap]).status == 0)
        return swap
    }

    /// Whether the host swaps on the file `path`, which is then turned off: the kernel's own word
    /// (swapoff succeeds only for an active swap area). Not /proc/swaps's names: a file turned on
    /// in another mount namespace shows under a mount the host does not have ("/"); and not its
    /// count, which tests running at once change. An active swap file cannot be removed, so its
    /// path still leads to it.
    static func turnOffSwap(_ path: String) -> Bool { Harness.run(["/sbin/swapoff", path]).status == 0 }

    /// The rest of the filter's list, with arguments the kernel would otherwise answer
    /// differently (the control: the same program on the host, where none is EPERM), the audit
    /// socket, and a system call on no list: ENOSYS, so that a program falls back as on an older
    /// kernel.
    @Test(arguments: ["pick", "no"])
    func restOfTheFilterIsRefused(users: String) throws {
        let attacker = try Attacker.bind()
        let control = Harness.run([try Attacker.binary.get(), "filter"])
        let controlLines = control.stdout.split(separator: "\n").map(String.init)
        #expect(controlLines.count == 12 && !controlLines.contains { $0.hasSuffix(": EPERM") }, "\(control.stdout)")
        #expect(!controlLines.contains("listmount (on no list): ENOSYS") && !controlLines.contains("netlink audit socket: EAFNOSUPPORT"))
        let image = try ImageCopy("basic")
        let out = try image.run([attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "filter"])
        #expect(out.stdout.split(separator: "\n").map(String.init) == [
            "delete_module: EPERM", "swapoff: EPERM", "clock_settime: EPERM", "adjtimex (read only): EPERM", "quotactl: EPERM",
            "mlock: EPERM", "uselib: EPERM", "pkey_alloc: EPERM", "ioperm: EPERM", "modify_ldt (read): EPERM",
            "listmount (on no list): ENOSYS", "netlink audit socket: EAFNOSUPPORT",
        ], "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// A standard stream that is a directory of the host (`imgboot run … < DIR`, or a CI runner
    /// that hands its child a directory): through `/proc/self/fd/0` the container would read
    /// that directory, and through its `..` the host's whole filesystem. `run` and `enter` refuse
    /// such a stream before anything starts: the secret beside it stays unread.
    @Test(arguments: ["pick", "no"])
    func directoryStreamLeadsNowhere(users: String) throws {
        let image = try ImageCopy("basic")
        let directory = image.directory + "/stream"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let secret = "host-secret-\(UUID().uuidString)"
        try secret.write(toFile: image.directory + "/secret", atomically: false, encoding: .utf8)
        let deed = "cat /proc/self/fd/0/../secret; ls /proc/self/fd/0/../"
        let run = Harness.run(["/bin/sh", "-c", "exec \"$0\" run --private-users=\(users) \"$1\" -- sh -c \"$2\" < \"$3\"",
                               Harness.binary, image.path, deed, directory])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(!run.stdout.contains(secret) && !run.stdout.contains("stream"), "the container read the host's directory: \(run.stdout)")
        Hardening.expectOwnFailure(run, image: image.path, "standard input is a directory of the host (\(directory)): the container would reach the host's files through it; give it a file, a pipe or a terminal")

        let running = try Running(image, options: ["--private-users=\(users)"], ["sleep", "100"], commandName: "sleep")
        let enter = Harness.run(["/bin/sh", "-c", "exec \"$0\" enter \"$1\" -- sh -c \"$2\" < \"$3\"",
                                 Harness.binary, image.machine, deed, directory])
        running.stop()
        #expect(!enter.stdout.contains(secret) && !enter.stdout.contains("stream"), "the container read the host's directory: \(enter.stdout)")
        #expect(enter.status == 125 && enter.stderr.contains("standard input is a directory of the host"), "\(enter.status) \(enter.stderr)")
    }

    /// The audit socket the filter refuses, for what it reaches: the host's audit trail. The
    /// container opens it — plainly, and with the upper halves of family and protocol set, which
    /// the kernel ignores (they are ints) and the filter once compared — and sends a user message
    /// through each; neither is in the host's audit trail. Control: from the host, both are,
    /// before and after the attack. Without a user namespace: with one, the kernel refuses
    /// audit messages itself. (The other ABIs: `I386ABI`, `X32ABI`.)
    @Test func auditTrailStaysTheHosts() throws {
        let attacker = try Attacker.bind()
        let image = try ImageCopy("basic")
        let marker = "imgboot-test-\(image.machine)"
        let before = Attacker.auditControl(attacker.path, marker + "-control")
        if !before.logged {
            try Test.cancel("the host's audit trail (kernel log, /var/log/audit/audit.log) takes no user message, even from the host: \(before.out.stdout)")
        }
        let upperHalvesIgnored = Attacker.hostAuditTrail().contains("'\(marker)-control through socket, upper halves set'")
        try #require(upperHalvesIgnored, "the kernel does not ignore the upper halves: \(before.out.stdout)")
        let out = try image.run([attacker.option, "--private-users=no"], ["/tmp/attacker", "audit", marker])
        let after = Attacker.auditControl(attacker.path, marker + "-control-after")
        try #require(after.logged, "the host's audit trail took no message after the attack (rate-limited?): \(after.out.stdout)")
        let trail = Attacker.hostAuditTrail()
        for way in ["socket", "socket, upper halves set"] {
            let written = trail.contains("'\(marker) through \(way)'")
            #expect(!written, "the container wrote the host's audit trail through \(way): \(out.stdout)")
            #expect(Attacker.lines(out.stdout, "audit socket through \(way):").count == 1, "\(out.stdout)\(out.stderr)")
        }
        #expect(image.isUnchanged)
    }

    // MARK: 5: joining a running container

    /// Item 5: a hostile container lies in wait for the next process to appear in it, seizes it
    /// with ptrace at once, and searches its environment, command line and memory for the
    /// caller's secret, and looks at its executable. `imgboot enter` with a secret in its
    /// environment: nothing of it is found, the process is imgboot-init's (a memfd), and its
    /// capabilities are the container's.
    @Test(arguments: ["pick", "no"])
    func enterHandsTheContainerNothing(users: String) throws {
        let attacker = try Attacker.bind()
        let secret = "ci-secret-\(UUID().uuidString.prefix(12))"
        let image = try ImageCopy("basic")
        let running = try Running(image, options: [attacker.option, "--private-users=\(users)"], ["/tmp/attacker", "lie-in-wait", "60", secret], commandName: "attacker")
        let entered = Harness.run(["/usr/bin/env", "CI_TOKEN=\(secret)", Harness.binary, "enter", image.machine, "--", "sleep", "0.5"])
        #expect(entered.status == 0, "enter: \(entered.stderr)")
        running.stop()
        let report = running.imgboot.stdout
        #expect(!report.contains("SECRET in"), "the container found the caller's secret: \(report)")
        let exes = Attacker.lines(report, "exe of ")
        #expect(!exes.isEmpty, "the attacker saw no process join: \(report)\(running.imgboot.stderr)")
        // Caught before its exec, it is imgboot-init; after, the image's own sleep (busybox).
        #expect(exes.allSatisfy { $0.hasSuffix(": /memfd:imgboot-init (deleted)") || $0.hasSuffix("/busybox") }, "\(exes)")
        let keep = String(format: "%016llx", Self.containerCapabilities(userNamespace: users != "no"))
        let capabilityLines = report.split(separator: "\n").filter { $0.contains(" Cap") }
        #expect(capabilityLines.count >= 5, "\(report)")
        for line in capabilityLines {
            let zero = line.contains("CapInh:") || line.contains("CapAmb:")
            #expect(line.hasSuffix(zero ? "0000000000000000" : keep), "\(line)")
        }
    }

    /// Item 5, through smoke: its checks join a booted machine (`imgboot enter`) with smoke's
    /// environment, where a CI job keeps its secrets. The first check leaves the attacker lying
    /// in wait inside; the second joins with the secret in smoke's environment; the third
    /// collects the attacker's report.
    @Test func smokeChecksHandTheContainerNothing() throws {
        let attacker = try Attacker.bind()
        let debian = try ImageCopy(path: try Harness.debianImage(), name: "debian")
        let token = UUID().uuidString.prefix(12)
        let secret = "ci-secret-\(token)"
        let out = Harness.run(["/usr/bin/env", "CI_TOKEN=\(secret)", Harness.binary, "smoke", "--json", attacker.option,
                               "--check", "printf '%s%s' ci-secret- \(token) > /run/needle; setsid /tmp/attacker lie-in-wait 20 @/run/needle > /run/report 2>&1 < /dev/null &",
                               "--check", "sleep 0.5",
                               "--check", "sleep 1; cat /run/report",
                               debian.path])
        debian.leftovers.expectNone(imageUnchanged: true)
        #expect(out.status == 0, "\(out.stdout)\(out.stderr)")
        let report = out.stdout.replacingOccurrences(of: "\\n", with: "\n")
        #expect(!report.contains("SECRET in"), "the container found smoke's secret: \(report)")
        #expect(report.contains("exe of "), "the attacker saw no process join: \(report)")
        #expect(!report.contains(Harness.binary), "a process of imgboot's binary was seen: \(report)")
    }

    // MARK: 8: keyrings

    /// Item 8: a key holding a secret in the caller's session keyring and one in root's user
    /// keyring (linked from the session keyring, as root's default one is); the container reads
    /// them by serial number, asks for its session keyring, adds keys. Nothing is read or
    /// added; /proc/keys is masked.
    @Test(arguments: ["pick", "no"])
    func keyringsStayTheCallers(users: String) throws {
        let attacker = try Attacker.bind()
        let secret = "key-secret-\(UUID().uuidString.prefix(12))"
        let image = try ImageCopy("basic")
        let out = Harness.run([attacker.path, "keyring-host", "imgboot-test-\(image.machine)", secret, "--",
                               Harness.binary, "run", attacker.option, "--private-users=\(users)", image.path, "--",
                               "/tmp/attacker", "keys", "@SESSION@", "@USER@"])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(!out.stdout.contains(secret), "the container read the caller's key: \(out.stdout)")
        #expect(Attacker.lines(out.stdout, "keyctl read").count == 2, "\(out.stdout)\(out.stderr)")
        for prefix in ["keyctl", "add_key", "request_key"] {
            #expect(Attacker.lines(out.stdout, prefix).allSatisfy { $0.hasSuffix(": EPERM") }, "\(out.stdout)")
        }
        #expect(Attacker.lines(out.stdout, "/proc/keys (masked): ") == ["/proc/keys (masked): 0 lines"], "\(out.stdout)")
    }

    /// Items 4 and 8 for what `enter` starts: a process joined to a running machine by a caller
    /// with a secret key in its session keyring and in root's user keyring tries to read them,
    /// and to turn on a real swap file of the host's. Its keyring and filter are the
    /// container's: no key is read (the secret appears nowhere), the host's /proc/swaps does not
    /// grow.
    @Test(arguments: ["pick", "no"])
    func enteredProcessesAreAsContained(users: String) throws {
        let attacker = try Attacker.bind()
        let image = try ImageCopy("basic")
        let swap = try Self.swapFile(in: image.directory)
        let running = try Running(image, options: [attacker.option, "--bind=\(swap):/tmp/swap", "--private-users=\(users)"],
                                  ["sleep", "100"], commandName: "sleep")
        let secret = "key-secret-\(UUID().uuidString.prefix(12))"
        let keys = Harness.run([attacker.path, "keyring-host", "imgboot-test-\(image.machine)", secret, "--",
                                Harness.binary, "enter", image.machine, "--", "/tmp/attacker", "keys", "@SESSION@", "@USER@"])
        let swapon = Harness.run([Harness.binary, "enter", image.machine, "--", "/tmp/attacker", "swapon", "/tmp/swap"])
        let turnedOn = Self.turnOffSwap(swap)
        running.stop()
        #expect(keys.status == 0, "\(keys.stderr)")
        #expect(!keys.stdout.contains(secret), "the entered process read the caller's key: \(keys.stdout)")
        #expect(Attacker.lines(keys.stdout, "keyctl read").count == 2 && Attacker.lines(keys.stdout, "keyctl").allSatisfy { $0.hasSuffix(": EPERM") },
                "\(keys.stdout)\(keys.stderr)")
        #expect(!turnedOn, "the entered process turned on swap on the host: \(swapon.stdout)")
        #expect(swapon.stdout == "swapon: EPERM\n", "\(swapon.stdout)\(swapon.stderr)")
    }

    // MARK: Gaps of the earlier tests

    /// The IPC namespace is the container's own: a System V message queue of the host's is not
    /// in the container's /proc/sysvipc, and the namespaces differ.
    @Test func ipcNamespaceIsPrivate() throws {
        let made = Harness.run(["/usr/bin/ipcmk", "-Q"])
        let id = try #require(made.stdout.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) },
                              "ipcmk: \(made.stderr)")
        defer { _ = Harness.run(["/usr/bin/ipcrm", "-q", id]) }
        let host = try String(contentsOfFile: "/proc/sysvipc/msg", encoding: .utf8)
        try #require(host.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first == Substring(id) },
                     "the host's queue \(id) is not in its own /proc/sysvipc/msg")
        let hostNamespace = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/ipc")
        let image = try ImageCopy("basic")
        let lines = try image.sh([], "cat /proc/sysvipc/msg | wc -l; readlink /proc/self/ns/ipc")
        #expect(lines == ["1", lines.last ?? ""], "the container sees queues: \(lines)")
        #expect(lines.last != hostNamespace)
    }

    /// `nodev` on the image's filesystems alone: a node for /dev/null (which the device policy
    /// allows) made on the image's root cannot be opened; the same device on /dev can. (Without
    /// a user namespace: in one, making any device node is refused before nodev matters.)
    @Test func nodevOnTheImageAlone() throws {
        let image = try ImageCopy("basic")
        let out = try image.run(["--private-users=no"], ["sh", "-c", """
            mknod /root/null-node c 1 3 && echo made
            echo x > /root/null-node || echo refused
            echo x > /dev/null && echo dev ok
            """])
        #expect(out.stdout == "made\nrefused\ndev ok\n", "\(out.stderr)")
        #expect(out.stderr.contains("Permission denied"), "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// The device policy alone: on /dev (a tmpfs without nodev) a node for a host loop device
    /// cannot even be made. (Without a user namespace, which refuses every device node itself:
    /// `RootIsNotRootTests`.)
    @Test func devicePolicyAlone() throws {
        let image = try ImageCopy("basic")
        let out = try image.run(["--private-users=no"], ["sh", "-c", "grep ' /dev ' /proc/mounts | grep -c nodev; mknod /dev/loop0 b 7 0 || echo refused"])
        #expect(out.stdout == "0\nrefused\n", "\(out.stderr)")
        #expect(out.stderr.contains("Operation not permitted"), "\(out.stderr)")
    }

    /// The masks of /proc (a bind of /dev/null over the file), on the files this kernel has.
    @Test(arguments: ["/proc/keys", "/proc/timer_list", "/proc/kallsyms"])
    func procFileIsMasked(_ path: String) throws {
        try #require(FileManager.default.fileExists(atPath: path), "this host has no \(path)")
        let image = try ImageCopy("basic")
        #expect(try image.sh([], "stat -c '%F %t:%T' \(path); wc -c < \(path)") == ["character special file 1:3", "0"])
    }

    static let hasKcore = FileManager.default.fileExists(atPath: "/proc/kcore")
    static let hasSysrq = FileManager.default.fileExists(atPath: "/proc/sysrq-trigger")

    @Test(.enabled(if: hasKcore, "this kernel has no /proc/kcore: its mask cannot be tested here"))
    func kcoreIsMasked() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh([], "stat -c '%F %t:%T' /proc/kcore; head -c 4096 /proc/kcore | wc -c") == ["character special file 1:3", "0"])
    }

    @Test(.enabled(if: hasSysrq, "this kernel has no /proc/sysrq-trigger: that it is read-only cannot be tested here"))
    func sysrqTriggerIsReadOnly() throws {
        let image = try ImageCopy("basic")
        let out = try image.run([], ["sh", "-c", "echo h > /proc/sysrq-trigger || echo refused"])
        #expect(out.stdout == "refused\n")
        #expect(out.stderr.contains("Read-only file system"), "\(out.stderr)")
    }

    /// A new user namespace starts with every capability in its bounding set, whatever the
    /// host's: there, that imgboot drops every one outside nspawn's set is seen in full.
    @Test func everyCapabilityOutsideNspawnsSetIsDropped() throws {
        let running = try Running(try ImageCopy("basic"), ["sleep", "100"], commandName: "sleep")
        #expect(Self.capabilities(of: running.pid1)["CapBnd"] == RunTests.nspawnCapabilities)
        running.stop()
    }

    /// Without a user namespace, capabilities this host's own bounding set lacks (here
    /// CAP_SYS_RESOURCE and CAP_SYS_MODULE) cannot be seen to be dropped. On a host with a full
    /// bounding set, this covers them.
    @Test(.enabled(if: RunTests.hostBoundingSet & 0x1_ffff_ffff_ff == 0x1_ffff_ffff_ff,
                   "this host's bounding set lacks some capabilities; with --private-users=no their dropping cannot be checked here"))
    func everyCapabilityOutsideNspawnsSetIsDroppedWithoutUserNamespace() throws {
        let running = try Running(try ImageCopy("basic"), options: ["--private-users=no"], ["sleep", "100"], commandName: "sleep")
        #expect(Self.capabilities(of: running.pid1)["CapBnd"] == RunTests.nspawnCapabilities)
        running.stop()
    }
}
