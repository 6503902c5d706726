import ArgumentParser
import Boot
import Dissect
import Smoke

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    struct SmokeTest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "smoke",
            abstract: "Smoke-test images: does each boot, and does it work?",
            discussion: """
                An image with systemd is booted; imgboot waits for READY=1 (failing at --timeout), \
                runs each --check inside with sh -c, collects `systemctl --failed`, powers it off \
                and waits for a clean exit. It passes when it became ready, every check exited 0, \
                no unit failed, and it powered off cleanly. An image without systemd runs each \
                check in a fresh container and passes when every check exits 0. Default \
                --volatile=overlay: smoke never writes an image. Exit status 0 when every image \
                passed, 1 when any failed, 125 when imgboot itself could not run. Every image \
                gets a machine name of its own (its default name and a random suffix).

                EXAMPLES:
                  imgboot smoke debian.raw
                  imgboot smoke --check 'systemctl is-system-running --wait' build/*.raw
                  imgboot smoke --junit out.xml --timeout 120 --jobs 2 build/*.raw
                  imgboot smoke --json --check 'test -s /etc/os-release' a.raw b.raw
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions

        @Option(name: .customLong("check"), help: ArgumentHelp("A shell command that must exit 0 inside the machine (repeatable).", valueName: "cmd"))
        var checks: [String] = []

        // .unconditional: "-5" is the value (refused below, with the reason), not an option.
        @Option(parsing: .unconditional,
                help: ArgumentHelp("Seconds to wait for readiness, and for each check, before failing.", valueName: "seconds"))
        var timeout: Double = 60

        @Option(parsing: .unconditional,
                help: ArgumentHelp("How many images to test at once (default: the number of CPUs).", valueName: "n"))
        var jobs: Int?

        @Flag(help: "Print one JSON object with the results on stdout.")
        var json = false

        @Option(help: ArgumentHelp("Write JUnit XML results to this file.", valueName: "file"), completion: .file())
        var junit: String?

        @Argument(help: "The images to test.", completion: IMGBoot.imageCompletion)
        var images: [String]

        func validate() throws {
            guard !images.isEmpty else { throw ValidationError("Missing expected argument '<images> ...'") }
            try validateTimeout(timeout)
            if let jobs, jobs < 1 { throw ValidationError("--jobs \(jobs): must be at least 1") }
        }

        func run() throws {
            try requireRoot(images[0], "smoke-testing")
            let runner = SmokeRunner(
                executable: try selfExecutable(), bootArguments: options.passthroughArguments(),
                checks: checks, timeout: timeout, jobs: jobs ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            let display = SmokeDisplay(images: images, live: isatty(2) == 1 && !json)
            let results = runner.run(images: images) { index, event in display.show(index, event) }
            display.finish()
            let report = SmokeReport(results: results)
            if let junit { try writeFile(junit, report.junit) }
            if json {
                print(report.json.serialized())
            } else {
                writeError("\n" + report.table)
            }
            throw ExitCode(report.passed ? 0 : 1)
        }

        func writeFile(_ path: String, _ text: String) throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CommandError(description: "\(path): cannot write the JUnit report: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                throw CommandError(description: "\(path): cannot write the JUnit report: \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// The path of the running imgboot, to start the steps of a smoke test with.
func selfExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw CommandError(description: "cannot find imgboot's own executable: \(String(cString: strerror(errno)))") }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Live lines for a terminal (one per image, redrawn: "booting → ready in 0.52 s → checks
/// 2/2 → passed"), plain lines otherwise.
final class SmokeDisplay: @unchecked Sendable {
    /// The images' paths, as printable(_:) shows them.
    private let images: [String]
    private let live: Bool
    private var lines: [String]
    private var drawn = false
    private var mutex = pthread_mutex_t()

    init(images: [String], live: Bool) {
        // Escaped once: a path is anyone's file name, and these lines are for a terminal.
        self.images = images.map(printable)
        self.live = live
        lines = self.images.map { "\($0): waiting" }
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func show(_ index: Int, _ event: SmokeEvent) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let step: String = switch event {
        case .booting: "booting"
        case .running: "running checks"
        case .ready(let s): "ready in \(formatSeconds(s)) s"
        case .checks(let done, let total): "checks \(done)/\(total)"
        case .poweringOff: "powering off"
        case .finished(let passed): passed ? "passed" : "FAILED"
        }
        if live {
            let base = lines[index].hasSuffix(": waiting") ? "\(images[index]):" : lines[index]
            lines[index] = base + (base.hasSuffix(":") ? " " : " → ") + step
            redraw()
        } else {
            writeError("\(images[index]): \(step)")
        }
    }

    private func redraw() {
        var out = drawn ? "\u{1b}[\(lines.count)A" : ""
        for line in lines { out += "\r\u{1b}[2K" + line + "\n" }
        drawn = true
        writeError(String(out.dropLast()))
    }

    func finish() {}
}

