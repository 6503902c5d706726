#if canImport(Glibc)
import Glibc
#endif
import Boot
import Dissect
import Support

/// One image's smoke test, as reported.
public struct SmokeResult: Sendable {
    public var image: String
    public var machine: String
    public var passed: Bool
    /// Seconds from starting `imgboot boot` to the machine's READY=1, for images booted with
    /// systemd; nil otherwise.
    public var readySeconds: Double?
    public var checks: [CheckResult]
    public var failedUnits: [String]
    /// `systemctl status` of the failed units and the boot's journal, when a unit failed.
    public var unitDiagnostics: String
    /// For booted images: whether it powered off cleanly.
    public var poweredOff: Bool?
    /// Why it failed when a check does not say (it did not boot, did not become ready, …).
    public var error: String?
    /// imgboot could not start a container of the image at all (its own failure: a malformed
    /// image, a bad option, …): the test could not be run, which JUnit calls an error.
    public var couldNotStart: Bool
    /// Whether it was booted (systemd) rather than run.
    public var booted: Bool
    /// Wall time of the whole test.
    public var seconds: Double
    /// What imgboot and the machine's console said while booting, for a failure's details.
    public var bootLog: String
}

public struct CheckResult: Sendable {
    public var command: String
    /// nil when it did not end before the timeout (it was killed).
    public var exitCode: Int32?
    public var passed: Bool
    public var output: String
    public var seconds: Double
}

/// What happens to an image, as it happens (for the live display).
public enum SmokeEvent: Sendable {
    case booting
    case running
    case ready(Double)
    case checks(done: Int, total: Int)
    case poweringOff
    case finished(passed: Bool)
}

/// Smoke-tests images: boots those with systemd, waits for READY=1, runs the checks inside,
/// collects failed units, powers off; runs the checks in fresh containers for the others. Every
/// step is a child imgboot process (`boot`, `enter`, `stop`, `run`), so a failure of one image
/// never disturbs another; what smoke learns from them, it learns through their exit status
/// and the notify protocol, never by reading what they print.
public struct SmokeRunner: Sendable {
    public var executable: String
    /// BOOT-OPTIONS passed to `boot` and `run` as given (`--volatile=state`, `--setenv=…`, …).
    public var bootArguments: [String]
    public var checks: [String]
    /// How long a machine may take to become ready.
    public var readyTimeout: Double
    /// How long each check may run.
    public var checkTimeout: Double
    /// How long a machine may take to power off before it is killed.
    public var stopTimeout: Double
    public var jobs: Int

    public init(executable: String, bootArguments: [String], checks: [String], readyTimeout: Double, checkTimeout: Double,
                stopTimeout: Double, jobs: Int) {
        self.executable = executable
        self.bootArguments = bootArguments
        self.checks = checks
        self.readyTimeout = readyTimeout
        self.checkTimeout = checkTimeout
        self.stopTimeout = stopTimeout
        self.jobs = jobs
    }

    /// Tests every image, `jobs` at a time; `progress` hears every event (from any thread).
    public func run(images: [String], progress: @escaping @Sendable (Int, SmokeEvent) -> Void) -> [SmokeResult] {
        let runner = self
        return runJobs(count: images.count, width: jobs) { index in
            runner.test(images[index]) { progress(index, $0) }
        }
    }

    func test(_ image: String, progress: (SmokeEvent) -> Void) -> SmokeResult {
        let start = monotonicSeconds()
        // The image's default name, cut so that the random suffix and, for an image without
        // systemd, each check's `-N` still fit in a hostname, however long the file name.
        let room = "-".count + Self.randomLength + "-\(max(1, checks.count))".count
        let machine = ContainerSpec.defaultMachineName(image: image, reserving: room) + "-" + shortRandom()
        var result = SmokeResult(image: image, machine: machine, passed: false, readySeconds: nil, checks: [],
                                 failedUnits: [], unitDiagnostics: "", poweredOff: nil, error: nil, couldNotStart: false,
                                 booted: false, seconds: 0, bootLog: "")
        defer { progress(.finished(passed: result.passed)) }

        do {
            let listener = try NotifyListener()
            // `boot` itself says whether the image has systemd (it is booted) or not (then each
            // check runs in a container of its own): the image is looked into once, by the
            // process that uses it.
            if boot(Self.argument(image), machine: machine, listener: listener, into: &result, progress: progress) == .noSystemd {
                progress(.running)
                runChecks(Self.argument(image), machine: machine, listener: listener, into: &result, progress: progress)
            }
        } catch {
            result.error = error.description
            result.couldNotStart = true
        }
        result.passed = result.error == nil && result.checks.allSatisfy(\.passed) && result.failedUnits.isEmpty
            && (result.poweredOff ?? true)
        result.seconds = monotonicSeconds() - start
        return result
    }

    // MARK: With systemd

    enum BootOutcome { case booted, noSystemd }

