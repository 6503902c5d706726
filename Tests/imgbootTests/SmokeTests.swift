import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// `imgboot smoke` as CI uses it: the Debian image (systemd: booted, checks inside, failed
/// units, poweroff) and busybox images (no systemd: each check in a fresh container), its JSON
/// and JUnit reports, hung and chatty checks, several images at once. Every test runs on copies,
/// and afterwards nothing of any machine smoke made may be left (`expectNothingLeft`) and no image
/// written. The limits on waits guard against hangs; they are not speed assertions.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces: smoke boots machines and runs containers"),
       .serialized)
struct SmokeTests {
    static let bootCheck = "systemctl is-system-running --wait"
    static let fileCheck = "test -s /etc/os-release"

    func debian() throws -> ImageCopy { try ImageCopy(path: try Harness.debianImage(), name: "debian") }

    /// Debian with two checks that hold: exit 0; plain lines on stderr and nothing on stdout;
    /// with --json exactly the documented object; with --junit a testsuite for the image with
    /// testcases for the boot, each check, the failed units and the poweroff, none failed.
    @Test func debianPasses() throws {
        let image = try debian()
        let plain = try Smoke.run(["--check", Self.bootCheck, "--check", Self.fileCheck, image.path])
        #expect(plain.status == 0, "stderr: \(plain.stderr)")
        #expect(plain.stdout.isEmpty)
        #expect(plain.stderr.contains("\(image.path): passed\n"), "stderr: \(plain.stderr)")
        image.expectNothingLeft()

        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--check", Self.bootCheck, "--check", Self.fileCheck, "--json", "--junit", junit, image.path])
        #expect(out.status == 0, "stderr: \(out.stderr)")
        let report = try out.report()
        #expect(report.passed)
        try #require(report.results.count == 1)
        let result = report.results[0]
        #expect(result.image == image.path)
        #expect(result.machine.hasPrefix(image.machine + "-"), "machine \(result.machine)")
        #expect(result.passed)
        let ready = try #require(result.readySeconds, "readySeconds is a number for a booted image")
        #expect(ready > 0)
        #expect(result.checks.map(\.command) == [Self.bootCheck, Self.fileCheck])
        #expect(result.checks.map(\.exitCode) == [0, 0])
        #expect(result.checks.map(\.passed) == [true, true])
        #expect(result.checks.map(\.output) == ["running\n", ""])
        #expect(result.checks.allSatisfy { $0.seconds >= 0 })
        #expect(result.failedUnits == [])
        #expect(result.error == nil)

        let suites = try JUnit.parse(file: junit)
        try #require(suites.count == 1)
        #expect(suites[0].attributes["name"] == image.path)
        #expect(suites[0].attributes["tests"] == "5" && suites[0].attributes["failures"] == "0")
        #expect(suites[0].testcases.map { $0.attributes["name"] } ==
            ["boot", "check 1: \(Self.bootCheck)", "check 2: \(Self.fileCheck)", "no failed units", "poweroff"])
        #expect(suites[0].testcases.allSatisfy { $0.first("failure") == nil })
        #expect(suites[0].testcases[1].first("system-out")?.text == "running\n")
        image.expectNothingLeft()
    }

    /// A check that fails: exit 1; the JSON names the check, its status and output (stdout and
    /// stderr); the JUnit has a <failure> on that check's testcase alone, with the output.
    @Test func failingCheck() throws {
        let image = try debian()
        let failing = "echo to stdout; echo to stderr >&2; exit 3"
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--check", Self.fileCheck, "--check", failing, "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let report = try out.report()
        #expect(!report.passed)
        let result = try #require(report.results.first)
        #expect(!result.passed)
        #expect(result.readySeconds != nil)
        try #require(result.checks.count == 2)
        #expect(result.checks[0].passed && result.checks[0].exitCode == 0)
        #expect(result.checks[1].command == failing)
        #expect(result.checks[1].exitCode == 3)
        #expect(!result.checks[1].passed)
        #expect(result.checks[1].output == "to stdout\nto stderr\n")
        #expect(result.failedUnits == [])
        #expect(result.error == nil, "a failing check is the reason; error: \(result.error ?? "")")

        let suite = try #require(try JUnit.parse(file: junit).first)
        #expect(suite.attributes["failures"] == "1")
        let failures = suite.testcases.filter { $0.first("failure") != nil }
        try #require(failures.count == 1)
        #expect(failures[0].attributes["name"] == "check 2: \(failing)")
        #expect(failures[0].first("failure")?.attributes["message"] == "exit status 3")
        #expect(failures[0].first("failure")?.text == "to stdout\nto stderr\n")
        image.expectNothingLeft()
    }

    /// A unit that fails, started by a check that itself passes: smoke fails and lists the unit
    /// in the JSON and in the JUnit's failed-units testcase. (Type=oneshot, so that `systemctl
    /// start` returns only once the unit has failed: a simple service could fail after smoke
    /// has asked for the failed units.)
    @Test func failedUnit() throws {
        let image = try debian()
        let check = #"printf "[Service]\nType=oneshot\nExecStart=/bin/false\n" > /run/systemd/system/imgboot-broken.service && systemctl daemon-reload && systemctl start imgboot-broken.service; true"#
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--check", check, "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(!result.passed)
        #expect(result.checks.map(\.passed) == [true])
        #expect(result.failedUnits == ["imgboot-broken.service"])
        #expect(result.error == nil)

        let suite = try #require(try JUnit.parse(file: junit).first)
        let units = try #require(suite.testcases.first { $0.attributes["name"] == "no failed units" })
        #expect(units.first("failure")?.attributes["message"] == "failed units: imgboot-broken.service")
        #expect(units.first("failure")?.text == "imgboot-broken.service")
        let poweroff = try #require(suite.testcases.first { $0.attributes["name"] == "poweroff" })
        #expect(poweroff.first("failure") == nil)
        image.expectNothingLeft()
    }

    /// A check that hangs is killed at --timeout: exitCode null, not passed; the machine still
    /// powers off cleanly (a booted one) and nothing of the check runs on anywhere. The sleep is
    /// called by a path holding the copy's name, so that the leftover check finds it. (Used to
    /// leave an orphaned zombie that stalled systemd's poweroff, and the cgroup of a `run`.)
    @Test(arguments: ["debian", "basic"])
    func hangingCheckIsKilled(_ fixture: String) throws {
        let image = fixture == "debian" ? try debian() : try ImageCopy(fixture)
        let sleep = "/tmp/\(image.machine)/sleep"
        let check = "mkdir -p /tmp/\(image.machine) && ln -s \"$(which sleep)\" \(sleep) && \(sleep) 1000"
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--timeout", "5", "--check", check, "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(!result.passed)
        try #require(result.checks.count == 1)
        #expect(result.checks[0].exitCode == nil)
        #expect(!result.checks[0].passed)
        #expect(result.checks[0].output.contains("[imgboot: killed after 5"), "output: \(result.checks[0].output)")
        #expect(result.error == nil, "the machine powers off all the same; error: \(result.error ?? "")")

        let suite = try #require(try JUnit.parse(file: junit).first)
        let hung = try #require(suite.testcases.first { $0.attributes["name"] == "check 1: \(check)" })
        #expect(hung.first("failure")?.attributes["message"] == "did not end in time (killed)")
        #expect(suite.testcases.filter { $0.first("failure") != nil }.count == 1, "only the check failed")
        #expect(Harness.processes(matching: sleep).isEmpty, "the check's sleep still runs")
        image.expectNothingLeft()
    }

    /// A machine that is not ready within --timeout (here 10 ms: no boot is that fast): the
    /// image fails with an error saying so, readySeconds null, no check run; JUnit fails the
    /// boot testcase; and the machine is taken down in order, nothing left. (Used to run on
    /// unreachable by `stop` until SIGKILLed, leaving its cgroup and registration behind.)
    @Test func notReadyInTime() throws {
        let image = try debian()
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(["--timeout", "0.01", "--check", "true", "--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(!result.passed)
        #expect(result.readySeconds == nil)
        #expect(result.error == "not ready after 0.010 s")
        #expect(result.checks.isEmpty)
        let suite = try #require(try JUnit.parse(file: junit).first)
        #expect(suite.testcases.map { $0.attributes["name"] } == ["boot"])
        #expect(suite.testcases.first?.first("failure")?.attributes["message"] == "not ready after 0.010 s")
        image.expectNothingLeft()
    }

    /// smoke ended by a signal mid-run — a CI job cancelled (SIGTERM), or killed: the machines
    /// it started end with it, in order, and nothing is left. (They used to run on: a booted
    /// Debian for good.)
    @Test(arguments: [SIGTERM, SIGKILL])
    func smokeEndedBySignal(_ signal: Int32) throws {
        let images = [try debian(), try ImageCopy("basic")]
        let token = "imgboot-smoke-\(UUID().uuidString.prefix(8).lowercased())"
        let sleep = "/tmp/\(token)/sleep"
        let check = "mkdir -p /tmp/\(token) && ln -s \"$(which sleep)\" \(sleep) && \(sleep) 1000"
        let smoke = try BackgroundProcess([Harness.binary, "smoke", "--check", check] + images.map(\.path))
        defer { smoke.kill() }
        // The two sleeps themselves: their command lines start with the path (smoke's, imgboot's
        // and the shells' hold it further on).
        let running = smoke.wait(upTo: MachinesTests.bootLimit) { Harness.processes(matching: "^\(sleep) ").count == 2 }
        try #require(running, "the checks did not start; stderr: \(smoke.stderr)")
        smoke.signal(signal)
        #expect(smoke.exitStatus(within: MachinesTests.limit) == 128 + signal)
        let ended = Harness.waitUntil(upTo: MachinesTests.limit) {
            (try? MachinesTests.list())?.contains { m in images.contains { m.name.hasPrefix($0.machine) } } == false
                && Harness.processes(matching: token).isEmpty
        }
        #expect(ended, "machines still listed: \((try? MachinesTests.list())?.map(\.name) ?? [])")
        for image in images {
            #expect(Harness.waitUntil(upTo: MachinesTests.limit) { Harness.loopDevices(backing: image.path).isEmpty })
            image.expectNothingLeft()
        }
    }

    /// How smoke's children end with it (`IMGBOOT_END_WITH`: the PID of their parent), without
    /// smoke: an `imgboot run` whose parent is SIGKILLed passes SIGTERM on to its command and
    /// tears down, nothing left, and its container never saw the variable; an imgboot whose
    /// parent is not the process named (it has ended already) ends at once, by SIGTERM; a value
    /// that is no PID is refused (125).
    @Test func childEndsWithItsParent() throws {
        let image = try ImageCopy("basic")
        // `; true`: the shell forks imgboot (rather than exec it) and stays its parent.
        let script = "IMGBOOT_END_WITH=$$ \(Harness.binary) run \(image.path) -- sh -c 'env; exec sleep 1000'; true"
        let parent = try BackgroundProcess(["/bin/sh", "-c", script])
        defer { parent.kill() }
        let running = parent.wait(upTo: MachinesTests.bootLimit) { parent.stdout.contains("container=imgboot") }
        try #require(running, "the command did not start; stderr: \(parent.stderr)")
        #expect(!parent.stdout.contains("IMGBOOT_END_WITH"), "the container's environment: \(parent.stdout)")
        parent.signal(SIGKILL)
        #expect(parent.exitStatus(within: MachinesTests.limit) == 128 + SIGKILL)
        let ended = Harness.waitUntil(upTo: MachinesTests.limit) { Harness.processes(matching: image.machine).isEmpty }
        #expect(ended, "imgboot run outlived its parent")
        #expect(Harness.waitUntil(upTo: MachinesTests.limit) { Harness.loopDevices(backing: image.path).isEmpty })
        image.expectNothingLeft()

        let orphan = Harness.run(["/usr/bin/env", "IMGBOOT_END_WITH=1", Harness.binary, "inspect", image.path])
        #expect(orphan.status == 128 + SIGTERM, "stderr: \(orphan.stderr)")
        #expect(orphan.stdout.isEmpty)
        let malformed = Harness.run(["/usr/bin/env", "IMGBOOT_END_WITH=smoke", Harness.binary, "inspect", image.path])
        #expect(malformed.status == 125)
        #expect(malformed.stderr == "imgboot: IMGBOOT_END_WITH=smoke: not a process ID\n", "stderr: \(malformed.stderr)")
    }

    /// A check printing 50 MB: its output is kept within 1 MiB (its beginning and end, and a
    /// note of what was dropped), and imgboot's memory stays far from the 50 MB.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/time"), "GNU time (/usr/bin/time) is not installed"))
    func chattyCheckIsBounded() throws {
        let image = try debian()
        let rssFile = image.directory + "/maxrss"
        let out = try Smoke.run(["--check", "head -c 50000000 /dev/zero | tr '\\0' x", "--json", image.path],
                                wrappedIn: ["/usr/bin/time", "-o", rssFile, "-f", "%M"])
        #expect(out.status == 0, "stderr: \(out.stderr)")
        let check = try #require(try out.report().results.first?.checks.first)
        #expect(check.exitCode == 0)
        let output = check.output
        #expect(output.utf8.count <= (1 << 20) + 100, "\(output.utf8.count) bytes of output kept")
        #expect(output.utf8.count >= 1 << 20, "1 MiB of it is kept")
        #expect(output.hasPrefix("xxxxxxxx") && output.hasSuffix("xxxxxxxx"))
        #expect(output.contains("[… \(50_000_000 - (1 << 20)) bytes not kept …]"))
        let maxRSS = try #require(Int((try String(contentsOfFile: rssFile, encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)), "GNU time's output")
        #expect(maxRSS < 100_000, "imgboot smoke's maximum resident set: \(maxRSS) KiB")
        image.expectNothingLeft()
    }

    /// Two Debian copies and a busybox image with --jobs 3: all pass, under distinct machine
    /// names. That they ran at the same time is proven without a clock: each one's check leaves a
    /// file in a shared host directory and waits (at most ~50 s) until there are three, which
    /// only happens if the three machines are up together.
    @Test func threeImagesAtOnce() throws {
        let images = [try debian(), try debian(), try ImageCopy("basic")]
        let shared = try ScratchDirectory("imgboot-smoke-shared")
        let rendezvous = """
            touch /shared/$(cat /proc/sys/kernel/random/uuid)
            i=0
            while [ $(ls /shared | wc -l) -lt 3 ]; do i=$((i+1)); [ $i -gt 500 ] && exit 1; sleep 0.1; done
            ls /shared | wc -l
            """
        let out = try Smoke.run(["--jobs", "3", "--bind", "\(shared.path):/shared", "--check", rendezvous, "--json"]
                                + images.map(\.path))
        #expect(out.status == 0, "stderr: \(out.stderr)")
        let report = try out.report()
        #expect(report.passed)
        #expect(report.results.map(\.image) == images.map(\.path))
        for result in report.results {
            #expect(result.passed, "\(result.image): \(result.checks.map(\.output)) \(result.error ?? "")")
            #expect(result.checks.map(\.output) == ["3\n"])
        }
        #expect(Set(report.results.map(\.machine)).count == 3, "machine names: \(report.results.map(\.machine))")
        #expect(report.results.map { $0.readySeconds != nil } == [true, true, false])
        #expect((try FileManager.default.contentsOfDirectory(atPath: shared.path)).count == 3)
        for image in images { image.expectNothingLeft() }
    }

    /// An image without systemd: each check runs in a fresh container (what one writes, the next
    /// does not see); a failing one fails the image, with its status; readySeconds is null, and
    /// JUnit has a start testcase and the checks (no failed units, no poweroff).
    @Test func imageWithoutSystemd() throws {
        let image = try ImageCopy("basic")
        let checks = ["touch /fresh && test -x /bin/busybox", "test ! -e /fresh", "echo nope; exit 5"]
        let junit = image.directory + "/smoke.xml"
        let out = try Smoke.run(checks.flatMap { ["--check", $0] } + ["--json", "--junit", junit, image.path])
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(!result.passed)
        #expect(result.readySeconds == nil)
        #expect(result.checks.map(\.exitCode) == [0, 0, 5])
        #expect(result.checks.map(\.passed) == [true, true, false])
        #expect(result.checks[2].output == "nope\n")
        #expect(result.failedUnits == [] && result.error == nil)

        let suite = try #require(try JUnit.parse(file: junit).first)
        #expect(suite.testcases.map { $0.attributes["name"] } == ["start"] + checks.enumerated().map { "check \($0 + 1): \($1)" })
        #expect(suite.testcases.map { $0.first("failure") != nil } == [false, false, false, true])
        image.expectNothingLeft()

        // Only the checks that pass: it passes.
        let passing = try Smoke.run(checks.prefix(2).flatMap { ["--check", $0] } + ["--json", image.path])
        #expect(passing.status == 0, "stderr: \(passing.stderr)")
        #expect(try passing.report().passed)
        image.expectNothingLeft()
    }

    /// Without checks, an image without systemd passes when a container of it starts.
    @Test func imageWithoutSystemdAndWithoutChecks() throws {
        let image = try ImageCopy("basic")
        let out = try Smoke.run(["--json", image.path])
        #expect(out.status == 0, "stderr: \(out.stderr)")
        let result = try #require(try out.report().results.first)
        #expect(result.passed && result.checks.isEmpty && result.error == nil && result.readySeconds == nil)
        image.expectNothingLeft()
    }

    /// A malformed image among good ones: it fails with an error naming the problem — in
    /// JUnit an <error> on its start case: imgboot could not start it, so it could not be
    /// tested —; the others pass all the same; exit 1.
    @Test func malformedImageAmongGoodOnes() throws {
        let images = [try ImageCopy("basic"), try ImageCopy("overlap"), try debian()]
        let junit = images[0].directory + "/smoke.xml"
        let out = try Smoke.run(["--check", "true", "--json", "--junit", junit] + images.map(\.path))
        #expect(out.status == 1, "stderr: \(out.stderr)")
        let report = try out.report()
        #expect(!report.passed)
        #expect(report.results.map(\.passed) == [true, false, true])
        #expect(report.results[1].error == "\(images[1].path): invalid partition table: partitions 1 and 2 overlap")
        #expect(report.results[1].checks.isEmpty)
        #expect(report.results[0].error == nil && report.results[2].error == nil)

        let suites = try JUnit.parse(file: junit)
        try #require(suites.count == 3)
        let start = try #require(suites[1].testcases.first)
        #expect(start.attributes["name"] == "start")
        #expect(start.first("error")?.attributes["message"]?.contains("partitions 1 and 2 overlap") == true)
        #expect(start.first("failure") == nil)
        for image in images { image.expectNothingLeft() }
    }
}

/// Bad usage is refused before anything runs (no root needed for that): 125, the reason, the usage.
struct SmokeUsageTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var message: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let cases: [Case] = [
        .init(arguments: ["--jobs", "0", "basic.raw"], message: "--jobs 0: must be at least 1"),
        .init(arguments: ["--jobs", "-2", "basic.raw"], message: "--jobs -2: must be at least 1"),
        .init(arguments: [], message: "Missing expected argument '<images> ...'"),
        .init(arguments: ["--check", "true"], message: "Missing expected argument '<images> ...'"),
        // Every image gets a machine name of its own: smoke does not offer --machine.
        .init(arguments: ["--machine=mine", "basic.raw"], message: "Unknown option '--machine'"),
        .init(arguments: ["--timeout", "0", "basic.raw"], message: "--timeout 0.0: must be a positive number of seconds"),
        .init(arguments: ["--timeout", "-1", "basic.raw"], message: "--timeout -1.0: must be a positive number of seconds"),
        .init(arguments: ["--ready-timeout", "0", "basic.raw"], message: "--ready-timeout 0.0: must be a positive number of seconds"),
        .init(arguments: ["--check-timeout=-1", "basic.raw"], message: "--check-timeout -1.0: must be a positive number of seconds"),
        .init(arguments: ["--timeout=inf", "basic.raw"], message: "--timeout inf: must be a positive number of seconds"),
        .init(arguments: ["--shard", "0/3", "basic.raw"], message: "The value '0/3' is invalid for '--shard <I/N>'"),
        .init(arguments: ["--shard", "4/3", "basic.raw"], message: "The value '4/3' is invalid for '--shard <I/N>'"),
        .init(arguments: ["--shard", "1/0", "basic.raw"], message: "The value '1/0' is invalid for '--shard <I/N>'"),
        .init(arguments: ["--shard", "a/3", "basic.raw"], message: "The value 'a/3' is invalid for '--shard <I/N>'"),
        .init(arguments: ["--shard", "3", "basic.raw"], message: "The value '3' is invalid for '--shard <I/N>'"),
        .init(arguments: ["--shard", "1/2/3", "basic.raw"], message: "The value '1/2/3' is invalid for '--shard <I/N>'"),
    ]

    @Test(arguments: cases)
    func badUsageExits125(_ c: Case) throws {
        let out = try Harness.imgboot(["smoke"] + c.arguments)
        #expect(out.status == 125)
        #expect(out.stderr.contains("Error: \(c.message)\n"), "stderr: \(out.stderr)")
        #expect(out.stderr.contains("Usage: imgboot smoke"))
        #expect(out.stdout.isEmpty)
    }
}

