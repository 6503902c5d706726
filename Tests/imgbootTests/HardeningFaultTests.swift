import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 6, faults and signals: SIGINT, SIGTERM, SIGHUP and SIGKILL to imgboot at each stage of
/// a container's life; a missing or unusable /dev/loop-control, no free loop device, a full
/// /run, a mount failing in the middle of the plan, a read-only or immutable image file.
///
/// To stop imgboot at a stage deterministically, it runs under strace, which delays one system
/// call of that stage by `StagedRun.delay` seconds (`-e inject=SYSCALL:delay_enter=…:when=N`):
/// the 2nd LOOP_CTL_GET_FREE (attaching: one partition attached, the next not; `-P
/// /dev/loop-control` limits the count to that file's ioctls), the mount after the root's
/// overlay (mounting: the root mounted, home not yet), the child's pivot_root (setting up the
/// container). The test waits until imgboot is seen inside that very call
/// (/proc/PID/syscall, and its private mount table or its loop devices say how far it got),
/// then sends the signal. A delay is a bound, never something the test times.
///
/// Proven elsewhere: SIGINT and SIGTERM while the command runs (`RunTests
/// .signalToImgbootReachesTheCommand`, `.signalReachesTheShellsForegroundChild`), SIGKILL while
/// it runs (`RunTests.sigkillToImgbootLeavesNoLoopDeviceMountOrProcess`); a halt on SIGTERM and
/// a kill on the second, for a booted Debian (`BootTests.secondSignalKillsAHungInit`,
/// `.twoSignalsBackToBack`); `mount` of corrupt-srv in every mode (`MountCommandTests.Errors`);
/// a writable attach of a read-only file (`AttachedImageTests`).
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct HardeningFaultTests {
    enum Stage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case attaching, mounting, settingUp
        var testDescription: String { rawValue }

        /// strace's arguments that delay this stage's system call.
        func straceArguments(delay: Int) -> [String] {
            switch self {
            case .attaching: ["-P", "/dev/loop-control", "-e", "trace=ioctl", "-e", "inject=ioctl:delay_enter=\(delay)s:when=2"]
            // MS_SLAVE on /, the staging tmpfs, the overlay's upper tmpfs, the root (p1), its
            // overlay on the tree; then home (p2): the 6th.
            case .mounting: ["-e", "trace=mount", "-e", "inject=mount:delay_enter=\(delay)s:when=6"]
            case .settingUp: ["-e", "trace=pivot_root", "-e", "inject=pivot_root:delay_enter=\(delay)s"]
            }
        }
    }

    /// `imgboot run` of an image copy under strace, held in one system call of `stage`.
    final class StagedRun {
        static let delay = 6
        let image: ImageCopy
        let strace: BackgroundProcess
        let stage: Stage
        /// The staging mount points imgboot was seen using (while mounting).
        private(set) var stagingDirectories: Set<String> = []

        init(_ image: ImageCopy, _ stage: Stage, command: [String] = ["true"]) throws {
            self.image = image
            self.stage = stage
            strace = try BackgroundProcess(["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null"] + stage.straceArguments(delay: Self.delay)
                + [Harness.binary, "run", image.path, "--"] + command)
        }

        /// imgboot: strace's child.
        var imgboot: pid_t? { strace.children().first { Harness.commandName(of: $0) == "imgboot" } }

        /// The system call a process is in (its number, and its arguments as /proc shows them), if
        /// it is in one.
        static func syscall(of pid: pid_t) -> [String] {
            ((try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8)) ?? "").split(separator: " ").map(String.init)
        }

        /// Waits until imgboot is held where the stage means; returns its PID.
        func waitUntilHeld(sourceLocation: SourceLocation = #_sourceLocation) throws -> pid_t {
            var held: pid_t?
            let reached = strace.wait(upTo: 60) {
                guard let pid = imgboot else { return false }
                switch stage {
                case .attaching:
                    // In LOOP_CTL_GET_FREE (ioctl 16, request 0x4c82), with one device attached.
                    let call = Self.syscall(of: pid)
                    guard call.count > 2, call[0] == "16", call[2] == "0x4c82" else { return false }
                    guard Harness.loopDevices(backing: image.path).count == 1 else { return false }
                case .mounting:
                    // In mount(2) (165), with the root's overlay already on the tree in imgboot's
                    // private mount namespace.
                    guard Self.syscall(of: pid).first == "165" else { return false }
                    let mounts = (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? ""
                    guard mounts.contains(" /run/imgboot/roots/\(image.machine) ") else { return false }
                    // The staging mounts: the overlay's layers (lower-N, rw), wherever they are.
                    for line in mounts.split(separator: "\n") {
                        let point = line.split(separator: " ").dropFirst(4).first.map(String.init) ?? ""
                        let name = point.split(separator: "/").last.map(String.init) ?? ""
                        if name.hasPrefix("lower-") || name == "rw" { stagingDirectories.insert(point) }
                    }
                case .settingUp:
                    // The container's child in pivot_root (155).
                    guard Harness.children(of: pid).contains(where: { Self.syscall(of: $0).first == "155" }) else { return false }
                }
                held = pid
                return true
            }
            try #require(reached, "imgboot was never seen held while \(stage); stderr: \(strace.stderr)", sourceLocation: sourceLocation)
            return try #require(held, sourceLocation: sourceLocation)
        }

        /// imgboot's stderr, without strace's own remarks.
        var stderr: String {
            strace.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("strace: ") && !$0.hasPrefix("/usr/bin/strace: ") }
                .joined(separator: "\n")
        }
    }

    static let stopSignals: [(Int32, String)] = [(SIGINT, "Interrupt"), (SIGTERM, "Terminated"), (SIGHUP, "Hangup")]

    /// SIGINT, SIGTERM or SIGHUP while attaching, mounting or setting up the container: what was
    /// done is undone, and imgboot exits with 128+N after one line saying so.
    @Test(.enabled(if: Hardening.hasStrace, "strace is not installed"),
          arguments: Stage.allCases, [SIGINT, SIGTERM, SIGHUP])
    func stopSignalAtAStage(stage: Stage, signal: Int32) throws {
        let image = try ImageCopy("basic")
        let run = try StagedRun(image, stage)
        defer { run.strace.kill() }
        let pid = try run.waitUntilHeld()
        kill(pid, signal)
        let status = run.strace.exitStatus(within: Double(StagedRun.delay) + 60)
        #expect(status == 128 + signal, "stderr: \(run.stderr)")
        let name = Self.stopSignals.first { $0.0 == signal }?.1 ?? ""
        #expect(run.stderr == "imgboot: \(image.path): interrupted by \(name); nothing was left behind\n")
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(Self.stagingLeftovers().isEmpty)
    }

    /// SIGKILL at each stage: imgboot cannot clean up, so the kernel does — the container dies
    /// with it (parent-death signal), its mounts with its mount namespace, the loop devices by
    /// autoclear, all within a bounded wait. What the kernel cannot reclaim (the machine's empty
    /// cgroup, registry entry and tree directory) the next imgboot of that machine removes: a
    /// second run of the image works and leaves nothing at all.
    @Test(.enabled(if: Hardening.hasStrace, "strace is not installed"), arguments: Stage.allCases)
    func sigkillAtAStage(stage: Stage) throws {
        let image = try ImageCopy("basic")
        let run = try StagedRun(image, stage)
        defer { run.strace.kill() }
        let pid = try run.waitUntilHeld()
        kill(pid, SIGKILL)
        #expect(run.strace.exitStatus(within: Double(StagedRun.delay) + 60) == 137)
        #expect(Harness.waitUntil(upTo: 30) { Harness.machineProcesses(image.machine).isEmpty }, "processes left")
        #expect(Harness.waitUntil(upTo: 30) { Harness.loopDevices(backing: image.path).isEmpty }, "loop devices left")
        #expect(image.leftovers.newMounts().isEmpty, "mounts left: \(image.leftovers.newMounts())")
        #expect(Self.stagingLeftovers().isEmpty)
        if stage == .mounting { #expect(!run.stagingDirectories.isEmpty, "no staging mount seen") }
        for directory in run.stagingDirectories {
            #expect(!FileManager.default.fileExists(atPath: directory), "the staging directory \(directory) is left on the host")
        }
        #expect(image.isUnchanged)

        #expect(try image.sh([], "cat /etc/imgboot-fixture") == ["basic"])
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// Anything in the host's /run/imgboot/staging: each container mounts a tmpfs of its own
    /// there, in its private mount namespace, and stages in it; the host's directory stays empty.
    /// (imgboot used to stage in a directory on the host's disk, where a SIGKILL left the
    /// staging directories for good.)
    static func stagingLeftovers() -> [String] {
        let staging = (try? FileManager.default.contentsOfDirectory(atPath: "/run/imgboot/staging")) ?? []
        return staging.map { "/run/imgboot/staging/" + $0 }
    }

    /// SIGHUP while the command runs (SIGINT and SIGTERM: RunTests) reaches it: 129.
    @Test func sighupWhileRunningReachesTheCommand() throws {
        let image = try ImageCopy("basic")
        let imgboot = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sleep", "100"])
        defer { imgboot.kill() }
        let running = imgboot.wait(upTo: 60) {
            imgboot.children().flatMap(Harness.children(of:)).contains { Harness.commandName(of: $0) == "sleep" }
        }
        try #require(running, "sleep did not start: \(imgboot.stderr)")
        imgboot.signal(SIGHUP)
        #expect(imgboot.exitStatus(within: 60) == 129)
        #expect(imgboot.stderr.isEmpty)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// During the shutdown of a booted Debian (held there by a unit whose ExecStop sleeps, so
    /// the shutdown is surely under way): a second stop signal kills the init (137), SIGKILL to
    /// imgboot kills everything; nothing is left either way.
    @Test(.enabled(if: Harness.isRoot, "boots Debian"), arguments: [SIGINT, SIGTERM, SIGHUP, SIGKILL])
    func signalDuringShutdown(signal: Int32) throws {
        let image = try ImageCopy(path: try Harness.debianImage(), name: "debian")
        let boot = try BootTests.Boot(image, ["--console=passive", "--log-level=notice"])
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()
        let hold = try boot.inside(["systemd-run", "--unit=imgboot-hold", "--property=TimeoutStopSec=infinity",
                                    "--property=ExecStop=/bin/sleep 1000", "--remain-after-exit", "/bin/true"])
        try #require(hold.status == 0, "\(hold.stderr)")
        let initPID = try boot.initPID()
        boot.imgboot.signal(SIGTERM)
        let stopping = boot.imgboot.wait(upTo: BootTests.haltLimit) {
            let state = Harness.run(["/usr/bin/nsenter", "-t", String(initPID), "-a", "systemctl", "show", "-P", "ActiveState", "imgboot-hold"])
            return state.stdout == "deactivating\n"
        }
        try #require(stopping, "the shutdown did not reach imgboot-hold: \(boot.imgboot.stderr)")
        boot.imgboot.signal(signal)
        #expect(boot.imgboot.exitStatus(within: BootTests.haltLimit) == 137)
        if signal == SIGKILL {
            #expect(Harness.waitUntil(upTo: 30) { Harness.machineProcesses(image.machine).isEmpty }, "processes left")
            #expect(Harness.waitUntil(upTo: 30) { Harness.loopDevices(backing: image.path).isEmpty }, "loop devices left")
            #expect(image.leftovers.newMounts().isEmpty)
            #expect(image.isUnchanged)
            // The next boot of the machine removes its stale cgroup and registry entry.
            let again = try BootTests.Boot(image, ["--console=passive"])
            defer { again.imgboot.kill() }
            try again.waitUntilReady()
            again.imgboot.signal(SIGTERM)
            #expect(again.imgboot.exitStatus(within: BootTests.haltLimit) == 0)
        }
        image.leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - Loop devices

    /// /dev/loop-control missing (a tmpfs over /dev in a mount namespace of the test's own), or
    /// something else (/dev/null bound over it), or no free loop device (LOOP_CTL_GET_FREE made
    /// to fail with ENOSPC, what the kernel says when it cannot add one): one line, 125.
    @Test(arguments: [
        ("missing", "partition 1: attach loop device: /dev/loop-control is missing (is the loop module loaded?)"),
        ("not loop-control", "partition 1: attach loop device: /dev/loop-control is not the loop control device (Inappropriate ioctl for device)"),
        ("no free device", "partition 1: attach loop device: No free loop device (No space left on device)"),
    ])
    func loopDevicesUnavailable(situation: String, message: String) throws {
        let image = try ImageCopy("basic")
        let out: Harness.Output
        switch situation {
        case "missing":
            out = Hardening.inPrivateMountNamespace(
                "mount -t tmpfs -o mode=0755 tmpfs /dev && mknod -m 666 /dev/null c 1 3 && exec \"$0\" run \"$1\" -- true",
                [Harness.binary, image.path])
        case "not loop-control":
            out = Hardening.inPrivateMountNamespace("mount --bind /dev/null /dev/loop-control && exec \"$0\" run \"$1\" -- true",
                                                    [Harness.binary, image.path])
        default:
            try #require(Hardening.hasStrace, "strace is not installed")
            out = Harness.run(["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null", "-P", "/dev/loop-control", "-e", "trace=ioctl",
                               "-e", "inject=ioctl:error=ENOSPC", Harness.binary, "run", image.path, "--", "true"])
        }
        Hardening.expectOwnFailure(out, image: image.path, message)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - /run

    /// A full /run (a tiny tmpfs, its blocks and inodes used up, in a mount namespace of the
    /// test's own): imgboot cannot register the machine — one line, 125, nothing attached.
    @Test func fullRun() throws {
        let image = try ImageCopy("basic")
        let out = Hardening.inPrivateMountNamespace("""
            mount -t tmpfs -o size=64k,nr_inodes=8 tmpfs /run || exit 99
            i=0; while touch /run/f$i 2>/dev/null; do i=$((i+1)); done
            dd if=/dev/zero of=/run/f0 bs=4k 2>/dev/null
            exec "$0" run "$1" -- true
            """, [Harness.binary, image.path])
        Hardening.expectOwnFailure(out, image: image.path, "create /run/imgboot: No space left on device")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - A mount failing in the middle

    /// corrupt-srv: root and home mount, srv's ext4 is refused by the kernel — in every mode
    /// that mounts srv; what was mounted is undone, nothing is left.
    @Test(arguments: ["overlay", "state", "yes", "no"])
    func mountFailingInTheMiddleOfThePlan(mode: String) throws {
        let image = try ImageCopy("corrupt-srv")
        let target = mode == "overlay" ? "[staging]/lower-3" : "/srv"
        Hardening.expectOwnFailure(try image.run(["--volatile=\(mode)"], ["true"]), image: image.path,
                                   "partition 3 (srv): mount ext4 on \(target): Structure needs cleaning")
        #expect(Self.stagingLeftovers().isEmpty)
        // Mode no mounted root and home writable before srv failed: their superblocks changed.
        if mode != "no" { #expect(image.isUnchanged) }
    }

    // MARK: - A read-only image file

    /// An image in a directory bound read-only (in a mount namespace of the test's own), or an
    /// immutable file (chattr +i; root cannot write it either): a writable run is refused with
    /// one line; a volatile run, or --read-only, works and the image stays as it was.
    @Test(arguments: ["read-only mount", "immutable"])
    func readOnlyImageFile(how: String) throws {
        let image = try ImageCopy("basic")
        func run(_ options: [String], _ command: String) -> Harness.Output {
            let imgboot = "exec \"$0\" run \(options.joined(separator: " ")) \"$1\" -- sh -c '\(command)'"
            if how == "immutable" {
                return Harness.run(["/bin/sh", "-c", imgboot, Harness.binary, image.path])
            }
            return Hardening.inPrivateMountNamespace(
                "mount --bind \"$2\" \"$2\" && mount -o remount,bind,ro \"$2\" && \(imgboot)",
                [Harness.binary, image.path, image.directory])
        }
        if how == "immutable" {
            let chattr = Harness.run(["/usr/bin/chattr", "+i", image.path])
            try #require(chattr.status == 0, "chattr +i does not work here: \(chattr.stderr)")
        }
        defer { if how == "immutable" { _ = Harness.run(["/usr/bin/chattr", "-i", image.path]) } }

        let writable = run(["--volatile=no"], "true")
        Hardening.expectOwnFailure(writable, image: image.path,
                                   "cannot open for writing: " + (how == "immutable" ? "Operation not permitted" : "Read-only file system"))
        image.leftovers.expectNone(imageUnchanged: true)
        for options in [["--volatile=overlay"], ["--volatile=state"], ["--volatile=yes"], ["--read-only"]] {
            let out = run(options, "cat /usr/bin/busybox > /dev/null && echo ok")
            #expect(out.status == 0 && out.stdout == "ok\n", "\(options): \(out.stderr)")
            image.leftovers.expectNone(imageUnchanged: true)
        }
    }
}
