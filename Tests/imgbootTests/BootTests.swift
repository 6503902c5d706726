import Foundation
import Testing

/// `imgboot boot`: a real Debian 12 with systemd boots to `running` with no failed unit, powers
/// off when asked (0) or reboots (133), and leaves nothing behind; an image whose init is
/// busybox's boots it too.
/// The limits on waits below guard against hangs; they are not speed assertions.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"), .serialized)
struct BootTests {
    /// Long enough for a cold systemd on a loaded machine; a boot that takes longer is hung.
    static let bootLimit = 120.0
    /// systemd halts a container in well under a second; 30 s means it is not going to.
    static let haltLimit = 30.0

    /// A booting copy of an image: imgboot in the background.
    struct Boot {
        let image: ImageCopy
        let imgboot: BackgroundProcess

        init(_ image: ImageCopy, _ options: [String], initArguments: [String] = []) throws {
            self.image = image
            imgboot = try BackgroundProcess([Harness.binary, "boot"] + options + [image.path] + initArguments)
        }

        var readyLine: String { "imgboot: \(image.machine) is ready" }

        /// Waits for imgboot's ready line (systemd's READY=1) on stderr.
        func waitUntilReady(sourceLocation: SourceLocation = #_sourceLocation) throws {
            let ready = imgboot.wait(upTo: BootTests.bootLimit) { imgboot.stderr.contains(readyLine) }
            try #require(ready, "no ready line; stderr: \(imgboot.stderr)", sourceLocation: sourceLocation)
        }

        /// The container's init: imgboot's child, as nsenter wants it.
        func initPID(sourceLocation: SourceLocation = #_sourceLocation) throws -> pid_t {
            try #require(imgboot.children().first, "imgboot has no child", sourceLocation: sourceLocation)
        }

        /// A command run inside the machine with nsenter.
        func inside(_ command: [String]) throws -> Harness.Output {
            Harness.run(["/usr/bin/nsenter", "-t", String(try initPID()), "-a"] + command)
        }
    }

    func debian() throws -> ImageCopy { try ImageCopy(path: try Harness.debianImage(), name: "debian") }

    /// The host's cgroups that look like systemd's (`init.scope`, `*.slice`, `*.mount`) at the
    /// top of each cgroup hierarchy: a guest whose cgroup setup leaks makes them there.
    static func systemdCgroupsOnTheHost() -> Set<String> {
        let roots = Set(Harness.mounts().values.filter { $0.type == "cgroup" || $0.type == "cgroup2" }.map(\.point))
        var found: Set<String> = []
        for root in roots {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            where name == "init.scope" || name.hasSuffix(".slice") || name.hasSuffix(".mount") {
                found.insert("\(root)/\(name)")
            }
        }
        return found
    }

    /// How Debian is booted: a volatile mode and a --private-users mode.
    struct Setup: Sendable, CustomTestStringConvertible {
        var mode: String
        var users: String
        var testDescription: String { "--volatile=\(mode) --private-users=\(users)" }

        /// `yes` gives systemd an empty /etc: a first boot, whose systemd-firstboot would ask on
        /// the console for a locale and a root password (as under nspawn); it is told not to.
        var initArguments: [String] { mode == "yes" ? ["--", "systemd.firstboot=off"] : [] }
    }

