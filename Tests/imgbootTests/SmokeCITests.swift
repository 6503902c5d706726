import Foundation
import Testing

/// smoke as a CI server sees it (issue 13): JUnit names it can track from run to run, errors
/// apart from failures, why units failed, reports checked before anything runs, shards of a
/// matrix, separate timeouts, a clean console log, and a display that fits the terminal. In
/// SmokeTests' serialized suite.
extension SmokeTests {
    /// The same image copy tested twice: each run has a machine name of its own, yet the JUnit
    /// names every suite and case the same — the class from the image's file name.
    @Test func junitNamesAreStableAcrossRuns() throws {
        let image = try debian()
        var runs: [(machine: String, cases: [[String?]])] = []
        for run in 1...2 {
            let junit = image.directory + "/smoke-\(run).xml"
            let out = try Smoke.run(["--check", Self.fileCheck, "--json", "--junit", junit, image.path])
            #expect(out.status == 0, "stderr: \(out.stderr)")
            let machine = try #require(try out.report().results.first?.machine)
            let suite = try #require(try JUnit.parse(file: junit).first)
            runs.append((machine, suite.testcases.map { [suite.attributes["name"], $0.attributes["classname"], $0.attributes["name"]] }))
        }
        #expect(runs[0].machine != runs[1].machine, "two runs, two machine names")
        #expect(runs[0].cases == runs[1].cases)
        #expect(runs[0].cases.map { $0[1] } == Array(repeating: "imgboot.smoke.\(image.machine)", count: 4))
        #expect(runs[0].cases.map { $0[2] } == ["boot", "check 1: \(Self.fileCheck)", "no failed units", "poweroff"])
        image.expectNothingLeft()
    }

    /// An image imgboot cannot start (here: a bind whose source does not exist) is an <error>
    /// on its start case, not a failure and not a passing start; the checks never ran.
    @Test func imageThatCannotStartIsAnError() throws {
        let image = try ImageCopy("basic")
        let missing = "/nonexistent-\(image.machine)"
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--bind", "\(missing):/mnt", "--check", "true", "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(!result.passed && result.checks.isEmpty)
        #expect(result.error?.contains(missing) == true, "error: \(result.error ?? "nil")")
        let suite = try #require(try JUnit.parse(file: junit).first)
        #expect(suite.attributes["errors"] == "1" && suite.attributes["failures"] == "0")
        #expect(suite.testcases.map { $0.attributes["name"] } == ["start"])
        let error = try #require(suite.testcases.first?.first("error"), "no <error> on the start case")
        #expect(error.attributes["message"] == result.error)
        #expect(suite.testcases.first?.first("failure") == nil)
        image.expectNothingLeft()
    }

    /// A unit that fails (a transient unit started by a check): the failed-units case fails,
    /// and its <system-out> holds the unit's `systemctl status` and the boot's journal, as
    /// plain text.
    @Test func failedUnitCarriesStatusAndJournal() throws {
        let image = try debian()
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--check", "systemd-run --wait --unit=broken false; true", "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        #expect(try out.report().results.first?.failedUnits == ["broken.service"])
        let suite = try #require(try JUnit.parse(file: junit).first)
        let units = try #require(suite.testcases.first { $0.attributes["name"] == "no failed units" })
        #expect(units.first("failure")?.attributes["message"] == "failed units: broken.service")
        let output = try #require(units.first("system-out")?.text, "no <system-out> on the failed-units case")
        #expect(output.contains("$ systemctl status --no-pager --full --lines=30 -- broken.service\n"), "\(output)")
        #expect(output.contains("broken.service - /usr/bin/false"), "\(output)")
        #expect(output.contains("Active: failed"), "\(output)")
        #expect(output.contains("$ journalctl -b --no-pager"), "\(output)")
        #expect(output.contains("broken.service: Main process exited, code=exited, status=1/FAILURE"), "\(output)")
        #expect(output.contains("Started broken.service"), "the journal: \(output)")
        #expect(!output.contains("\u{1b}") && !output.contains("\r"))
        image.expectNothingLeft()
    }

