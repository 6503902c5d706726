import Foundation
import Testing

/// `imgboot run` as a user sees it from inside the container: every volatile mode on every
/// kind of busybox image, then the container contract of DESIGN.md item by item. Each test runs
/// on its own copy of a fixture, and after every run nothing may be left: no loop device, no
/// mount, no process, no cgroup, registry entry or tree directory of the machine
/// (`ImageCopy.run`); where the image must not be written, its hash is the same.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct RunTests {
    static let busyboxImages = ["basic", "split-usr", "squashfs", "btrfs-xfs", "bare-ext4"]

    /// What imgboot writes into an /etc of the container's own (tmpfs or overlay): the host's
    /// resolv.conf and localtime, those the host has.
    static let providedEtc = ["localtime", "resolv.conf"].filter { FileManager.default.fileExists(atPath: "/etc/\($0)") }

    // MARK: - Volatile modes

    /// yes: a fresh tmpfs root; the image's /usr on it, read-only; /etc holds only what imgboot
    /// provides, /var only the base filesystem's tmp.
    @Test(arguments: busyboxImages)
    func volatileYes(_ fixture: String) throws {
        let image = try ImageCopy(fixture)
        let lines = try image.sh(["--volatile=yes"], """
            ls -A /etc
            echo ---
            grep ' / ' /proc/mounts | cut -d' ' -f3
            touch /x && echo root writable
            touch /usr/x || echo usr read-only
            test -x /usr/bin/busybox && echo usr from the image
            ls -A /var
            """)
        #expect(lines == Self.providedEtc + ["---", "tmpfs", "root writable", "usr read-only", "usr from the image", "tmp"])
        #expect(image.isUnchanged)
    }

    /// state: the image read-only, its own /etc; a fresh tmpfs on /var (with the base
    /// filesystem's tmp in it).
    @Test(arguments: busyboxImages)
    func volatileState(_ fixture: String) throws {
        let image = try ImageCopy(fixture)
        let out = try image.run(["--volatile=state"], ["sh", "-c", """
            grep ' /var ' /proc/mounts | cut -d' ' -f1,3,4 | cut -d, -f1
            ls -A /var
            touch /var/x && echo var writable
            touch /x || echo root read-only
            touch /etc/x || echo etc read-only
            touch /usr/x || echo usr read-only
            cat /etc/imgboot-fixture
            """])
        #expect(out.status == 0)
        #expect(out.stdout.split(separator: "\n") == [
            "tmpfs tmpfs rw", "tmp", "var writable", "root read-only", "etc read-only", "usr read-only", "\(fixture)",
        ])
        #expect(out.stderr.contains("touch: /x: Read-only file system"), "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// overlay (the default): everything writable; the writes are gone in the next run, and the
    /// image is as it was.
    @Test(arguments: busyboxImages)
    func volatileOverlay(_ fixture: String) throws {
        let image = try ImageCopy(fixture)
        let files = ["/x", "/root/x", "/etc/x", "/usr/x", "/var/x", "/var/tmp/x", "/home/x", "/srv/x"]
        let written = try image.sh([], "for f in \(files.joined(separator: " ")); do echo \(image.machine) > $f && cat $f; done")
        #expect(written == Array(repeating: image.machine, count: files.count))
        let second = try image.sh(["--volatile=overlay"], "for f in \(files.joined(separator: " ")); do test -e $f && echo $f; done; echo done")
        #expect(second == ["done"])
        #expect(image.isUnchanged)
    }

    /// no: writes land in the image and are there in the next run.
    @Test(arguments: busyboxImages)
    func volatileNoWritesTheImage(_ fixture: String) throws {
        let image = try ImageCopy(fixture)
        #expect(try image.sh(["--volatile=no"], "echo \(image.machine) > /var/persisted && echo written") == ["written"])
        #expect(try image.sh(["--volatile=no"], "cat /var/persisted") == [image.machine])
        #expect(!image.isUnchanged)
    }

    /// --read-only (without --volatile): the image as it is, and nothing of it writable.
    @Test func readOnly() throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh(["--read-only"], """
            for f in /x /etc/x /home/x /srv/x; do touch $f || echo $f read-only; done
            cat /home/user/hello.txt
            """)
        #expect(lines == ["/x read-only", "/etc/x read-only", "/home/x read-only", "/srv/x read-only",
                          "hello from the imgboot home partition"])
        #expect(image.isUnchanged)
    }

    // MARK: - The container contract

    /// PID 1 is imgboot's tiny init, not the command; the PID namespace shows nothing else.
    @Test func pidNamespaceAndTinyInit() throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh([], """
            echo $$
            echo $PPID
            cmp -s /proc/1/cmdline /proc/$$/cmdline && echo PID 1 runs the command || echo PID 1 is another program
            for p in /proc/[0-9]*; do echo ${p#/proc/}; done
            """)
        try #require(lines.count >= 4)
        let me = lines[0]
        #expect(me != "1")
        #expect(lines[1] == "1", "the command's parent is PID 1")
        #expect(lines[2] == "PID 1 is another program")
        #expect(Set(lines[3...]) == ["1", me], "only the container's processes: \(lines[3...])")
        #expect(image.isUnchanged)
    }

    /// The hostname is the machine's name (the image's file name without .raw) unless
    /// --hostname or --machine says otherwise.
    @Test func hostname() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh([], "hostname") == [image.machine])
        #expect(try image.sh(["--hostname=custom-host"], "hostname") == ["custom-host"])
        let machine = "m-\(image.machine)"
        #expect(try image.sh(["--machine=\(machine)"], "hostname") == [machine])
        #expect(Harness.machineCgroup(machine) == nil && Harness.machineFiles(machine).isEmpty)
        #expect(try image.sh(["--machine=\(machine)", "--hostname=both"], "hostname") == ["both"])
        #expect(Harness.machineCgroup(machine) == nil && Harness.machineFiles(machine).isEmpty)
        #expect(image.isUnchanged)
    }

    /// The environment: container=imgboot, a container_uuid, PATH, TERM, HOME, USER, and
    /// --setenv, which may override the others.
    @Test func environment() throws {
        let image = try ImageCopy("basic")
        func environment(_ options: [String]) throws -> [String: String] {
            let lines = try image.sh(options, "env")
            return Dictionary(lines.map { line in
                let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "")
            }, uniquingKeysWith: { a, _ in a })
        }
        let env = try environment(["--setenv=GREETING=hello", "--setenv=SPACED=a b=c", "--setenv=HOME=/srv"])
        #expect(env["container"] == "imgboot")
        let uuid = try #require(env["container_uuid"])
        #expect(UUID(uuidString: uuid) != nil && uuid == uuid.lowercased(), "container_uuid \(uuid)")
        #expect(env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        #expect(env["TERM"]?.isEmpty == false)
        #expect(env["USER"] == "root")
        #expect(env["GREETING"] == "hello")
        #expect(env["SPACED"] == "a b=c")
        #expect(env["HOME"] == "/srv", "--setenv overrides imgboot's own")

        let plain = try environment([])
        #expect(plain["HOME"] == "/root")
        #expect(plain["GREETING"] == nil)
        #expect(plain["container_uuid"] != uuid, "each container gets its own UUID")
        #expect(image.isUnchanged)
    }

    /// /proc: a new instance; /proc/sys read-only; keys, timer_list, kallsyms (and kcore)
    /// masked. /sys read-only.
    @Test func procAndSys() throws {
        let image = try ImageCopy("basic")
        // The masked files and /proc/sysrq-trigger: ContainmentTests, for the files this kernel has.
        let out = try image.run([], ["sh", "-c", """
            echo imgboot > /proc/sys/kernel/domainname || echo proc/sys read-only
            touch /sys/x || echo sys read-only
            grep -E ' /(proc/sys|sys) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1
            """])
        #expect(out.status == 0)
        #expect(out.stdout.split(separator: "\n").map(String.init).sorted() ==
            ["/proc/sys ro", "/sys ro", "proc/sys read-only", "sys read-only"])
        #expect(out.stderr.contains("/proc/sys/kernel/domainname: Read-only file system"), "\(out.stderr)")
        #expect(out.stderr.contains("touch: /sys/x: Read-only file system"), "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// /dev holds the container's devices and nothing of the host's (no disks, no loop devices);
    /// root in the container (which keeps CAP_MKNOD) cannot make a node for one either.
    @Test func dev() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh([], "ls -A /dev") == [
            "console", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
            "stdout", "tty", "urandom", "zero",
        ])
        let out = try image.run([], ["sh", "-c", """
            head -c 4 /dev/zero | wc -c
            echo x > /dev/null && echo null ok
            mknod /dev/loop7 b 7 0 || echo no block device
            mknod /dev/mem c 1 1 || echo no /dev/mem
            """])
        #expect(out.stdout == "4\nnull ok\nno block device\nno /dev/mem\n")
        #expect(out.stderr.contains("mknod: /dev/loop7: Operation not permitted"), "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// nspawn's bounding set (systemd 252's `arg_caps_retain`: 26 capabilities) without
    /// CAP_AUDIT_WRITE and CAP_AUDIT_CONTROL (29, 30; see `Capabilities.audit`); CAP_NET_ADMIN
    /// (12) is added with --private-network.
    static let nspawnCapabilities: UInt64 = 0xfdec_afff & ~(1 << 29 | 1 << 30)

    /// The bounding set imgboot itself runs with: a container cannot get more. (Sandboxes may
    /// lack some: the one this was written in has no CAP_SYS_RESOURCE, so containers there get
    /// 0xfcecafff, exactly what nspawn showed there.)
    static let hostBoundingSet: UInt64 = {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") } ?? ""
        return UInt64(line.dropFirst("CapBnd:".count).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
    }()

    /// All five sets of PID 1 and of the command. With a user namespace (the default), the
    /// container's capabilities are exactly nspawn's, in its own namespace; without one, within
    /// what the host has (a container cannot get more): ContainmentTests says which capabilities
    /// that leaves unchecked on a host whose own bounding set lacks some.
    @Test(arguments: [false, true], ["pick", "no"])
    func capabilityBoundingSet(privateNetwork: Bool, users: String) throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh((privateNetwork ? ["--private-network"] : []) + ["--private-users=\(users)"],
                                 "grep -E '^Cap' /proc/1/status /proc/self/status")
        let expected = (Self.nspawnCapabilities | (privateNetwork ? 1 << 12 : 0)) & (users == "no" ? Self.hostBoundingSet : ~0)
        let hex = String(format: "%016llx", expected), none = String(repeating: "0", count: 16)
        let sets = ["CapInh:\t\(none)", "CapPrm:\t\(hex)", "CapEff:\t\(hex)", "CapBnd:\t\(hex)", "CapAmb:\t\(none)"]
        #expect(lines == sets.map { "/proc/1/status:" + $0 } + sets.map { "/proc/self/status:" + $0 })
        #expect(image.isUnchanged)
    }

    /// --private-network: only lo, and it is up.
    @Test func privateNetwork() throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh(["--private-network"], "ls /sys/class/net; cat /sys/class/net/lo/flags; ip link | grep -c '^[0-9]*: '")
        try #require(lines.count == 3, "\(lines)")
        #expect(lines[0] == "lo")
        let flags = UInt32(lines[1].dropFirst(2), radix: 16) ?? 0
        #expect(flags & 0x1 != 0, "lo is up (IFF_UP): flags \(lines[1])")
        #expect(lines[2] == "1", "ip link lists one interface")
        #expect(image.isUnchanged)
    }

    /// Without --private-network: the host's interfaces, and the host's nameservers.
    @Test func sharedNetwork() throws {
        let image = try ImageCopy("basic")
        let hostInterfaces = try FileManager.default.contentsOfDirectory(atPath: "/sys/class/net").sorted()
        #expect(try image.sh([], "ls /sys/class/net") == hostInterfaces)
        let hostResolv = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        let nameservers = hostResolv.split(separator: "\n").filter { $0.hasPrefix("nameserver") }.map(String.init)
        #expect(try image.sh([], "grep '^nameserver' /etc/resolv.conf || true") == nameservers)
        #expect(image.isUnchanged)
    }

    /// --bind writes through to the host; --bind-ro (and :ro) refuses writes; DST defaults to
    /// SRC, and its missing parents are made (in the container's tree, never the image).
    /// Binds of host directories: read-write, read-only (two spellings), and DST defaulting to
    /// SRC. With a user namespace they are idmapped by default, so that root inside writes as the
    /// host's root there, as without one; `pickWithoutIdmap` shows what `:noidmap` does.
    @Test(arguments: ["no", "pick"])
    func binds(users: String) throws {
        let image = try ImageCopy("basic")
        let dir = image.directory
        for sub in ["rw", "ro", "same/deep"] { try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
        try "from the host\n".write(toFile: "\(dir)/ro/file", atomically: false, encoding: .utf8)

        let out = try image.run(
            ["--private-users=\(users)", "--bind=\(dir)/rw:/mnt/rw", "--bind-ro=\(dir)/ro:/mnt/ro",
             "--bind=\(dir)/ro:/mnt/ro2:ro", "--bind=\(dir)/same/deep"],
            ["sh", "-c", """
                echo through > /mnt/rw/new && echo rw written
                cat /mnt/ro/file
                echo no > /mnt/ro/new || echo ro refused
                echo no > /mnt/ro2/new || echo ro2 refused
                echo deep > \(dir)/same/deep/new && echo same written
                """])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "rw written\nfrom the host\nro refused\nro2 refused\nsame written\n")
        #expect(out.stderr.contains("/mnt/ro/new: Read-only file system"), "\(out.stderr)")
        #expect((try? String(contentsOfFile: "\(dir)/rw/new", encoding: .utf8)) == "through\n")
        #expect((try? String(contentsOfFile: "\(dir)/same/deep/new", encoding: .utf8)) == "deep\n")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/ro/new"))
        #expect(image.isUnchanged)
    }

    /// `:noidmap` under a user namespace: the host's files show as nobody's (their owners are
    /// not mapped), root inside cannot read a file only the host's root may read (a secret in
    /// it stays unread), nor write where only the host's root may, and where anyone may, what
    /// it creates belongs to the container's root as the host numbers it.
    @Test func pickWithoutIdmap() throws {
        let image = try ImageCopy("basic")
        let dir = image.directory
        for sub in ["closed", "open"] { try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
        chmod("\(dir)/closed", 0o755)
        chmod("\(dir)/open", 0o777)
        let secret = "root-only-\(UUID().uuidString)"
        try secret.write(toFile: "\(dir)/closed/secret", atomically: false, encoding: .utf8)
        chmod("\(dir)/closed/secret", 0o600)
        let out = try image.run(["--bind=\(dir)/closed:/mnt/closed:noidmap", "--bind=\(dir)/open:/mnt/open:noidmap"], ["sh", "-c", """
            stat -c '%u:%g' /mnt/closed
            cat /mnt/closed/secret || echo unreadable
            echo no > /mnt/closed/new || echo refused
            echo yes > /mnt/open/new && echo written
            """])
        #expect(!out.stdout.contains(secret), "the container read a file only the host's root may read")
        #expect(out.stdout == "65534:65534\nunreadable\nrefused\nwritten\n", "\(out.stderr)")
        #expect(out.stderr.contains("Permission denied"), "\(out.stderr)")
        var st = stat()
        #expect(stat("\(dir)/open/new", &st) == 0)
        #expect(st.st_uid >= 0x80000 && st.st_uid == st.st_gid, "created as host UID \(st.st_uid): not the range's root")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/closed/new"))
    }

    /// A GPT with 256-byte entries, which libblkid cannot read, runs as basic does: root, home
    /// and srv from the table imgboot read itself, the image unchanged.
    @Test func gptWith256ByteEntries() throws {
        let image = try ImageCopy("entries-256")
        let lines = try image.sh([], """
            cat /etc/imgboot-fixture /home/user/hello.txt /srv/www/index.html
            grep -E ' /(home|srv) ' /proc/mounts | cut -d' ' -f2,3
            """)
        #expect(lines == ["basic", "hello from the imgboot home partition", "<h1>imgboot srv partition</h1>",
                          "/home overlay", "/srv overlay"])
        #expect(image.isUnchanged)
    }

    struct ExitCase: Sendable, CustomTestStringConvertible {
        var command: [String]
        var status: Int32
        var stderr: String
        var testDescription: String { command.joined(separator: " ") }
    }

    static let exitCases: [ExitCase] = [
        .init(command: ["true"], status: 0, stderr: ""),
        .init(command: ["sh", "-c", "exit 7"], status: 7, stderr: ""),
        .init(command: ["/nope"], status: 127, stderr: "imgboot: /nope: command not found\n"),
        .init(command: ["nope"], status: 127, stderr: "imgboot: nope: command not found\n"),
        .init(command: ["/etc/passwd"], status: 126, stderr: "imgboot: /etc/passwd: Permission denied\n"),
        // A path through a file is not found (ENOTDIR), as dash and busybox sh say with 127.
        .init(command: ["/etc/passwd/x"], status: 127, stderr: "imgboot: /etc/passwd/x: Not a directory\n"),
        // A directory cannot be executed (execve: EACCES).
        .init(command: ["/etc"], status: 126, stderr: "imgboot: /etc: Permission denied\n"),
        .init(command: ["sh", "-c", "kill -TERM $$"], status: 143, stderr: ""),
    ]

    /// The command's exit status, as a shell reports it.
    @Test(arguments: exitCases)
    func exitStatus(_ c: ExitCase) throws {
        let image = try ImageCopy("basic")
        let out = try image.run([], c.command)
        #expect(out.status == c.status)
        #expect(out.stderr == c.stderr)
        #expect(out.stdout.isEmpty)
        #expect(image.isUnchanged)
    }

    struct SetupFailure: Sendable, CustomTestStringConvertible {
        var fixture: String
        var options: [String]
        var message: String
        var testDescription: String { "\(fixture) \(options.joined(separator: " "))" }
    }

    static let setupFailures: [SetupFailure] = [
        .init(fixture: "basic", options: ["--bind=/nonexistent-imgboot:/x"],
              message: "--bind source /nonexistent-imgboot: No such file or directory"),
        .init(fixture: "basic", options: ["--volatile=state", "--bind=/etc:/new"],
              message: "the read-only image has no /new directory (imgboot never writes the image to create it)"),
        .init(fixture: "garbage-root", options: [], message: "no root partition to mount"),
    ]

    /// When imgboot itself fails, part way through the setup or before: status 125, one line
    /// naming the image and what is wrong, and nothing left.
    @Test(arguments: setupFailures)
    func setupFailureExits125AndLeavesNothing(_ c: SetupFailure) throws {
        let image = try ImageCopy(c.fixture)
        let out = try image.run(c.options, ["true"])
        #expect(out.status == 125)
        #expect(out.stderr.hasPrefix("imgboot: \(image.path): \(c.message)"), "\(out.stderr)")
        #expect(out.stderr.split(separator: "\n").count == 1)
        #expect(image.isUnchanged)
    }

    /// SIGINT (Ctrl-C) or SIGTERM to imgboot reaches the command, and imgboot exits as it did.
    @Test(arguments: [(SIGINT, 130), (SIGTERM, 143)] as [(Int32, Int32)])
    func signalToImgbootReachesTheCommand(signal: Int32, status: Int32) throws {
        let image = try ImageCopy("basic")
        let imgboot = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sleep", "100"])
        defer { imgboot.kill() }
        // imgboot → the tiny init → sleep: the signal goes out once sleep runs.
        let running = imgboot.wait(upTo: 30) {
            imgboot.children().flatMap(Harness.children(of:)).contains { Harness.commandName(of: $0) == "sleep" }
        }
        try #require(running, "sleep did not start in the container: \(imgboot.stderr)")
        imgboot.signal(signal)
        #expect(imgboot.exitStatus(within: 30) == status)
        #expect(imgboot.stderr.isEmpty)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// Nothing imgboot has open, or was passed open, reaches the container: PID 1 holds no
    /// descriptor at all, the command only its standard streams. (PID 1 used to hold imgboot's
    /// descriptor of the host's mount namespace: a way out through /proc/1/fd.)
    @Test func noInheritedFileDescriptors() throws {
        let image = try ImageCopy("basic")
        // A descriptor of the host's /etc left open by the caller, as `exec 7</etc` in a shell.
        let out = Harness.run(["/bin/sh", "-c", "exec 7</etc; \"$0\" run \"$1\" -- sh -c 'ls /proc/1/fd; echo ---; ls /proc/$$/fd; true'",
                               Harness.binary, image.path])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "---\n0\n1\n2\n")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// SIGINT to imgboot also reaches what a shell in the container runs in the foreground, as
    /// Ctrl-C on a terminal does: the shell does not sit waiting for its child.
    @Test func signalReachesTheShellsForegroundChild() throws {
        let image = try ImageCopy("basic")
        let imgboot = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sh", "-c", "sleep 1000; echo done"])
        defer { imgboot.kill() }
        let running = imgboot.wait(upTo: 30) {
            imgboot.children().flatMap(Harness.children(of:)).flatMap(Harness.children(of:))
                .contains { Harness.commandName(of: $0) == "sleep" }
        }
        try #require(running, "sleep did not start in the container: \(imgboot.stderr)")
        imgboot.signal(SIGINT)
        #expect(imgboot.exitStatus(within: 30) == 130)
        #expect(imgboot.stdout.isEmpty)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// SIGKILL to imgboot: the kernel takes the container down (its PID 1 dies with imgboot),
    /// its mounts with its mount namespace, the loop devices by autoclear (asynchronously). Not
    /// the machine's empty cgroup, registry entry and tree directory, which the next imgboot to
    /// come across them removes; here the test does.
    @Test func sigkillToImgbootLeavesNoLoopDeviceMountOrProcess() throws {
        let image = try ImageCopy("basic")
        let imgboot = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sleep", "100"])
        defer { imgboot.kill() }
        let running = imgboot.wait(upTo: 30) {
            imgboot.children().flatMap(Harness.children(of:)).contains { Harness.commandName(of: $0) == "sleep" }
        }
        try #require(running, "sleep did not start in the container: \(imgboot.stderr)")
        imgboot.signal(SIGKILL)
        #expect(imgboot.exitStatus(within: 30) == 137)
        #expect(Harness.waitUntil(upTo: 30) { Harness.machineProcesses(image.machine).isEmpty })
        #expect(Harness.waitUntil(upTo: 30) { Harness.loopDevices(backing: image.path).isEmpty })
        if let cgroup = Harness.machineCgroup(image.machine) { rmdir(cgroup) }
        for file in Harness.machineFiles(image.machine) { remove(file) }
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// stdin through a pipe reaches the command; without a command, the shell reads it.
    @Test func stdinThroughAPipe() throws {
        let image = try ImageCopy("basic")
        func piped(_ input: String, _ command: String) -> Harness.Output {
            Harness.run(["/bin/sh", "-c", "printf '\(input)' | \"$0\" run \"$1\" \(command)", Harness.binary, image.path])
        }
        let cat = piped("hi\\n", "-- cat")
        #expect(cat.status == 0 && cat.stdout == "hi\n", "\(cat.stderr)")
        let count = piped("a\\nb\\n", "-- wc -l")
        #expect(count.status == 0 && count.stdout.trimmingCharacters(in: .whitespaces) == "2\n", "\(count.stderr)")
        let shell = piped("echo from the default shell; exit 3\\n", "")
        #expect(shell.status == 3 && shell.stdout == "from the default shell\n", "\(shell.stderr)")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    static let hasScript = FileManager.default.isExecutableFile(atPath: "/usr/bin/script")

    /// With a terminal (here script(1)'s pty): the command gets a pty of its own as /dev/console,
    /// with the user's TERM; typed input reaches it; Ctrl-] three times kills the machine.
    @Test(.enabled(if: hasScript, "script(1) from util-linux is not installed"))
    func onATerminal() throws {
        let image = try ImageCopy("basic")
        func typed(_ input: String, _ command: String) -> Harness.Output {
            Harness.run(["/bin/sh", "-c", "printf \"$1\" | TERM=xterm-imgboot /usr/bin/script -qec \"$2\" /dev/null", "sh", input,
                         "\(Harness.binary) run \(image.path) -- \(command)"])
        }
        let tty = typed("", "sh -c 'tty; echo $TERM; exit 3'")
        #expect(tty.status == 3)
        #expect(tty.stdout.contains("/dev/console\r\nxterm-imgboot\r\n"), "\(tty.stdout)")
        let line = typed("hello\\n", "sh -c 'read line; echo got-$line'")
        #expect(line.status == 0)
        #expect(line.stdout.contains("got-hello\r\n"), "\(line.stdout)")
        let escape = typed("\\035\\035\\035", "sleep 100")
        #expect(escape.status == 137)
        #expect(escape.stdout.contains("imgboot: Ctrl-] pressed three times: killing \(image.machine)"), "\(escape.stdout)")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// The command's stdout and stderr stay apart.
    @Test func stdoutAndStderrSeparated() throws {
        let image = try ImageCopy("basic")
        let out = try image.run([], ["sh", "-c", "echo out; echo err >&2; echo out2"])
        #expect(out.status == 0)
        #expect(out.stdout == "out\nout2\n")
        #expect(out.stderr == "err\n")
        #expect(image.isUnchanged)
    }
}

