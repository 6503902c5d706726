import Foundation
import Testing

/// `imgboot list`, `enter` and `stop` against running machines — a booted Debian and a `run`
/// container — name clashes, and the entries of machines that were killed. Machines are named
/// after their image copy (`ImageCopy.machine` and a suffix), so that `expectNothingLeft` finds
/// whatever of them is left. The limits on waits guard against hangs; they are not speed
/// assertions.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces: machines to list, enter and stop"),
       .serialized)
struct MachinesTests {
    /// Long enough for a cold systemd on a loaded machine; a boot that takes longer is hung.
    static let bootLimit = 120.0
    /// A machine that has not stopped (or started) in this time is not going to.
    static let limit = 60.0

    /// One entry of `imgboot list --json`.
    struct Listed: Decodable, Equatable {
        var name: String
        var kind: String
        var mode: String
        var leader: Int32
        var supervisor: Int32
        var image: String
        var started: Int
        var cgroup: String?
        /// "BASE:COUNT", or nil without a user namespace.
        var users: String?
    }

    static func list(sourceLocation: SourceLocation = #_sourceLocation) throws -> [Listed] {
        let out = try Harness.imgboot(["list", "--json"])
        try #require(out.status == 0, "imgboot list --json: \(out.stderr)", sourceLocation: sourceLocation)
        return try JSONDecoder().decode([Listed].self, from: Data(out.stdout.utf8))
    }

    /// The machines `imgboot list` shows (the table), by name: each row's columns.
    static func table() throws -> [String: [String]] {
        let out = try Harness.imgboot(["list"])
        #expect(out.status == 0, "imgboot list: \(out.stderr)")
        let rows = out.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        return Dictionary(rows.dropFirst().compactMap { row in row.first.map { ($0, row) } }, uniquingKeysWith: { a, _ in a })
    }

    /// Waits until `imgboot list` has machine `name` with its leader (the container's PID 1,
    /// recorded once it exists), while `process` runs.
    static func waitUntilListed(_ name: String, _ process: BackgroundProcess,
                                sourceLocation: SourceLocation = #_sourceLocation) throws -> Listed {
        var found: Listed?
        _ = process.wait(upTo: limit) {
            found = (try? list())?.first { $0.name == name && $0.leader > 0 }
            return found != nil
        }
        return try #require(found, "\(name) is not listed; stderr: \(process.stderr)", sourceLocation: sourceLocation)
    }

    /// A booted Debian and a `run` container: `list` shows both (kind, mode, leader, image);
    /// `enter` runs commands inside with their exit status and stdin; `stop` ends each — the
    /// boot by a clean poweroff (0), the run's command by SIGTERM (143) — and nothing is left.
    @Test func listEnterStop() throws {
        let debian = try ImageCopy(path: try Harness.debianImage(), name: "debian")
        let basic = try ImageCopy("basic")
        let booted = debian.machine + "-booted", ran = basic.machine + "-ran"
        let boot = try BackgroundProcess([Harness.binary, "boot", "--console=passive", "--machine=\(booted)", debian.path])
        defer { boot.kill() }
        let run = try BackgroundProcess([Harness.binary, "run", "--machine=\(ran)", basic.path, "--", "sleep", "1000"])
        defer { run.kill() }
        let ready = boot.wait(upTo: Self.bootLimit) { boot.stderr.contains("imgboot: \(booted) is ready") }
        try #require(ready, "no ready line; stderr: \(boot.stderr)")

        // list --json: both, as documented.
        let bootEntry = try Self.waitUntilListed(booted, boot)
        let runEntry = try Self.waitUntilListed(ran, run)
        #expect(bootEntry.kind == "boot" && runEntry.kind == "run")
        #expect(bootEntry.mode == "overlay" && runEntry.mode == "overlay")
        #expect(bootEntry.leader == boot.children().first, "the leader is the container's PID 1, imgboot's child")
        #expect(runEntry.leader == run.children().first)
        #expect(bootEntry.supervisor == boot.pid && runEntry.supervisor == run.pid)
        #expect(bootEntry.image == debian.path && runEntry.image == basic.path)
        #expect(bootEntry.cgroup == Harness.machineCgroup(booted) && bootEntry.cgroup != nil)
        #expect(runEntry.cgroup == Harness.machineCgroup(ran) && runEntry.cgroup != nil)
        let now = Int(Date().timeIntervalSince1970)
        #expect(bootEntry.started > 0 && bootEntry.started <= now + 1)

        // list: the table says the same.
        let table = try Self.table()
        let bootRow = try #require(table[booted]), runRow = try #require(table[ran])
        #expect(bootRow.count == 7 && runRow.count == 7, "\(bootRow) \(runRow)")
        // USERS: the range, BASE-LAST, as `list --json` has it as BASE:COUNT.
        for (row, entry) in [(bootRow, bootEntry), (runRow, runEntry)] {
            let range = try #require(entry.users?.split(separator: ":").compactMap { UInt32($0) }, "\(entry)")
            #expect(range.count == 2 && row[4] == "\(range[0])-\(range[0] + range[1] - 1)", "\(row)")
        }
        #expect([bootRow[1], bootRow[2], bootRow[3], bootRow.last] == ["boot", "overlay", String(bootEntry.leader), debian.path])
        #expect([runRow[1], runRow[2], runRow[3], runRow.last] == ["run", "overlay", String(runEntry.leader), basic.path])

        // enter: inside the machine, with the command's exit status.
        let state = try Harness.imgboot(["enter", booted, "--", "systemctl", "is-system-running", "--wait"])
        #expect(state.status == 0 && state.stdout == "running\n", "\(state.stderr)")
        let inside = try Harness.imgboot(["enter", booted, "--", "sh", "-c", "echo $container $HOME; cat /proc/1/comm"])
        #expect(inside.status == 0 && inside.stdout == "imgboot /root\nsystemd\n", "\(inside.stderr)")
        #expect(try Harness.imgboot(["enter", booted, "--", "sh", "-c", "exit 3"]).status == 3)
        let missing = try Harness.imgboot(["enter", booted, "--", "/nonexistent"])
        #expect(missing.status == 127)
        #expect(missing.stderr == "imgboot: /nonexistent: command not found\n")
        let cat = try Harness.imgboot(["enter", booted, "--", "cat"], stdin: "hi\n")
        #expect(cat.status == 0 && cat.stdout == "hi\n", "\(cat.stderr)")
        let fixture = try Harness.imgboot(["enter", ran, "--", "cat", "/etc/imgboot-fixture"])
        #expect(fixture.status == 0 && fixture.stdout == "basic\n", "\(fixture.stderr)")

        // enter of a machine that does not run: 125 and one line.
        let unknown = try Harness.imgboot(["enter", booted + "-nonexistent", "--", "true"])
        #expect(unknown.status == 125)
        #expect(unknown.stderr == "imgboot: \(booted)-nonexistent: no such machine is running (see imgboot list)\n")

        // stop: the booted machine powers off cleanly, the run's command ends by SIGTERM.
        let stopBoot = try Harness.imgboot(["stop", booted])
        #expect(stopBoot.status == 0, "\(stopBoot.stderr)")
        #expect(boot.exitStatus(within: Self.limit) == 0, "stderr: \(boot.stderr)")
        let stopRun = try Harness.imgboot(["stop", ran])
        #expect(stopRun.status == 0, "\(stopRun.stderr)")
        #expect(run.exitStatus(within: Self.limit) == 143, "stderr: \(run.stderr)")
        let names = try Self.list().map(\.name)
        #expect(!names.contains(booted) && !names.contains(ran), "still listed: \(names)")
        #expect(try Self.table()[booted] == nil)
        debian.expectNothingLeft()
        basic.expectNothingLeft()
    }