    private func boot(_ image: String, machine: String, listener: NotifyListener, into result: inout SmokeResult,
                      progress: (SmokeEvent) -> Void) -> BootOutcome {
        progress(.booting)
        let start = monotonicSeconds()
        // The console's output and imgboot's stderr are kept (bounded) for a failure's details.
        // --init=systemd: an image without systemd is not booted with its /sbin/init (which
        // would never say READY=1) but refused, and `no-init` tells smoke to run it instead.
        let argv = [executable, "boot", "--console=read-only", "--init=systemd", "--notify-ready=yes", "--machine=\(machine)"]
            + bootArguments + colourless + [image]
        listener.forget()
        let boot: ChildProcess
        do {
            boot = try ChildProcess(argv, notifySocket: listener.address)
        } catch {
            result.error = error.description
            result.couldNotStart = true
            return .booted
        }
        listener.listen(to: boot.pid)

        // Until READY=1, imgboot's failure, the end of `boot`, or the deadline.
        let deadline = start + readyTimeout
        var ready: Double? = nil
        var failure: NotifyListener.Message? = nil
        var status: Int32? = nil
        while ready == nil && failure == nil && status == nil && monotonicSeconds() < deadline {
            status = boot.wait(until: deadline, alongside: listener) { listener.messages.isEmpty }
            listener.drain()
            for message in listener.take() {
                if message.isReady && ready == nil { ready = monotonicSeconds() - start }
                if message.failure != nil { failure = message }
            }
        }
        if let failure {
            // imgboot has said why it fails and is tearing down: let it finish.
            _ = boot.wait(until: monotonicSeconds() + stopTimeout + 15, alongside: listener)
            result.bootLog = plainLines(boot.captured.text)
            if failure.failure == BootError.Code.noInit.rawValue { return .noSystemd }
            result.error = failure.status ?? "imgboot boot failed" + lastLine(result.bootLog)
            result.couldNotStart = true
            return .booted
        }
        result.booted = true
        if ready == nil, let status {
            result.bootLog = plainLines(boot.captured.text)
            result.error = "imgboot boot ended with status \(status) before the machine was ready" + lastLine(result.bootLog)
            return .booted
        }
        if ready == nil { result.error = "not ready after \(formatSeconds(readyTimeout)) s" }
        result.readySeconds = ready
        if let ready { progress(.ready(ready)) }

        if ready != nil {
            for (i, check) in checks.enumerated() {
                result.checks.append(runCheck(check, argv: enter(machine, ["/bin/sh", "-c", check]), listener: listener))
                progress(.checks(done: i + 1, total: checks.count))
            }
            let units = runCheck("systemctl --failed", argv: enter(machine, ["systemctl", "--failed", "--no-legend", "--plain", "--no-pager"]),
                                 listener: listener)
            result.failedUnits = units.output.split(separator: "\n").compactMap { line in
                line.split(separator: " ").first.map(String.init).flatMap { $0.contains(".") ? $0 : nil }
            }
            if !result.failedUnits.isEmpty {
                result.unitDiagnostics = diagnose(machine, units: result.failedUnits, listener: listener)
            }
        }

        progress(.poweringOff)
        let stop = try? ChildProcess([executable, "stop", "--timeout", formatSeconds(stopTimeout), machine])
        let stopped = stop?.wait(until: monotonicSeconds() + stopTimeout + 15, alongside: listener)
        // 0 or 1: stop reached the machine (and killed it, if need be); otherwise it could not
        // (not ready in time: its init not yet registered), and nothing would end the boot.
        status = boot.wait(until: monotonicSeconds() + (stopped == 0 || stopped == 1 ? 15 : 0.5), alongside: listener)
        // Ask imgboot itself, so that it tears down in order: the first SIGTERM halts the init
        // (or abandons the setup), the second kills the init. SIGKILL to imgboot is the last
        // resort: it leaves the machine's cgroup, tree directory and registration behind.
        for (signal, grace) in [(SIGTERM, 15.0), (SIGTERM, 10.0), (SIGKILL, 10.0)] where status == nil {
            boot.signal(signal)
            status = boot.wait(until: monotonicSeconds() + grace, alongside: listener)
        }
        result.bootLog = plainLines(boot.captured.text)
        if ready != nil {
            result.poweredOff = stopped == 0 && status == 0
            if result.poweredOff == false && result.error == nil {
                result.error = "did not power off cleanly (imgboot boot ended with \(status.map(String.init) ?? "no status"))"
                    + lastLine(result.bootLog)
            }
        }
        return .booted
    }

    /// `--setenv=SYSTEMD_COLORS=0`, unless the user set it: the console is kept as text for a
    /// file or a CI page, where colour codes are noise.
    private var colourless: [String] {
        bootArguments.contains { $0.hasPrefix("--setenv=SYSTEMD_COLORS=") } ? [] : ["--setenv=SYSTEMD_COLORS=0"]
    }

    private func enter(_ machine: String, _ command: [String]) -> [String] {
        [executable, "enter", machine, "--"] + command
    }

