import Foundation
import Testing

/// Runs the built `imgboot` binary as a user would, against fixture images that
/// `tools/build-fixtures` builds (and caches) from the recipes in `fixtures/`.
enum Harness {
    static let isRoot = getuid() == 0

    /// The package's top directory (this file is Tests/imgbootTests/Harness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `IMGBOOT_BIN`, or the `imgboot` next to the test bundle (`swift build` puts it there).
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["IMGBOOT_BIN"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("imgboot").path
    }()

    /// The directory holding `NAME.raw` for every fixture, built once per test run.
    static let fixtures: Swift.Result<String, HarnessError> = {
        let result = run([packageRoot + "/tools/build-fixtures"])
        let dir = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, !dir.isEmpty else {
            return .failure(HarnessError("tools/build-fixtures failed (\(result.status)): \(result.stderr)"))
        }
        return .success(dir)
    }()

    /// The path of fixture `name` (e.g. "basic"), building the fixtures if needed. A fixture the
    /// builder skipped (one that mounts, where it cannot) is an error that says why.
    static func fixture(_ name: String) throws -> String {
        let dir = try fixtures.get()
        let path = dir + "/\(name).raw"
        guard FileManager.default.fileExists(atPath: path) else {
            let skipped = (try? String(contentsOfFile: dir + "/\(name).skipped", encoding: .utf8))
                .map { " (tools/build-fixtures skipped it: \($0.trimmingCharacters(in: .whitespacesAndNewlines)))" }
            throw HarnessError("no fixture \(name) at \(path)" + (skipped ?? ""))
        }
        return path
    }

    /// The Debian 12 image with systemd that the boot tests boot, built once per test run by
    /// `tools/build-debian-image` (about a minute cold, cached next to the fixtures; needs root).
    static let debian: Swift.Result<String, HarnessError> = {
        let result = run([packageRoot + "/tools/build-debian-image"])
        let path = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, FileManager.default.fileExists(atPath: path) else {
            return .failure(HarnessError("tools/build-debian-image failed (\(result.status)): \(result.stderr)"))
        }
        return .success(path)
    }()

