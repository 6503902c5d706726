import Foundation
import Testing

/// The container's seccomp filter on the other system call ABIs of x86-64: a 32-bit program (or
/// one that sets the x32 bit in its system call numbers) must not get past it. The attacker
/// (`fixtures/abi-attacker.c`, `OtherABI`) does, through the ABI under attack, what the filter
/// refuses and what would show on the host: it reads a key of root's, adds one to root's
/// keyring, opens a host file by its handle and creates one, lifts the device policy and reads
/// a host block device, adds and removes the host's swap, writes into the host's audit trail.
/// Each test first does the same deed on the host, through the same ABI, as the control that it
/// works where nothing filters it; then in a container, and judges by the host.
///
/// Without a user namespace (`--private-users=no`): there the filter alone stands between
/// container root and these calls. (With one, the kernel itself refuses most of them: root's
/// keys and the audit trail belong to the host's user namespace, file handles, swap and BPF
/// need capabilities there.) The i386 ABI's attacks are skipped, saying why, where no 32-bit
/// program can be built or run; the x32 ABI's where the kernel does not run it (most
/// distributions build it, but turn it off unless booted with `syscall.x32=y`).
extension ContainmentTests {
    @Suite(.enabled(if: OtherABI.hasToolchain32,
                    "no 32-bit toolchain: cc -m32 -static cannot build a program (Debian packages gcc-multilib, libc6-dev-i386; tools/test installs them)"),
           .enabled(if: OtherABI.i386.runsHere,
                    "this kernel does not run i386 programs (built without CONFIG_IA32_EMULATION, or booted with ia32_emulation=0)"))
    struct I386ABI {
        @Test func keysOfRootStayUnread() throws { try OtherABIAttacks.keysOfRootStayUnread(.i386) }
        @Test func rootsKeyringGainsNoKey() throws { try OtherABIAttacks.rootsKeyringGainsNoKey(.i386) }
        @Test func fileHandlesDoNotReachTheHost() throws { try OtherABIAttacks.fileHandlesDoNotReachTheHost(.i386) }
        @Test func bpfCannotLiftTheDevicePolicy() throws { try OtherABIAttacks.bpfCannotLiftTheDevicePolicy(.i386) }
        @Test func swapStaysTheHosts() throws { try OtherABIAttacks.swapStaysTheHosts(.i386) }
        @Test func auditTrailStaysTheHosts() throws { try OtherABIAttacks.auditTrailStaysTheHosts(.i386) }
    }

    @Suite(.enabled(if: OtherABI.x32.runsHere,
                    "this kernel answers x32 system calls ENOSYS (built without CONFIG_X86_X32_ABI, or booted without syscall.x32=y): the x32 ABI cannot be attacked here"))
    struct X32ABI {
        @Test func keysOfRootStayUnread() throws { try OtherABIAttacks.keysOfRootStayUnread(.x32) }
        @Test func rootsKeyringGainsNoKey() throws { try OtherABIAttacks.rootsKeyringGainsNoKey(.x32) }
        @Test func fileHandlesDoNotReachTheHost() throws { try OtherABIAttacks.fileHandlesDoNotReachTheHost(.x32) }
        @Test func bpfCannotLiftTheDevicePolicy() throws { try OtherABIAttacks.bpfCannotLiftTheDevicePolicy(.x32) }
        @Test func swapStaysTheHosts() throws { try OtherABIAttacks.swapStaysTheHosts(.x32) }
        @Test func auditTrailStaysTheHosts() throws { try OtherABIAttacks.auditTrailStaysTheHosts(.x32) }
    }
}

/// The attacks of `ContainmentTests.I386ABI` and `.X32ABI`, for either ABI.
enum OtherABIAttacks {
    /// `imgboot run --private-users=no` of a copy of basic with the attacker at /tmp/abi-attacker.
    static func options(_ attacker: (path: String, option: String)) -> [String] {
        [attacker.option, "--private-users=no"]
    }

    // MARK: Keyrings