    /// Why units failed: their `systemctl status` and the boot's journal, each bounded.
    private func diagnose(_ machine: String, units: [String], listener: NotifyListener) -> String {
        // `--`: a unit's name comes from the machine and must not be read as an option.
        let status = runCheck("systemctl status", argv: enter(machine, ["systemctl", "status", "--no-pager", "--full", "--lines=\(Self.statusLines)", "--"] + units),
                              listener: listener, limit: Self.diagnosticsLimit)
        let journal = runCheck("journalctl", argv: enter(machine, ["journalctl", "-b", "--no-pager", "--lines=\(Self.journalLines)"]),
                               listener: listener, limit: Self.diagnosticsLimit)
        return "$ systemctl status --no-pager --full --lines=\(Self.statusLines) -- \(units.joined(separator: " "))\n" + status.output
            + (status.output.hasSuffix("\n") || status.output.isEmpty ? "" : "\n")
            + "\n$ journalctl -b --no-pager --lines=\(Self.journalLines)\n" + journal.output
    }

    // MARK: Without systemd

    private func runChecks(_ image: String, machine: String, listener: NotifyListener, into result: inout SmokeResult,
                           progress: (SmokeEvent) -> Void) {
        // Without a check, the image passes when a container of it starts at all.
        let commands = checks.isEmpty ? ["true"] : checks
        for (i, check) in commands.enumerated() {
            let argv = [executable, "run", "--machine=\(machine)-\(i + 1)"] + bootArguments + [image, "--", "/bin/sh", "-c", check]
            let outcome = runCheck(check, argv: argv, listener: listener, notifying: true)
            // imgboot's own failure, not the check's: the container never started.
            if let failure = listener.take().first(where: { $0.failure != nil }) {
                result.error = "the container did not start: " + (failure.status ?? outcome.output.trimmingNewlines())
                result.couldNotStart = true
                return
            }
            guard !checks.isEmpty else { continue }
            result.checks.append(outcome)
            progress(.checks(done: i + 1, total: checks.count))
        }
    }

    /// Runs a check's process, draining `listener` meanwhile; with `notifying`, the process is
    /// given it as its `NOTIFY_SOCKET`, and what it says there is kept.
    private func runCheck(_ command: String, argv: [String], listener: NotifyListener, notifying: Bool = false,
                          limit: Int = ChildProcess.outputLimit) -> CheckResult {
        let start = monotonicSeconds()
        let process: ChildProcess
        do {
            if notifying { listener.forget() }
            process = try ChildProcess(argv, notifySocket: notifying ? listener.address : nil, outputLimit: limit)
            if notifying { listener.listen(to: process.pid) }
        } catch {
            return CheckResult(command: command, exitCode: nil, passed: false, output: error.description, seconds: 0)
        }
        defer { if notifying { listener.drain() } }
        var status = process.wait(until: start + checkTimeout, alongside: listener)
        var output = process.captured.text
        if status == nil {
            // SIGTERM first: `enter` and `run` pass it on to the check's process group, so that
            // what the check started ends with it and imgboot tears down in order. A SIGKILLed
            // `enter` orphans its command, whose zombie goes to the host's init (it was forked
            // from outside the machine's PID namespace) and stalls systemd's final SIGTERM
            // broadcast at poweroff; a SIGKILLed `run` leaves its cgroup behind.
            process.signal(SIGTERM)
            status = process.wait(until: monotonicSeconds() + Self.killGrace, alongside: listener)
            if status == nil {
                process.signal(SIGKILL)
                status = process.wait(until: monotonicSeconds() + 10, alongside: listener)
            }
            output = process.captured.text + "\n[imgboot: killed after \(formatSeconds(checkTimeout)) s]\n"
            return CheckResult(command: command, exitCode: nil, passed: false, output: output, seconds: monotonicSeconds() - start)
        }
        return CheckResult(command: command, exitCode: status, passed: status == 0, output: output, seconds: monotonicSeconds() - start)
    }

    // MARK: Small things

    /// How long a check that outlived its timeout has to end after SIGTERM before SIGKILL.
    static let killGrace = 5.0

    /// How much of `systemctl status` and of the journal is kept for a failed unit.
    static let diagnosticsLimit = 256 << 10
    static let statusLines = 30
    static let journalLines = 1000

    /// The length of `shortRandom()`'s names.
    static let randomLength = 8

    /// 8 hex digits: two machines of one image (the same image given twice, or two smoke runs
    /// at once) clash once in four billion.
    private func shortRandom() -> String {
        var bytes = [UInt8](repeating: 0, count: Self.randomLength / 2)
        _ = bytes.withUnsafeMutableBytes { imgboot_random($0.baseAddress, UInt($0.count)) }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// The image as an argument of the `boot` and `run` steps: a relative path that starts with
    /// `-` would be read as an option.
    static func argument(_ image: String) -> String {
        image.hasPrefix("-") ? "./" + image : image
    }

    private func lastLine(_ log: String) -> String {
        guard let line = log.split(separator: "\n").last else { return "" }
        return ": " + line
    }
}

import CLinux

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while s.last == "\n" { s.removeLast() }
        return String(s)
    }
}