// MARK: - Helpers

/// Running `imgboot smoke` and reading its reports.
enum Smoke {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String

        /// The --json report, decoded strictly (a number where a number is documented, a bool
        /// where a bool is), after checking that every object has exactly the documented keys.
        func report(sourceLocation: SourceLocation = #_sourceLocation) throws -> Report {
            let data = Data(stdout.utf8)
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any],
                                      "stdout is not a JSON object: \(stdout)", sourceLocation: sourceLocation)
            #expect(Set(object.keys) == ["passed", "results"], sourceLocation: sourceLocation)
            for result in object["results"] as? [[String: Any]] ?? [] {
                #expect(Set(result.keys) == ["image", "machine", "passed", "readySeconds", "checks", "failedUnits", "error"],
                        sourceLocation: sourceLocation)
                for check in result["checks"] as? [[String: Any]] ?? [] {
                    #expect(Set(check.keys) == ["command", "exitCode", "passed", "output", "seconds"], sourceLocation: sourceLocation)
                }
            }
            return try JSONDecoder().decode(Report.self, from: data)
        }
    }

    struct Report: Decodable {
        var passed: Bool
        var results: [Result]
    }

    struct Result: Decodable {
        var image: String
        var machine: String
        var passed: Bool
        var readySeconds: Double?
        var checks: [Check]
        var failedUnits: [String]
        var error: String?
    }

    struct Check: Decodable {
        var command: String
        var exitCode: Int32?
        var passed: Bool
        var output: String
        var seconds: Double
    }

    /// `imgboot smoke ARGS…` (optionally under a wrapper such as GNU time).
    static func run(_ arguments: [String], wrappedIn wrapper: [String] = []) throws -> Output {
        guard FileManager.default.isExecutableFile(atPath: Harness.binary) else {
            throw HarnessError("imgboot binary not found at \(Harness.binary); run `swift build` first, or set IMGBOOT_BIN")
        }
        let out = Harness.run(wrapper + [Harness.binary, "smoke"] + arguments)
        return Output(status: out.status, stdout: out.stdout, stderr: out.stderr)
    }
}