    /// A name in use: --machine with it is refused (125, one line), for run and boot alike.
    /// Without --machine, containers of one image run side by side as NAME and NAME-2.
    @Test func nameClash() throws {
        let image = try ImageCopy("basic")
        let name = image.machine + "-taken"
        let first = try BackgroundProcess([Harness.binary, "run", "--machine=\(name)", image.path, "--", "sleep", "1000"])
        defer { first.kill() }
        _ = try Self.waitUntilListed(name, first)
        for command in [["run"], ["boot", "--console=passive"]] {
            let clash = try Harness.imgboot(command + ["--machine=\(name)", image.path, "--", "true"])
            #expect(clash.status == 125)
            #expect(clash.stderr == "imgboot: \(image.path): machine \(name) is already running (choose another --machine)\n")
        }
        #expect(try Harness.imgboot(["stop", name]).status == 0)
        #expect(first.exitStatus(within: Self.limit) == 143)

        // Default names: the image's, then with a suffix.
        let a = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sleep", "1000"])
        defer { a.kill() }
        _ = try Self.waitUntilListed(image.machine, a)
        let b = try BackgroundProcess([Harness.binary, "run", image.path, "--", "sleep", "1000"])
        defer { b.kill() }
        let second = try Self.waitUntilListed(image.machine + "-2", b)
        #expect(second.supervisor == b.pid)
        let listed = try Self.list().filter { $0.image == image.path }
        #expect(listed.map(\.name) == [image.machine, image.machine + "-2"])
        #expect(listed.map(\.supervisor) == [a.pid, b.pid])
        for machine in [image.machine, image.machine + "-2"] {
            #expect(try Harness.imgboot(["stop", machine]).status == 0)
        }
        #expect(a.exitStatus(within: Self.limit) == 143)
        #expect(b.exitStatus(within: Self.limit) == 143)
        image.expectNothingLeft()
    }

    /// A machine whose imgboot was SIGKILLed: its entry stays behind (no one could remove it),
    /// but `list` does not show it and removes it, `enter` does not find it, and its name can
    /// be used again — that run then cleans up the dead one's cgroup and tree directory too.
    @Test func staleEntries() throws {
        let image = try ImageCopy("basic")
        let name = image.machine + "-stale"
        let run = try BackgroundProcess([Harness.binary, "run", "--machine=\(name)", image.path, "--", "sleep", "1000"])
        defer { run.kill() }
        _ = try Self.waitUntilListed(name, run)
        run.signal(SIGKILL)
        #expect(run.exitStatus(within: Self.limit) == 137)
        // The kernel takes the container down with imgboot, and the loop devices (autoclear).
        #expect(Harness.waitUntil(upTo: Self.limit) { Harness.machineProcesses(image.machine).isEmpty })
        #expect(Harness.waitUntil(upTo: Self.limit) { Harness.loopDevices(backing: image.path).isEmpty })

        #expect(try Self.table()[name] == nil)
        #expect(!(try Self.list()).contains { $0.name == name })
        #expect(!FileManager.default.fileExists(atPath: "\(MachinesTests.registry)/\(name)"), "the stale entry is removed")
        let enter = try Harness.imgboot(["enter", name, "--", "true"])
        #expect(enter.status == 125 && enter.stderr.contains("no such machine is running"), "\(enter.stderr)")

        let again = try Harness.imgboot(["run", "--machine=\(name)", image.path, "--", "hostname"])
        #expect(again.status == 0 && again.stdout == "\(name)\n", "\(again.stderr)")
        image.expectNothingLeft()
    }

    static let registry = "/run/imgboot/machines"
}