    /// The boot's console as smoke keeps it (here in the boot case of a machine not ready in
    /// time, which then powers off): systemd's status lines, without colour codes and without
    /// a terminal's carriage returns.
    @Test func bootLogIsPlainText() throws {
        let image = try debian()
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--ready-timeout", "0.2", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let suite = try #require(try JUnit.parse(file: junit).first)
        let log = try #require(suite.testcases.first?.first("failure")?.text)
        #expect(log.contains("[  OK  ] "), "console: \(log)")
        #expect(!log.contains("\u{1b}"), "colour codes in: \(log)")
        #expect(!log.contains("\r"), "carriage returns in: \(log)")
        image.expectNothingLeft()
    }

    /// --ready-timeout and --check-timeout apart: a short one for readiness fails the boot while
    /// checks may take long; a short one for checks ends a check while readiness may take long.
    @Test func readyAndCheckTimeoutsAreSeparate() throws {
        let debian = try debian()
        let notReady = try Smoke.run(["--ready-timeout", "0.01", "--check-timeout", "600", "--check", "true", "--json", debian.path])
        #expect(notReady.status == 1)
        #expect(try notReady.report().results.first?.error == "not ready after 0.010 s")
        debian.expectNothingLeft()

        let basic = try ImageCopy("basic")
        let hung = try Smoke.run(["--ready-timeout", "600", "--check-timeout", "1", "--check", "sleep 30", "--json", basic.path])
        #expect(hung.status == 1)
        let check = try #require(try hung.report().results.first?.checks.first)
        #expect(check.exitCode == nil && check.output.contains("[imgboot: killed after 1"), "\(check.output)")
        basic.expectNothingLeft()
    }

    /// A JUnit path that cannot be written — its directory missing, or a directory itself — is
    /// refused before any image runs: status 125, one line naming it, nothing on stdout, and
    /// nothing started (no loop device or machine of the image while smoke ran, and the check,
    /// which would leave a file on the host, never ran).
    @Test(arguments: ["/nonexistent-imgboot/dir/x.xml", "DIRECTORY"])
    func unwritableJUnitIsRefusedFirst(_ junitPath: String) throws {
        let image = try ImageCopy("basic")
        let shared = try ScratchDirectory("imgboot-smoke-trace")
        let junit = junitPath == "DIRECTORY" ? image.directory : junitPath
        let smoke = try BackgroundProcess([Harness.binary, "smoke", "--json", "--junit", junit, "--bind", "\(shared.path):/shared",
                                           "--check", "touch /shared/ran", image.path])
        defer { smoke.kill() }
        var seen: [String] = []
        while smoke.isRunning {
            seen += Harness.loopDevices(backing: image.path)
            seen += Harness.machineFiles(image.machine) + ((try? FileManager.default.contentsOfDirectory(atPath: "/run/imgboot/machines")) ?? [])
                .filter { $0.hasPrefix(image.machine) }
            usleep(5_000)
        }
        #expect(smoke.exitStatus(within: MachinesTests.limit) == 125)
        #expect(smoke.stderr == "imgboot: \(junit): cannot write the JUnit report: \(junitPath == "DIRECTORY" ? "Is a directory" : "No such file or directory")\n")
        #expect(smoke.stdout.isEmpty)
        #expect(seen.isEmpty, "started anyway: \(seen)")
        #expect(!FileManager.default.fileExists(atPath: shared.path + "/ran"), "the check ran")
        image.expectNothingLeft()
    }

    /// The JSON is printed even when the JUnit file cannot be written at the end (/dev/full:
    /// opened, but full); the status then says imgboot failed.
    @Test func jsonSurvivesAJUnitThatCannotBeWritten() throws {
        let image = try ImageCopy("basic")
        let out = try Smoke.run(["--json", "--junit", "/dev/full", image.path])
        #expect(out.status == 125)
        #expect(try out.report().results.map(\.passed) == [true])
        #expect(out.stderr.hasSuffix("imgboot: /dev/full: cannot write the JUnit report: No space left on device\n"), "\(out.stderr)")
        image.expectNothingLeft()
    }