/// A JUnit report, parsed with Foundation's XMLParser: a parse that fails is malformed XML.
enum JUnit {
    /// An element: its name, attributes, text and child elements.
    final class Node {
        let name: String
        let attributes: [String: String]
        var text = ""
        var children: [Node] = []

        init(name: String, attributes: [String: String]) {
            self.name = name
            self.attributes = attributes
        }

        func first(_ name: String) -> Node? { children.first { $0.name == name } }
        var testcases: [Node] { children.filter { $0.name == "testcase" } }
    }

    final class Builder: NSObject, XMLParserDelegate {
        var stack = [Node(name: "#document", attributes: [:])]

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            let node = Node(name: elementName, attributes: attributeDict)
            stack.last?.children.append(node)
            stack.append(node)
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
            stack.removeLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }
    }

    /// The <testsuite> elements of the <testsuites> document in `file`.
    static func parse(file: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [Node] {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        let parser = XMLParser(data: data)
        let builder = Builder()
        parser.delegate = builder
        let parsed = parser.parse()
        try #require(parsed, "not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")\n\(String(decoding: data, as: UTF8.self))",
                     sourceLocation: sourceLocation)
        let root = try #require(builder.stack.first?.children.first, sourceLocation: sourceLocation)
        #expect(root.name == "testsuites", sourceLocation: sourceLocation)
        let suites = root.children.filter { $0.name == "testsuite" }
        #expect(suites.count == root.children.count, "only testsuites in testsuites", sourceLocation: sourceLocation)
        for suite in suites {
            #expect(suite.attributes["tests"] == String(suite.testcases.count), sourceLocation: sourceLocation)
            #expect(suite.attributes["failures"] == String(suite.testcases.filter { $0.first("failure") != nil }.count),
                    sourceLocation: sourceLocation)
            #expect(suite.attributes["errors"] == String(suite.testcases.filter { $0.first("error") != nil }.count),
                    sourceLocation: sourceLocation)
        }
        return suites
    }
}

