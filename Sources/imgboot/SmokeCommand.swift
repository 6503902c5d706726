import ArgumentParser
import Boot
import Dissect
import Smoke

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
    struct SmokeTest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "smoke",
            abstract: "Smoke-test images: does each boot, and does it work?",
            discussion: """
                An image with systemd is booted; imgboot waits for READY=1 (failing at \
                --ready-timeout), runs each --check inside with sh -c (each ended at \
                --check-timeout), collects `systemctl --failed`, powers it off and waits for a \
                clean exit. It passes when it became ready, every check exited 0, no unit failed, \
                and it powered off cleanly. An image without systemd runs each check in a fresh \
                container and passes when every check exits 0. Default --volatile=overlay: smoke \
                never writes an image. Exit status 0 when every image passed, 1 when any failed, \
                125 when imgboot itself could not run. Every image gets a machine name of its own \
                (its default name and a random suffix).

                EXAMPLES:
                  imgboot smoke debian.raw
                  imgboot smoke --check 'systemctl is-system-running --wait' build/*.raw
                  imgboot smoke --junit out.xml --timeout 120 --jobs 2 build/*.raw
                  imgboot smoke --json --check 'test -s /etc/os-release' a.raw b.raw
                  imgboot smoke --shard 2/4 --junit out.xml build/*.raw
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions

        @Option(name: .customLong("check"), help: ArgumentHelp("A shell command that must exit 0 inside the machine (repeatable).", valueName: "cmd"))
        var checks: [String] = []

        // .unconditional: "-5" is the value (refused below, with the reason), not an option.
        @Option(parsing: .unconditional, help: ArgumentHelp(
            "The default of --ready-timeout and --check-timeout, and the time a machine has to power off.",
            valueName: "seconds"))
        var timeout: Double = 60

        @Option(parsing: .unconditional,
                help: ArgumentHelp("Seconds a machine may take to become ready (default: --timeout).", valueName: "seconds"))
        var readyTimeout: Double?

        @Option(parsing: .unconditional,
                help: ArgumentHelp("Seconds each check may run before it is ended (default: --timeout).", valueName: "seconds"))
        var checkTimeout: Double?

        @Option(parsing: .unconditional,
                help: ArgumentHelp("How many images to test at once (default: the number of CPUs).", valueName: "n"))
        var jobs: Int?

        @Option(help: ArgumentHelp(
            "Test only the I-th of N shares of the images (1 ≤ I ≤ N), for a CI matrix of N jobs; an image's share depends on its file name alone.",
            valueName: "I/N"))
        var shard: Shard?

        @Flag(help: "Print one JSON object with the results on stdout.")
        var json = false

        @Option(help: ArgumentHelp("Write JUnit XML results to this file.", valueName: "file"), completion: .file())
        var junit: String?

        @Argument(help: "The images to test.", completion: IMGBoot.imageCompletion)
        var images: [String]

        func validate() throws {
            guard !images.isEmpty else { throw ValidationError("Missing expected argument '<images> ...'") }
            try validateTimeout(timeout)
            if let readyTimeout { try validateTimeout(readyTimeout, option: "--ready-timeout") }
            if let checkTimeout { try validateTimeout(checkTimeout, option: "--check-timeout") }
            if let jobs, jobs < 1 { throw ValidationError("--jobs \(jobs): must be at least 1") }
        }

        func run() throws {
            try requireRoot(images[0], "smoke-testing")
            // Where the reports go is checked before any image runs: a report that cannot be
            // written is better known now than after an hour of boots.
            if json { try requireWritableStdout() }
            let report = try junit.map(JUnitFile.init(creating:))

            let selected = shard.map { $0.select(images) } ?? images
            if let shard, selected.isEmpty {
                writeError("imgboot: shard \(shard): none of the \(images.count) images falls in this shard")
            }
            let runner = SmokeRunner(
                executable: try selfExecutable(), bootArguments: options.passthroughArguments(), checks: checks,
                readyTimeout: readyTimeout ?? timeout, checkTimeout: checkTimeout ?? timeout, stopTimeout: timeout,
                jobs: jobs ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            let display = SmokeDisplay(images: selected, live: SmokeDisplay.isLive(json: json))
            let results = runner.run(images: selected) { index, event in display.show(index, event) }
            let smoke = SmokeReport(results: results)

            // The JSON is printed whatever happens to the JUnit file; a file that could not be
            // written is then imgboot's own failure (125), after the JSON.
            var reportError: CommandError?
            do {
                try report?.write(smoke.junit)
            } catch let error as CommandError {
                reportError = error
            }
            if json {
                print(smoke.json.serialized())
            } else {
                writeError("\n" + smoke.table)
            }
            if let reportError { throw reportError }
            throw ExitCode(smoke.passed ? 0 : 1)
        }

        /// `--json` needs a stdout to print to (not closed, not read-only).
        func requireWritableStdout() throws {
            let flags = fcntl(1, F_GETFL)
            guard flags >= 0, flags & O_ACCMODE != O_RDONLY else {
                throw CommandError("--json", "standard output is \(flags < 0 ? "closed" : "not writable")")
            }
        }
    }
}

/// The JUnit report's file: created (emptied) before any image runs, so that a path that
/// cannot be written is refused at once, and so that a stale report from an earlier run is
/// never mistaken for this one's; written when the run is done.
struct JUnitFile {
    let path: String
    private let fd: Int32

    init(creating path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure(path, errno) }
    }

    func write(_ text: String) throws {
        defer { close(fd) }
        do {
            try writeFully(fd, text.utf8)
        } catch {
            throw Self.failure(path, error.code)
        }
        guard fsync(fd) == 0 || errno == EINVAL else { throw Self.failure(path, errno) }
    }

    private static func failure(_ path: String, _ e: Int32) -> CommandError {
        CommandError(path, "cannot write the JUnit report", errno: e)
    }
}

extension Shard: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}

/// The path of the running imgboot, to start the steps of a smoke test with.
func selfExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw CommandError(nil, "cannot find imgboot's own executable", errno: errno) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