    /// --shard over six copies with N = 3: the three shards test each image exactly once; a
    /// shard's share does not change with the order of the command line or the other images.
    @Test func shardsCoverEachImageOnce() throws {
        let images = try (1...6).map { _ in try ImageCopy("basic") }
        let paths = images.map(\.path)
        var shares: [[String]] = []
        for i in 1...3 {
            let out = try Smoke.run(["--shard", "\(i)/3", "--json"] + paths)
            #expect(out.status == 0, "stderr: \(out.stderr)")
            shares.append(try out.report().results.map(\.image))
        }
        #expect(shares.flatMap { $0 }.sorted() == paths.sorted(), "shares: \(shares)")
        #expect(Set(shares.flatMap { $0 }).count == paths.count, "an image in two shards: \(shares)")
        for (i, share) in shares.enumerated() {
            let others = Array(paths.reversed().filter { !share.contains($0) }.prefix(2))
            let again = try Smoke.run(["--shard", "\(i + 1)/3", "--json"] + share.reversed() + others)
            #expect(again.status == 0, "stderr: \(again.stderr)")
            #expect(try again.report().results.map(\.image).sorted() == share.sorted(), "shard \(i + 1)/3")
        }
        for image in images { image.expectNothingLeft() }
    }

    /// On a terminal: with TERM=dumb, plain lines (no cursor movement); otherwise live lines,
    /// each within the terminal's width, and no more of them than its rows (here 40x6, seven
    /// images: a line counting them, and the latest).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "script (bsdutils) is not installed"))
    func displayFitsTheTerminal() throws {
        let images = try (1...7).map { _ in try ImageCopy("basic") }
        let command = ([Harness.binary, "smoke", "--jobs", "2"] + images.map(\.path)).joined(separator: " ")

        let dumb = Harness.run(["/usr/bin/env", "TERM=dumb", "/usr/bin/script", "-qec", "stty cols 40 rows 6; \(command)", "/dev/null"])
        #expect(dumb.status == 0, "\(dumb.stdout)")
        #expect(!dumb.stdout.contains("\u{1b}"), "escape sequences with TERM=dumb: \(dumb.stdout)")
        for image in images { #expect(dumb.stdout.contains("\(image.path): passed\r\n")) }

        let live = Harness.run(["/usr/bin/env", "TERM=xterm", "/usr/bin/script", "-qec", "stty cols 40 rows 6; \(command)", "/dev/null"])
        #expect(live.status == 0, "\(live.stdout)")
        let frames = live.stdout.components(separatedBy: "\u{1b}[J").dropLast()
        #expect(frames.count >= images.count, "live frames: \(live.stdout)")
        for frame in frames {
            // (Split by scalars: "\r\n" is a single Character.)
            let lines = frame.components(separatedBy: "\u{1b}[2K").dropFirst()
                .map { String(String.UnicodeScalarView($0.unicodeScalars.prefix { $0 != "\r" })) }
            #expect(lines.count <= 5, "a frame taller than the terminal: \(lines)")
            #expect(lines.allSatisfy { $0.count <= 39 }, "a line wider than the terminal: \(lines)")
        }
        let last = frames.last?.components(separatedBy: "\u{1b}[2K").dropFirst()
            .map { String(String.UnicodeScalarView($0.unicodeScalars.prefix { $0 != "\r" })) } ?? []
        #expect(last.first?.contains("of 7: 7 passed, 0 failed") == true, "last frame: \(last)")
        // Too narrow for the paths: the file names, and the latest step in sight.
        #expect(last.dropFirst().allSatisfy { $0.hasPrefix("basic-") && $0.hasSuffix("passed") }, "last frame: \(last)")
        for image in images { image.expectNothingLeft() }
    }
}
