#if canImport(Glibc)
import Glibc
#endif
import Boot
import Dissect
import Logging
import Mount

/// One image's smoke test, as reported.
public struct SmokeResult: Sendable {
    public var image: String
    public var machine: String
    public var passed: Bool
    /// Seconds to READY=1, for images booted with systemd; nil otherwise.
    public var readySeconds: Double?
    public var checks: [CheckResult]
    public var failedUnits: [String]
    /// For booted images: whether it powered off cleanly.
    public var poweredOff: Bool?
    /// Why it failed when a check does not say (it did not boot, did not become ready, …).
    public var error: String?
    /// Whether it was booted (systemd) rather than run.
    public var booted: Bool
    /// Wall time of the whole test.
    public var seconds: Double
    /// What imgboot said while booting, for a failure's details.
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
/// never disturbs another.
public struct SmokeRunner: Sendable {
    public var executable: String
    /// BOOT-OPTIONS passed to `boot` and `run` as given (`--volatile=state`, `--setenv=…`, …).
    public var bootArguments: [String]
    public var checks: [String]
    public var timeout: Double
    public var jobs: Int

    public init(executable: String, bootArguments: [String], checks: [String], timeout: Double, jobs: Int) {
        self.executable = executable
        self.bootArguments = bootArguments
        self.checks = checks
        self.timeout = timeout
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
        let start = now()
        // The image's default name, cut so that the random suffix and, for an image without
        // systemd, each check's `-N` still fit in a hostname, however long the file name.
        let room = "-".count + Self.randomLength + "-\(max(1, checks.count))".count
        let machine = ContainerSpec.defaultMachineName(image: image, reserving: room) + "-" + shortRandom()
        var result = SmokeResult(image: image, machine: machine, passed: false, readySeconds: nil, checks: [],
                                 failedUnits: [], poweredOff: nil, error: nil, booted: false, seconds: 0, bootLog: "")
        defer { progress(.finished(passed: result.passed)) }

        let logger = Logger(label: "imgboot.smoke") { _ in SwiftLogNoOpLogHandler() }
        let hasSystemd: Bool
        do {
            let dissected = try DissectedImage.dissect(path: image, logger: logger)
            hasSystemd = try ImageMetadata.read(dissected, logger: logger).hasSystemd
        } catch {
            result.error = "\(error)"
            result.seconds = now() - start
            return result
        }
        if hasSystemd {
            result.booted = true
            boot(Self.argument(image), machine: machine, into: &result, progress: progress)
        } else {
            progress(.running)
            runChecks(Self.argument(image), machine: machine, into: &result, progress: progress)
        }
        result.passed = result.error == nil && result.checks.allSatisfy(\.passed) && result.failedUnits.isEmpty
            && (result.poweredOff ?? true)
        result.seconds = now() - start
        return result
    }

    // MARK: With systemd