    /// The path of the Debian image, building it if needed.
    static func debianImage() throws -> String { try debian.get() }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `imgboot ARGS…`.
    static func imgboot(_ arguments: [String], stdin: String? = nil) throws -> Output {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw HarnessError("imgboot binary not found at \(binary); run `swift build` first, or set IMGBOOT_BIN")
        }
        return run([binary] + arguments, stdin: stdin)
    }

    /// Runs a program, collecting its output through files (no pipe can fill up and block it).
    static func run(_ command: [String], stdin: String? = nil) -> Output {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgboot-harness-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        do {
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            if let stdin {
                let input = dir.appendingPathComponent("stdin")
                _ = FileManager.default.createFile(atPath: input.path, contents: Data(stdin.utf8))
                process.standardInput = try FileHandle(forReadingFrom: input)
            } else {
                process.standardInput = FileHandle.nullDevice
            }
            try process.run()
        } catch {
            return Output(status: -1, stdout: "", stderr: "cannot run \(command[0]): \(error)")
        }
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Output(
            status: status,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// The SHA-256 of a file, to prove an image was not written.
    static func sha256(_ path: String) -> String {
        run(["/usr/bin/sha256sum", path]).stdout.split(separator: " ").first.map(String.init) ?? ""
    }

    /// Loop devices whose backing file is `path` (from sysfs, as `losetup -j` would list them).
    static func loopDevices(backing path: String) -> [String] {
        run(["/sbin/losetup", "-n", "-O", "NAME", "-j", path]).stdout
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The host's mount table: mount ID → (mount point, filesystem type).
    static func mounts() -> [Int: (point: String, type: String)] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        var table: [Int: (point: String, type: String)] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER-OPTIONS
            guard fields.count > 4, let id = Int(fields[0]), let dash = fields.firstIndex(of: "-"),
                  dash + 1 < fields.count else { continue }
            table[id] = (String(fields[4]), String(fields[dash + 1]))
        }
        return table
    }

    /// PIDs of processes whose command line contains `marker` (pgrep -f).
    static func processes(matching marker: String) -> [pid_t] {
        run(["/usr/bin/pgrep", "-f", "--", marker]).stdout.split(separator: "\n").compactMap { pid_t($0) }
    }

    /// What is left of a machine's processes: those carrying its name on their command line
    /// (imgboot) and those in its cgroup.
    static func machineProcesses(_ machine: String) -> [pid_t] {
        processes(matching: machine) + processes(inMachineCgroup: machine)
    }

    /// PIDs of processes in the machine's cgroup (or below it), however they are named: what
    /// runs in a container carries nothing of imgboot's command line (its PID 1 is imgboot-init).
    static func processes(inMachineCgroup machine: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            let cgroups = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
            return cgroups.split(separator: "\n").contains { $0.hasSuffix("/imgboot/\(machine)") || $0.contains("/imgboot/\(machine)/") }
        }
    }

    /// Waits until `condition` holds, at most `seconds` — a guard against a hang, not a timing
    /// assertion. Whether it holds.
    static func waitUntil(upTo seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// The children of a process (host PIDs).
    static func children(of pid: pid_t) -> [pid_t] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// A process's command name (/proc/PID/comm), or "" when it is gone.
    static func commandName(of pid: pid_t) -> String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The machine's cgroup, wherever the host's unified hierarchy is (hybrid or pure v2), if it exists.
    static func machineCgroup(_ machine: String) -> String? {
        ["/sys/fs/cgroup/unified/imgboot/\(machine)", "/sys/fs/cgroup/imgboot/\(machine)"]
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    /// What else a running machine has on the host, by name: its registry entry, its tree's
    /// directory, its v1 devices cgroup (where the BPF device filter could not be used).
    static func machineFiles(_ machine: String) -> [String] {
        ["/run/imgboot/machines/\(machine)", "/run/imgboot/roots/\(machine)", "/sys/fs/cgroup/devices/imgboot/\(machine)"]
            .filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// The mount points of the host's mount table.
    static func mountPoints() -> Set<String> {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return Set(text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? String(fields[4]) : nil
        })
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A directory of its own for one test, removed with everything in it when the test is done.
final class ScratchDirectory {
    let path: String

    /// In `parent`, or in the temporary directory (/tmp).
    init(_ prefix: String = "imgboot-test", in parent: String? = nil) throws {
        let base = parent.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory
        path = base.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }  // best effort: only a temporary directory
}

/// What a container could leave on the host, noted before it runs. After it: no loop device
/// backed by the image, no new mount of imgboot's in the host's table, no process carrying the
/// run's marker, no machine cgroup, registry entry or tree directory, and (unless the run may
/// write) the image's bytes unchanged.
///
/// Only the mounts of a container's count: those on its directories (`/run/imgboot/*`: the
/// tree, and the staging tmpfs) and the API filesystems a container gets (proc, sysfs, cgroup2,
/// mqueue, devpts). Other tests mount on the host meanwhile (AttachTests, MountCommandTests,
/// whose `imgboot mount` stages in /tmp/imgboot-staging.*), and a leaked mount of the image
/// itself holds a loop device, which the loop check sees.
struct Leftovers {
    let image: String
    let machine: String
    let marker: String
    let hash: String
    let mountIDs: Set<Int>

    static let containerFilesystems: Set<String> = ["proc", "sysfs", "cgroup2", "mqueue", "devpts"]

    init(image: String, machine: String, marker: String) {
        self.image = image
        self.machine = machine
        self.marker = marker
        hash = Harness.sha256(image)
        mountIDs = Set(Harness.mounts().keys)
    }

    /// New host mounts that imgboot made: their mount points and types.
    func newMounts() -> [(point: String, type: String)] {
        Harness.mounts().filter { id, mount in
            !mountIDs.contains(id) && (mount.point.hasPrefix("/run/imgboot/") || Self.containerFilesystems.contains(mount.type))
        }.map(\.value).sorted { $0.point < $1.point }
    }

    /// Expects that nothing is left; removes (detaches, kills by PID) whatever is, so that one
    /// failure does not spill into the next test.
    func expectNone(imageUnchanged: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        let loops = Harness.loopDevices(backing: image)
        #expect(loops.isEmpty, "loop devices still backed by \(image)", sourceLocation: sourceLocation)
        let mounts = newMounts()
        #expect(mounts.isEmpty, "new mounts in the host's table: \(mounts.map { "\($0.point) (\($0.type))" })",
                sourceLocation: sourceLocation)
        let processes = Harness.processes(matching: marker) + Harness.processes(inMachineCgroup: machine)
        #expect(processes.isEmpty, "processes of the container still running", sourceLocation: sourceLocation)
        let cgroup = Harness.machineCgroup(machine)
        #expect(cgroup == nil, "the machine's cgroup is still there", sourceLocation: sourceLocation)
        let files = Harness.machineFiles(machine)
        #expect(files.isEmpty, "the machine's files are still there", sourceLocation: sourceLocation)
        if imageUnchanged {
            #expect(Harness.sha256(image) == hash, "the image was written", sourceLocation: sourceLocation)
        }

        for pid in processes { kill(pid, SIGKILL) }
        for mount in mounts.reversed() { _ = Harness.run(["/bin/umount", "--lazy", mount.point]) }
        for device in loops { _ = Harness.run(["/sbin/losetup", "-d", device]) }
    }
}

/// A program started in the background, its output going to files that the test reads while
/// it runs. Ended (SIGKILL, by its PID) when the test lets go of it, should a test fail early.
///
/// Spawned and reaped by hand rather than with Foundation's Process, which tells that a program
/// ended by a socket the program inherits: a descendant left behind would keep it "running".
final class BackgroundProcess {
    let pid: pid_t
    private var status: Int32?
    private let dir: ScratchDirectory

    /// `environment`: variables set for the program on top of the test's own.
    init(_ command: [String], environment: [String: String] = [:]) throws {
        dir = try ScratchDirectory("imgboot-background")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Signals as a program started from a shell has them: none blocked, none ignored.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let inherited = ProcessInfo.processInfo.environment.filter { environment[$0.key] == nil }
        let envp = (inherited.merging(environment) { $1 }).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
        guard error == 0 else { throw HarnessError("cannot run \(command[0]): \(String(cString: strerror(error)))") }
        self.pid = pid
    }

    deinit { kill() }

    var stdout: String { (try? String(contentsOfFile: dir.path + "/stdout", encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: dir.path + "/stderr", encoding: .utf8)) ?? "" }

    /// The process's children: for imgboot, the container's PID 1.
    func children() -> [pid_t] { Harness.children(of: pid) }

    func signal(_ signal: Int32) {
        if isRunning { Glibc.kill(pid, signal) }
    }

    var isRunning: Bool {
        reap(blocking: false)
        return status == nil
    }

    /// Waits until `condition` holds, the process ends, or `seconds` pass — a guard against a
    /// hang, not a timing assertion. Whether the condition holds.
    func wait(upTo seconds: Double, for condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            if !isRunning { return condition() }
            usleep(20_000)
        }
        return condition()
    }

    /// The exit status (128+N when killed by signal N), or nil when the process is still
    /// running after `seconds` (then it is killed).
    func exitStatus(within seconds: Double) -> Int32? {
        _ = wait(upTo: seconds) { !isRunning }
        guard !isRunning else {
            kill()
            return nil
        }
        return status
    }

    /// SIGKILL if it still runs, and reap it.
    func kill() {
        guard isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        reap(blocking: true)
    }

    private func reap(blocking: Bool) {
        guard status == nil else { return }
        var raw: Int32 = 0
        let done = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
        guard done == pid else { return }
        // WIFEXITED/WEXITSTATUS/WTERMSIG are macros Swift does not import.
        let signal = raw & 0x7f
        if signal == 0 {
            status = (raw >> 8) & 0xff
        } else if signal != 0x7f {
            status = 128 + signal
        }
    }
}

/// A private copy of an image under a unique name, `NAME-TOKEN.raw`: its machine name (the file
/// name without .raw), cgroup and loop devices belong to this test alone, a run may write it,
/// and the token in imgboot's command line (which the container's tiny init inherits) finds
/// any process left behind.
final class ImageCopy {
    let path: String
    let machine: String
    let leftovers: Leftovers
    private let scratch: ScratchDirectory

    /// A copy of fixture `fixture` (e.g. "basic").
    convenience init(_ fixture: String) throws {
        try self.init(path: try Harness.fixture(fixture), name: fixture)
    }

    init(path source: String, name: String) throws {
        scratch = try ScratchDirectory()
        machine = "\(name)-\(UUID().uuidString.prefix(8).lowercased())"
        path = scratch.path + "/\(machine).raw"
        let copy = Harness.run(["/bin/cp", "--sparse=always", source, path])
        guard copy.status == 0 else { throw HarnessError("cannot copy \(source): \(copy.stderr)") }
        leftovers = Leftovers(image: path, machine: machine, marker: machine)
    }

    /// A directory next to the image, for files to bind into the container.
    var directory: String { scratch.path }

    /// `imgboot run OPTIONS… IMAGE -- COMMAND…`; afterwards nothing of the container may be
    /// left (the image's hash is for the test to check: some runs may write).
    func run(_ options: [String] = [], _ command: [String], stdin: String? = nil,
             sourceLocation: SourceLocation = #_sourceLocation) throws -> Harness.Output {
        let out = try Harness.imgboot(["run"] + options + [path, "--"] + command, stdin: stdin)
        leftovers.expectNone(imageUnchanged: false, sourceLocation: sourceLocation)
        return out
    }

    /// Runs a shell script in the container, expects status 0, and returns its stdout's lines.
    func sh(_ options: [String] = [], _ script: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
        let out = try run(options, ["sh", "-c", script], sourceLocation: sourceLocation)
        #expect(out.status == 0, "exit status \(out.status); stderr: \(out.stderr)", sourceLocation: sourceLocation)
        var lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// Whether the image's bytes are still those of the copy.
    var isUnchanged: Bool { Harness.sha256(path) == leftovers.hash }
}