    /// Debian boots to `running` with no failed unit, in its machine's cgroup, and powers off on
    /// SIGTERM to imgboot: exit status 0, the image as it was (but with --volatile=no), nothing
    /// left. In every volatile mode with a user namespace (the default), and without one.
    @Test(arguments: [
        Setup(mode: "overlay", users: "pick"), Setup(mode: "state", users: "pick"), Setup(mode: "yes", users: "pick"),
        Setup(mode: "no", users: "pick"), Setup(mode: "overlay", users: "no"), Setup(mode: "state", users: "no"),
    ])
    func debianBootsAndPowersOff(setup: Setup) throws {
        let mode = setup.mode
        let image = try debian()
        let hostCgroups = Self.systemdCgroupsOnTheHost()
        let boot = try Boot(image, ["--console=passive", "--volatile=\(mode)", "--private-users=\(setup.users)"],
                            initArguments: setup.initArguments)
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()

        let state = try boot.inside(["systemctl", "is-system-running", "--wait"])
        #expect(state.stdout == "running\n", "\(state.stderr)")
        let failed = try boot.inside(["systemctl", "--failed", "--no-legend"])
        #expect(failed.status == 0 && failed.stdout.isEmpty, "failed units: \(failed.stdout)")
        // systemd's cgroups are in the machine's, never on the host's.
        #expect(try boot.inside(["cat", "/proc/1/cgroup"]).stdout.contains("0::/init.scope\n"))
        let cgroup = try #require(Harness.machineCgroup(image.machine))
        #expect(FileManager.default.fileExists(atPath: cgroup + "/init.scope"))
        #expect(Self.systemdCgroupsOnTheHost() == hostCgroups)
        #expect(try boot.inside(["grep", " /sys sysfs ro,", "/proc/mounts"]).status == 0, "/sys is read-only")

        boot.imgboot.signal(SIGTERM)
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 0)
        let stderr = boot.imgboot.stderr.split(separator: "\n")
        #expect(stderr.count == 1 && stderr.first?.hasPrefix(boot.readyLine + " (after ") == true, "stderr: \(stderr)")
        image.leftovers.expectNone(imageUnchanged: mode != "no")
        #expect(Self.systemdCgroupsOnTheHost() == hostCgroups)
    }

    /// `systemctl reboot` inside (through `imgboot enter`): systemd ends by reboot(2), which in a
    /// PID namespace ends the init with SIGHUP; imgboot exits 133, as nspawn does, and leaves
    /// nothing. The command's own status is not checked: it may be killed as the machine stops.
    @Test func rebootExits133() throws {
        let image = try debian()
        let boot = try Boot(image, ["--console=passive"])
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()
        _ = try Harness.imgboot(["enter", image.machine, "--", "systemctl", "reboot"])
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 133, "stderr: \(boot.imgboot.stderr)")
        let stderr = boot.imgboot.stderr.split(separator: "\n")
        #expect(stderr.count == 1 && stderr.first?.hasPrefix(boot.readyLine + " (after ") == true, "stderr: \(stderr)")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// --console=read-only shows the console: systemd's boot messages, then its halt.
    @Test func readOnlyConsoleShowsTheBoot() throws {
        let image = try debian()
        let boot = try Boot(image, ["--console=read-only"])
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()
        #expect(boot.imgboot.wait(upTo: Self.bootLimit) { boot.imgboot.stdout.contains("Reached target") },
                "console: \(boot.imgboot.stdout)")
        boot.imgboot.signal(SIGTERM)
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 0)
        #expect(boot.imgboot.stdout.contains("Welcome to"))
        #expect(boot.imgboot.stdout.contains("Halting system"), "console: \(boot.imgboot.stdout)")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// An init that does not react to the halt request (stopped here): the second SIGTERM kills
    /// it — status 137 — and still nothing is left.
    @Test func secondSignalKillsAHungInit() throws {
        let image = try debian()
        let boot = try Boot(image, ["--console=passive", "--log-level=notice"])
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()
        kill(try boot.initPID(), SIGSTOP)
        boot.imgboot.signal(SIGTERM)
        // The second signal only after imgboot has handled the first (signals do not queue).
        let asked = boot.imgboot.wait(upTo: Self.haltLimit) { boot.imgboot.stderr.contains("asking the init to halt") }
        try #require(asked, "stderr: \(boot.imgboot.stderr)")
        boot.imgboot.signal(SIGTERM)
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 137)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// Two SIGTERMs back to back: a halt (0) or a kill (137), whichever wins; nothing left.
    @Test func twoSignalsBackToBack() throws {
        let image = try debian()
        let boot = try Boot(image, ["--console=passive"])
        defer { boot.imgboot.kill() }
        try boot.waitUntilReady()
        boot.imgboot.signal(SIGTERM)
        boot.imgboot.signal(SIGTERM)
        let status = boot.imgboot.exitStatus(within: Self.haltLimit)
        #expect(status == 0 || status == 137, "status \(String(describing: status))")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// basic has no systemd: its /sbin/init (busybox) is booted. It sends no READY=1 and does not
    /// know SIGRTMIN+3, imgboot's halt request (busybox halts on SIGUSR1), so it runs on until the
    /// second signal kills it: 137, nothing left.
    @Test func busyboxInit() throws {
        let image = try ImageCopy("basic")
        let boot = try Boot(image, ["--console=read-only", "--log-level=notice"])
        defer { boot.imgboot.kill() }
        let prompt = boot.imgboot.wait(upTo: Self.bootLimit) {
            boot.imgboot.stdout.contains("Please press Enter to activate this console.")
        }
        try #require(prompt, "console: \(boot.imgboot.stdout); stderr: \(boot.imgboot.stderr)")
        #expect(Harness.commandName(of: try boot.initPID()) == "init")
        boot.imgboot.signal(SIGTERM)
        let asked = boot.imgboot.wait(upTo: Self.haltLimit) { boot.imgboot.stderr.contains("asking the init to halt") }
        try #require(asked, "stderr: \(boot.imgboot.stderr)")
        boot.imgboot.signal(SIGTERM)
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 137)
        #expect(!boot.imgboot.stderr.contains("is ready"))
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// busybox's `reboot` inside: it asks its init (SIGTERM), which stops everything and calls
    /// reboot(2): 133, as for systemd, and nothing left.
    @Test func busyboxReboot() throws {
        let image = try ImageCopy("basic")
        let boot = try Boot(image, ["--console=read-only", "--log-level=notice"])
        defer { boot.imgboot.kill() }
        let prompt = boot.imgboot.wait(upTo: Self.bootLimit) {
            boot.imgboot.stdout.contains("Please press Enter to activate this console.")
        }
        try #require(prompt, "console: \(boot.imgboot.stdout); stderr: \(boot.imgboot.stderr)")
        _ = try Harness.imgboot(["enter", image.machine, "--", "reboot"])
        #expect(boot.imgboot.exitStatus(within: Self.haltLimit) == 133, "stderr: \(boot.imgboot.stderr)")
        #expect(boot.imgboot.stdout.contains("Requesting system reboot"), "console: \(boot.imgboot.stdout)")
        #expect(boot.imgboot.stderr.isEmpty, "stderr: \(boot.imgboot.stderr)")
        image.leftovers.expectNone(imageUnchanged: true)
    }
}