    /// A key holding a secret in root's user keyring (attacker.c's keyring-host puts it there
    /// for the length of one command, and takes it away); the container reads it by serial
    /// number, links root's user keyring into its session keyring — which would make the key
    /// its own — and reads it again. Control: the host reads it through the same ABI.
    static func keysOfRootStayUnread(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        let keyring = try Attacker.binary.get()
        let secret = "key-secret-\(UUID().uuidString.prefix(12))"
        let control = Harness.run([keyring, "keyring-host", "imgboot-test-control-\(UUID().uuidString.prefix(8))", secret, "--",
                                   attacker.path, "key-read", "@USER@"])
        try #require(control.stdout.contains("holds: \(secret)"), "the key is not read even on the host: \(control.stdout)\(control.stderr)")

        let image = try ImageCopy("basic")
        let out = Harness.run([keyring, "keyring-host", "imgboot-test-\(image.machine)", secret, "--",
                               Harness.binary, "run"] + options(attacker) + [image.path, "--", "/tmp/abi-attacker", "key-read", "@USER@"])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(!out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the container read root's key through the \(abi) ABI: \(out.stdout)")
        // The attack ran: both reads were tried.
        #expect(Attacker.lines(out.stdout, "keyctl read").count == 2, "\(out.stdout)\(out.stderr)")
    }

    /// Whether the host's /proc/keys lists a key `description` (root sees every key it may view).
    static func hostHasKey(_ description: String) -> Bool {
        let text = (try? String(contentsOfFile: "/proc/keys", encoding: .utf8)) ?? ""
        // SERIAL FLAGS USAGE EXPIRY PERM UID GID TYPE DESCRIPTION: SUMMARY
        return text.split(separator: "\n").contains { $0.contains(" \(description): ") }
    }

    /// The container adds a key to root's user keyring, which the host would then hold.
    /// Control: the host adds one through the same ABI (and removes it).
    static func rootsKeyringGainsNoKey(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        let image = try ImageCopy("basic")
        let description = "imgboot-test-\(image.machine)", controlDescription = "imgboot-test-control-\(image.machine)"
        _ = Harness.run([attacker.path, "key-add", controlDescription])
        let added = hostHasKey(controlDescription)
        _ = Harness.run([attacker.path, "key-forget", controlDescription])
        try #require(added, "no key is added even on the host")

        let out = try image.run(options(attacker), ["/tmp/abi-attacker", "key-add", description])
        let planted = hostHasKey(description)
        if planted { _ = Harness.run([attacker.path, "key-forget", description]) }
        #expect(!planted, "the container added a key to root's keyring through the \(abi) ABI: \(out.stdout)")
        #expect(Attacker.lines(out.stdout, "add_key").count == 1, "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    // MARK: File handles

    /// open_by_handle_at with the handle of a host file holding a secret, through the
    /// container's stdout and stderr (files of the host's); with the handle of a host
    /// directory, a file created in it. Control: the host reads the file and creates a file
    /// through the same ABI and handles.
    static func fileHandlesDoNotReachTheHost(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        let handles = try Attacker.binary.get()
        let scratch = try ScratchDirectory("imgboot-handles")
        let secret = "host-secret-\(UUID().uuidString)"
        let secretFile = scratch.path + "/secret"
        try secret.write(toFile: secretFile, atomically: false, encoding: .utf8)
        chmod(secretFile, 0o600)
        func handle(_ path: String) -> [String] {
            Harness.run([handles, "handle-of", path]).stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        let fileHandle = handle(secretFile), dirHandle = handle(scratch.path)
        try #require(fileHandle.count == 2 && dirHandle.count == 2, "no file handles on this host's /tmp")
        let control = Harness.run(["/bin/sh", "-c", "exec 5<\"$1\"; \"$0\" open-handle 5 \"$2\" \"$3\"; \"$0\" open-handle 5 \"$4\" \"$5\" control-marker",
                                   attacker.path, secretFile, fileHandle[0], fileHandle[1], dirHandle[0], dirHandle[1]])
        let controlCreated = unlink(scratch.path + "/control-marker") == 0
        try #require(control.stdout.contains(secret) && controlCreated,
                     "the handles do not open even on the host: \(control.stdout)\(control.stderr)")

        let image = try ImageCopy("basic")
        let out = try image.run(options(attacker), ["sh", "-c", """
            /tmp/abi-attacker open-handle 1 \(fileHandle[0]) \(fileHandle[1])
            /tmp/abi-attacker open-handle 2 \(fileHandle[0]) \(fileHandle[1])
            /tmp/abi-attacker open-handle 1 \(dirHandle[0]) \(dirHandle[1]) marker
            """])
        #expect(!out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the container read the host's secret through the \(abi) ABI")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/marker"),
                "the container created a file on the host through the \(abi) ABI")
        #expect(Attacker.lines(out.stdout, "open_by_handle_at").count == 3, "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    // MARK: BPF

    /// The container detaches its cgroup's BPF device program, then makes a node for a host
    /// block device (a loop device of a file holding a secret), reads it and writes it. The
    /// secret is not read, the file's bytes are unchanged. Control: from the host, through the
    /// same ABI, the device program of a running container's cgroup is detached.
    static func bpfCannotLiftTheDevicePolicy(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        let running = try ContainmentTests.Running(try ImageCopy("basic"), options: options(attacker), ["sleep", "100"], commandName: "sleep")
        let cgroup = try #require(Harness.machineCgroup(running.image.machine), "the running machine has no cgroup")
        func programs() -> String { Harness.run([attacker.path, "bpf-programs", cgroup]).stdout }
        let before = programs()
        let detach = Harness.run([attacker.path, "bpf-devices", cgroup])
        let after = programs()
        running.stop()
        if before == "device programs: 0\n" {
            try Test.cancel("the device policy here is not a BPF program (the cgroup v1 devices controller): nothing for bpf to detach")
        }
        try #require(before == "device programs: 1\n" && after == "device programs: 0\n",
                     "the device program is not detached even from the host: \(before)\(detach.stdout)\(after)")

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
        defer {
            _ = Harness.run(["/sbin/losetup", "-d", device])
            withExtendedLifetime(scratch) {}
        }
        var st = stat()
        try #require(stat(device, &st) == 0)
        let major = Int(st.st_rdev >> 8 & 0xfff), minor = Int(st.st_rdev & 0xff | (st.st_rdev >> 12 & 0xfff00))

        let image = try ImageCopy("basic")
        let out = try image.run(options(attacker), ["/tmp/abi-attacker", "bpf-devices", "/sys/fs/cgroup", String(major), String(minor)])
        #expect(!out.stdout.contains(secret), "the container read the host's block device through the \(abi) ABI: \(out.stdout)")
        #expect(Harness.sha256(victim) == hash, "the container wrote the host's block device through the \(abi) ABI")
        #expect(Attacker.lines(out.stdout, "bpf prog query").count == 1, "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    // MARK: Swap

    /// The host's swap areas, by file name (/proc/swaps; a name the reader cannot reach shows
    /// as what it can: whether a file is swap is asked of the kernel, `turnOffSwap`).
    static func hostSwaps() -> [String] {
        let text = (try? String(contentsOfFile: "/proc/swaps", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").dropFirst().compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// Two swap files bound into the container: one the host swaps on, which the container
    /// turns off; one the container turns on. Afterwards the host's swap is as before. Control:
    /// the host turns a file's swap on and off through the same ABI. (On a filesystem that
    /// cannot hold a swap file there is nothing to attack: skipped, and says so.)
    static func swapStaysTheHosts(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        // /var/tmp: a disk's filesystem more often than /tmp, which may be a tmpfs (no swap files).
        let scratch = try ScratchDirectory("imgboot-swap", in: "/var/tmp")
        let hosts = scratch.path + "/hosts", planted = scratch.path + "/planted"
        for file in [hosts, planted] {
            try Data(count: 4 << 20).write(to: URL(fileURLWithPath: file))
            chmod(file, 0o600)
            let made = Harness.run(["/sbin/mkswap", file])
            try #require(made.status == 0, "mkswap: \(made.stderr)")
        }
        // Whatever happens, no swap area is left on these files. (Not by /proc/swaps's names:
        // one the container turned on shows under a name of the container's.)
        defer {
            for file in [hosts, planted] { _ = Harness.run(["/sbin/swapoff", file]) }
            withExtendedLifetime(scratch) {}
        }

        let on = Harness.run([attacker.path, "swapon", planted])
        let listed = hostSwaps().contains(planted)
        let off = Harness.run([attacker.path, "swapoff", planted])
        if on.stdout == "swapon (\(abi)): EINVAL\n" {
            try Test.cancel("the filesystem of /var/tmp cannot hold a swap file: no swap to attack here")
        }
        try #require(listed && !hostSwaps().contains(planted), "swap is not turned on and off even on the host: \(on.stdout)\(off.stdout)")

        let swapon = Harness.run(["/sbin/swapon", hosts])
        try #require(swapon.status == 0 && hostSwaps().contains(hosts), "swapon: \(swapon.stderr)")
        let image = try ImageCopy("basic")
        let out = try image.run(options(attacker) + ["--bind=\(hosts):/tmp/hosts", "--bind=\(planted):/tmp/planted"], ["sh", "-c", """
            /tmp/abi-attacker swapoff /tmp/hosts
            /tmp/abi-attacker swapon /tmp/planted
            """])
        let after = hostSwaps()
        #expect(after.contains(hosts), "the container turned the host's swap off through the \(abi) ABI: \(out.stdout)")
        // The kernel's word: a file the container swapped on would turn off now.
        #expect(!ContainmentTests.turnOffSwap(planted), "the container swapped on \(planted) through the \(abi) ABI")
        #expect(Attacker.lines(out.stdout, "swap").count == 2, "\(out.stdout)\(out.stderr)")
        #expect(image.isUnchanged)
    }

    // MARK: Audit

    /// The container opens the audit netlink socket — through socket(), and on i386 through the
    /// socketcall() multiplexer too — and sends through each a user message with a marker: the
    /// marker is not in the host's audit trail. Control: from the host, through the same ABI,
    /// it is, before and after the attack (so the kernel's log took messages all along).
    ///
    /// The filter refuses socket(AF_NETLINK, …, NETLINK_AUDIT), but i386's socketcall() takes
    /// its arguments in memory, where a seccomp filter cannot look: it stays allowed whole (it is
    /// how i386's glibc makes every socket), and its audit socket with it. What keeps the
    /// trail the host's is that the container holds no audit capability (nspawn keeps them).
    static func auditTrailStaysTheHosts(_ abi: OtherABI) throws {
        let attacker = try abi.bind()
        let image = try ImageCopy("basic")
        let marker = "imgboot-test-\(image.machine)"
        let before = Attacker.auditControl(attacker.path, marker + "-control")
        if !before.logged {
            try Test.cancel("the host's audit trail (kernel log, /var/log/audit/audit.log) takes no user message, even from the host: \(before.out.stdout)")
        }
        let out = try image.run(options(attacker), ["/tmp/abi-attacker", "audit", marker])
        let after = Attacker.auditControl(attacker.path, marker + "-control-after")
        try #require(after.logged, "the host's audit trail took no message after the attack (rate-limited?): \(after.out.stdout)")
        let trail = Attacker.hostAuditTrail()
        var ways = ["socket"]
        if abi == .x32 { ways.append("socket, upper halves set") }
        for way in ways {
            let written = trail.contains("'\(marker) through \(way)'")
            #expect(!written, "the container wrote the host's audit trail through the \(abi) ABI's \(way): \(out.stdout)")
            #expect(Attacker.lines(out.stdout, "audit socket through \(way) (").count == 1, "\(out.stdout)\(out.stderr)")
        }
        if abi == .i386 {
            #expect(Attacker.lines(out.stdout, "audit socket through socketcall").count == 1, "\(out.stdout)\(out.stderr)")
            let written = trail.contains("'\(marker) through socketcall'")
            #expect(!written, "the container wrote the host's audit trail through socketcall: \(out.stdout)")
        }
        #expect(image.isUnchanged)
    }
}