    private func boot(_ image: String, machine: String, into result: inout SmokeResult, progress: (SmokeEvent) -> Void) {
        progress(.booting)
        // What imgboot boot says goes to a file in RAM that only this process can name: nothing
        // is left on disk, however smoke ends.
        let logFD = imgboot_memfd_create("imgboot-smoke-boot-log")
        guard logFD >= 0 else {
            result.error = "cannot create a file in RAM for the boot log: \(String(cString: strerror(errno)))"
            return
        }
        defer { close(logFD) }
        let logPath = "/proc/self/fd/\(logFD)"
        let boot: Subprocess
        do {
            boot = try Subprocess([executable, "boot", "--console=passive", "--machine=\(machine)"] + bootArguments + [image],
                                  stderrPath: logPath)
        } catch {
            result.error = error.description
            return
        }
        let readyLine = "imgboot: \(machine) is ready (after "
        let deadline = now() + timeout
        var ready: Double? = nil
        while ready == nil {
            let log = (readTextFile(logPath, limit: Subprocess.outputLimit) ?? "")
            if let range = log.firstRange(of: readyLine) {
                ready = Double(log[range.upperBound...].prefix { $0 != " " }) ?? (now() - deadline + timeout)
                break
            }
            if let status = boot.wait(until: min(deadline, now() + 0.02)) {
                result.bootLog = (readTextFile(logPath, limit: Subprocess.outputLimit) ?? "")
                result.error = "imgboot boot ended with status \(status) before the machine was ready" + lastLine(result.bootLog)
                return
            }
            if now() >= deadline {
                result.error = "not ready after \(formatSeconds(timeout)) s"
                break
            }
        }
        result.readySeconds = ready
        if let ready { progress(.ready(ready)) }

        if ready != nil {
            for (i, check) in checks.enumerated() {
                result.checks.append(runCheck(check, argv: [executable, "enter", machine, "--", "/bin/sh", "-c", check]))
                progress(.checks(done: i + 1, total: checks.count))
            }
            let units = runCheck("systemctl --failed", argv: [executable, "enter", machine, "--", "systemctl", "--failed",
                                                               "--no-legend", "--plain", "--no-pager"])
            result.failedUnits = units.output.split(separator: "\n").compactMap { line in
                line.split(separator: " ").first.map(String.init).flatMap { $0.contains(".") ? $0 : nil }
            }
        }

        progress(.poweringOff)
        let stop = try? Subprocess([executable, "stop", "--timeout", formatSeconds(timeout), machine])
        let stopped = stop?.wait(until: now() + timeout + 15)
        // 0 or 1: stop reached the machine (and killed it, if need be); otherwise it could not
        // (not ready in time: its init not yet registered), and nothing would end the boot.
        var status = boot.wait(until: now() + (stopped == 0 || stopped == 1 ? 15 : 0.5))
        // Ask imgboot itself, so that it tears down in order: the first SIGTERM halts the init
        // (or abandons the setup), the second kills the init. SIGKILL to imgboot is the last
        // resort: it leaves the machine's cgroup, tree directory and registration behind.
        for (signal, grace) in [(SIGTERM, 15.0), (SIGTERM, 10.0), (SIGKILL, 10.0)] where status == nil {
            boot.signal(signal)
            status = boot.wait(until: now() + grace)
        }
        result.bootLog = (readTextFile(logPath, limit: Subprocess.outputLimit) ?? "")
        if ready != nil {
            result.poweredOff = stopped == 0 && status == 0
            if result.poweredOff == false && result.error == nil {
                result.error = "did not power off cleanly (imgboot boot ended with \(status.map(String.init) ?? "no status"))"
                    + lastLine(result.bootLog)
            }
        }
    }

    // MARK: Without systemd

    private func runChecks(_ image: String, machine: String, into result: inout SmokeResult, progress: (SmokeEvent) -> Void) {
        // Without a check, the image passes when a container of it starts at all.
        let commands = checks.isEmpty ? ["true"] : checks
        for (i, check) in commands.enumerated() {
            let outcome = runCheck(check, argv: [executable, "run", "--machine=\(machine)-\(i + 1)"] + bootArguments
                                   + [image, "--", "/bin/sh", "-c", check])
            if checks.isEmpty {
                if !outcome.passed { result.error = "the container did not start: " + outcome.output.trimmingNewlines() }
            } else {
                result.checks.append(outcome)
                progress(.checks(done: i + 1, total: checks.count))
            }
        }
    }

    private func runCheck(_ command: String, argv: [String]) -> CheckResult {
        let start = now()
        let process: Subprocess
        do {
            process = try Subprocess(argv)
        } catch {
            return CheckResult(command: command, exitCode: nil, passed: false, output: error.description, seconds: 0)
        }
        var status = process.wait(until: start + timeout)
        var output = process.captured.text
        if status == nil {
            // SIGTERM first: `enter` and `run` pass it on to the check's process group, so that
            // what the check started ends with it and imgboot tears down in order. A SIGKILLed
            // `enter` orphans its command, whose zombie goes to the host's init (it was forked
            // from outside the machine's PID namespace) and stalls systemd's final SIGTERM
            // broadcast at poweroff; a SIGKILLed `run` leaves its cgroup behind.
            process.signal(SIGTERM)
            status = process.wait(until: now() + Self.killGrace)
            if status == nil {
                process.signal(SIGKILL)
                status = process.wait(until: now() + 10)
            }
            output = process.captured.text + "\n[imgboot: killed after \(formatSeconds(timeout)) s]\n"
            return CheckResult(command: command, exitCode: nil, passed: false, output: output, seconds: now() - start)
        }
        return CheckResult(command: command, exitCode: status, passed: status == 0, output: output, seconds: now() - start)
    }

    // MARK: Small things

    /// How long a check that outlived its timeout has to end after SIGTERM before SIGKILL.
    static let killGrace = 5.0

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