extension ImageCopy {
    /// Nothing left of any machine of this copy — smoke names its machines after the image
    /// (`NAME-XXXX`, and `NAME-XXXX-N` for each check's container; a second default name
    /// `NAME-2`): no registry entry, tree directory or cgroup whose name starts with the copy's,
    /// and what `Leftovers` checks (no loop device, mount or process; the image unchanged).
    /// What is left is removed, so that one failure does not spill into the next test.
    func expectNothingLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        leftovers.expectNone(imageUnchanged: true, sourceLocation: sourceLocation)
        let directories = ["/run/imgboot/machines", "/run/imgboot/roots", "/sys/fs/cgroup/unified/imgboot",
                           "/sys/fs/cgroup/imgboot", "/sys/fs/cgroup/devices/imgboot"]
        let traces = directories.flatMap { dir in
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(machine) }.map { "\(dir)/\($0)" }
        }
        #expect(traces.isEmpty, "left of the machines: \(traces)", sourceLocation: sourceLocation)
        for trace in traces { Self.remove(trace) }
    }

    /// Removes a file, or a directory depth-first with rmdir (a cgroup's files cannot be
    /// removed, only its directories: systemd's sub-cgroups in a machine's).
    private static func remove(_ path: String) {
        if unlink(path) == 0 { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            var info = stat()
            if lstat("\(path)/\(name)", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { remove("\(path)/\(name)") }
        }
        rmdir(path)
    }
}
