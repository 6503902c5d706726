import Foundation
import Testing

/// The state store under /run/imgboot against the attacks of issue 10 (items 6, 7 and 9),
/// performed for real: a forged image name, an unprivileged user going for the store's files
/// and locks, a record whose leader PID now names someone else's process, a registry lock held
/// by someone. Each test checks what happened on the host — the foreign process was not
/// signalled, nothing ran in its namespaces, imgboot did not hang, nothing was left — not
/// imgboot's messages alone.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces: machines and the state store"),
       .serialized)
struct StateStoreTests {
    static let limit = 60.0

    // MARK: - Item 6: a forged record through an image's name

    /// An image whose file name holds a newline and `leader=PID` (the old `key=value` format's
    /// later key won), and a JSON member (`","leader":PID,"x":"`), PID being a process of the
    /// test's own: `list` and `list --json` show the machine's real leader, `enter` runs in the
    /// machine (never in the foreign process's namespaces), `stop` stops the machine and never
    /// signals the foreign process.
    @Test func forgedImageNameCannotNameTheLeader() throws {
        let foreign = try Foreigner()
        defer { foreign.end() }
        let copy = try ImageCopy("basic")
        let name = copy.machine + "-forged"
        let hostile = copy.directory + "/x\nleader=\(foreign.pid)\nsupervisor=\(foreign.pid)\n\",\"leader\":\(foreign.pid),\"x\":\".raw"
        try #require(rename(copy.path, hostile) == 0, "rename: \(String(cString: strerror(errno)))")
        defer { rename(hostile, copy.path) }
        let leftovers = Leftovers(image: hostile, machine: name, marker: name)

        let run = try BackgroundProcess([Harness.binary, "run", "--machine=\(name)", hostile, "--", "sleep", "1000"])
        defer { run.kill() }
        let listed = try MachinesTests.waitUntilListed(name, run)
        let leader = try #require(run.children().first, "the container's PID 1")
        #expect(listed.leader == leader && listed.leader != foreign.pid)
        #expect(listed.supervisor == run.pid)
        #expect(listed.image == hostile, "the name is one string, whole")
        #expect(!(try MachinesTests.list()).contains { $0.leader == foreign.pid || $0.supervisor == foreign.pid })
        let row = try #require(try MachinesTests.table()[name])
        #expect(row.count == 7 && row[3] == String(leader), "\(row)")
        // The record on disk: one JSON object, its leader the real one.
        let record = try Store.record(name)
        #expect(record["leader"] as? Int == Int(leader) && record["image"] as? String == hostile)

        let inside = try Harness.imgboot(["enter", name, "--", "hostname"])
        #expect(inside.status == 0 && inside.stdout == "\(name)\n", "entered elsewhere? \(inside.stdout) \(inside.stderr)")
        #expect(!inside.stdout.contains(foreign.mark))

        let stop = try Harness.imgboot(["stop", name])
        #expect(stop.status == 0, "\(stop.stderr)")
        #expect(run.exitStatus(within: Self.limit) == 143, "the machine's command got SIGTERM; stderr: \(run.stderr)")
        foreign.expectUntouched()
        leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - Item 7: the store is root's alone

    /// What an unprivileged user would need to keep a dead machine's entry alive (or freeze the
    /// registry): opening, locking or listing anything under /run/imgboot. As nobody, every
    /// attempt fails with EACCES while a machine runs; and the store's directories are root's
    /// with mode 0700, its files 0600.
    @Test func unprivilegedUserCannotOpenOrLockAnything() throws {
        let copy = try ImageCopy("basic")
        let name = copy.machine + "-store"
        let run = try BackgroundProcess([Harness.binary, "run", "--machine=\(name)", copy.path, "--", "sleep", "1000"])
        defer { run.kill() }
        _ = try MachinesTests.waitUntilListed(name, run)

        let targets = [Store.root, Store.root + "/machines", Store.root + "/machines/.lock", Store.root + "/machines/\(name)",
                       Store.root + "/trees", Store.root + "/roots", Store.root + "/staging"]
        for target in targets {
            // flock(1) opens the file (or directory) read-only, as the attack did, then locks it.
            let lock = Store.asNobody(["/usr/bin/flock", "--nonblock", "--conflict-exit-code", "99", target, "true"])
            #expect(lock.status != 0 && lock.status != 99, "nobody could lock \(target): \(lock.status)")
            #expect(lock.stderr.contains("Permission denied"), "\(target): \(lock.stderr)")
        }
        let listing = Store.asNobody(["/bin/ls", Store.root + "/machines"])
        #expect(listing.status != 0 && listing.stderr.contains("Permission denied") && !listing.stdout.contains(name))
        let create = Store.asNobody(["/usr/bin/touch", Store.root + "/machines/\(copy.machine)-planted"])
        #expect(create.status != 0 && create.stderr.contains("Permission denied"))

        for directory in [Store.root] + ["machines", "trees", "roots", "staging"].map({ Store.root + "/" + $0 }) {
            let info = try #require(Store.info(directory))
            #expect(info.type == S_IFDIR && info.mode == 0o700 && info.uid == 0, "\(directory): \(info)")
        }
        for file in [Store.root + "/machines/\(name)", Store.root + "/machines/.lock"] {
            let info = try #require(Store.info(file))
            #expect(info.type == S_IFREG && info.mode == 0o600 && info.uid == 0, "\(file): \(info)")
        }
        // The machine is as it was: root stops it.
        #expect(try Harness.imgboot(["stop", name]).status == 0)
        #expect(run.exitStatus(within: Self.limit) == 143)
        copy.leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - Item 7: a leader PID that names someone else's process now

    /// A machine's record whose leader PID now belongs to another process — as after the
    /// machine died and its PID was recycled into a user's namespace: a process of the test's
    /// own, in PID, mount and UTS namespaces of its own, that would show its hostname if
    /// anything ran there. The record is written by the test (as root: no one else can) and
    /// its lock held, as the attack held it. With the leader's start time wrong, and then with
    /// the right start time but outside the machine's cgroup: `enter` and `stop` refuse with
    /// one line, nothing runs in the process's namespaces, it gets no signal, and `list` does
    /// not show its PID.
    @Test func recycledLeaderIsNeitherEnteredNorSignalled() throws {
        let foreign = try Foreigner()
        defer { foreign.end() }
        let name = "recycled-\(UUID().uuidString.prefix(8).lowercased())"
        let cgroup = try #require(Store.unifiedRoot) + "/imgboot/\(name)"
        try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: true)
        defer { rmdir(cgroup) }
        let path = Store.root + "/machines/\(name)"
        defer { unlink(path) }
        let start = try #require(Store.startTime(of: foreign.pid))

        var record: [String: Any] = [
            "version": 1, "name": name, "kind": "run", "mode": "overlay", "image": "/nonexistent/\(name).raw",
            "leader": Int(foreign.pid), "leaderStartTime": Int(start) + 1, "supervisor": Int(getpid()),
            "supervisorStartTime": Int(try #require(Store.startTime(of: getpid()))),
            "started": Int(Date().timeIntervalSince1970), "cgroup": cgroup, "privateNetwork": false,
        ]
        try Store.writeInPlace(path, record)
        let held = try Store.Held(path)
        defer { held.release() }

        for (variant, why) in [("wrong start time", "it started at another time"), ("right start time", "it is not in the machine's cgroup")] {
            if variant == "right start time" {
                record["leaderStartTime"] = Int(start)
                try Store.writeInPlace(path, record)  // the same file: its lock stays held
            }
            let listed = try MachinesTests.list().first { $0.name == name }
            #expect(listed != nil, "\(variant): a live entry is listed")
            #expect(listed?.leader == 0, "\(variant): list shows no leader it cannot prove")

            let refusal = "PID \(foreign.pid) is no longer the machine's leader (\(why)): refusing to signal or enter it"
            let enter = try Harness.imgboot(["enter", name, "--", "hostname"])
            Hardening.expectOwnFailure(enter, image: name, refusal)
            #expect(!enter.stdout.contains(foreign.mark) && !enter.stderr.contains(foreign.mark))
            let stop = try Harness.imgboot(["stop", "--timeout", "2", name])
            Hardening.expectOwnFailure(stop, image: name, refusal)
            foreign.expectUntouched(variant)
        }
    }

    // MARK: - Item 9: a registry lock someone holds

    /// Root holding the registry's lock (a flock of the test's own): `imgboot run` waits for it
    /// without hanging on SIGTERM — it leaves as at its other checkpoints, 143, one line, and
    /// nothing of it is left. (An unprivileged user cannot even open the lock:
    /// `unprivilegedUserCannotOpenOrLockAnything`.)
    @Test func runWaitingForTheRegistryLockAnswersSIGTERM() throws {
        let copy = try ImageCopy("basic")
        // Taken through imgboot first, so that the lock file exists with the store's modes.
        _ = try Harness.imgboot(["list"])
        let held = try Store.Held(Store.root + "/machines/.lock")
        defer { held.release() }

        let run = try BackgroundProcess([Harness.binary, "run", copy.path, "--", "true"])
        defer { run.kill() }
        // SIGTERM blocked (into imgboot's signalfd) and still there a moment later: it waits.
        let blocking = run.wait(upTo: Self.limit) { Store.blockedSignals(of: run.pid) & (1 << (UInt64(SIGTERM) - 1)) != 0 }
        try #require(blocking, "imgboot never blocked SIGTERM; stderr: \(run.stderr)")
        usleep(300_000)
        #expect(run.isRunning, "imgboot did not wait for the lock: \(run.stderr)")
        run.signal(SIGTERM)
        #expect(run.exitStatus(within: Self.limit) == 143, "stderr: \(run.stderr)")
        #expect(run.stderr == "imgboot: \(copy.path): interrupted by Terminated; nothing was left behind\n")
        held.release()
        copy.leftovers.expectNone(imageUnchanged: true)
    }

    /// A registry lock held for good (here in a store of a private mount namespace, so that no
    /// other imgboot on the host waits meanwhile): `run` gives up with one line after a few
    /// seconds instead of hanging.
    @Test func registryLockHeldTooLongIsAnErrorNotAHang() throws {
        let copy = try ImageCopy("basic")
        let out = Hardening.inPrivateMountNamespace("""
            mount -t tmpfs -o mode=0700 tmpfs /run/imgboot || exit 99
            mkdir -m 0700 /run/imgboot/machines && touch /run/imgboot/machines/.lock || exit 99
            flock -o /run/imgboot/machines/.lock sleep 120 & holder=$!
            i=0
            while flock -n /run/imgboot/machines/.lock true; do
                i=$((i+1)); [ $i -lt 600 ] || exit 98; sleep 0.05
            done
            timeout -s KILL 60 "$0" run "$1" -- true; status=$?
            pkill -P $holder; wait $holder
            exit $status
            """, [Harness.binary, copy.path])
        Hardening.expectOwnFailure(out, image: copy.path,
                                   "/run/imgboot/machines/.lock has been locked by another process for 5 s: is an imgboot hung? (fuser -v /run/imgboot/machines/.lock names it)")
        copy.leftovers.expectNone(imageUnchanged: true)
    }

    /// A temporary file a writer left when it died (its lock free) goes at the next
    /// registration; one whose writer still holds it stays.
    @Test func abandonedTemporaryFilesAreSweptLiveOnesKept() throws {
        let copy = try ImageCopy("basic")
        _ = try Harness.imgboot(["list"])
        let abandoned = Store.root + "/machines/.tmp.\(copy.machine)-dead.1.000000"
        let live = Store.root + "/machines/.tmp.\(copy.machine)-live.1.000000"
        for path in [abandoned, live] { try Store.writeInPlace(path, ["version": 1]) }
        defer { unlink(abandoned); unlink(live) }
        let held = try Store.Held(live)
        defer { held.release() }

        let out = try copy.run([], ["true"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(Store.info(abandoned) == nil, "the abandoned temporary file is still there")
        #expect(Store.info(live) != nil, "a temporary file being written was removed")
    }

    // MARK: - What is already there

    /// /run/imgboot as something else made it (in a private mount namespace, over the host's):
    /// owned by a user, or a symlink to a directory a user controls — refused with one line and
    /// never followed; a mode an older imgboot left (0755) — narrowed to 0700, and it works.
    @Test(arguments: ["owned by a user", "a symlink", "a subdirectory owned by a user", "mode 0755"])
    func existingStateDirectory(how: String) throws {
        let copy = try ImageCopy("basic")
        let scratch = try ScratchDirectory("imgboot-store")
        let setup: String = switch how {
        case "owned by a user": "mount -t tmpfs -o mode=0755,uid=65534 tmpfs /run/imgboot"
        case "a symlink": "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0700 \"$2/target\" && ln -s \"$2/target\" /run/imgboot"
        case "a subdirectory owned by a user":
            "mount -t tmpfs -o mode=0700 tmpfs /run/imgboot && mkdir -m 0700 /run/imgboot/machines && chown 65534 /run/imgboot/machines"
        default: "mount -t tmpfs -o mode=0755 tmpfs /run/imgboot && mkdir -m 0755 /run/imgboot/machines"
        }
        let out = Hardening.inPrivateMountNamespace("""
            \(setup) || exit 99
            "$0" run "$1" -- true; status=$?
            stat -c '%a %u' /run/imgboot /run/imgboot/machines 2>/dev/null
            ls -A "$2/target" 2>/dev/null
            exit $status
            """, [Harness.binary, copy.path, scratch.path])
        let lines = out.stdout.split(separator: "\n").map(String.init)
        switch how {
        case "owned by a user":
            Hardening.expectOwnFailure(Harness.Output(status: out.status, stdout: "", stderr: out.stderr), image: copy.path,
                                       "/run/imgboot: owned by uid 65534, not root: refusing to use it (remove it)")
        case "a symlink":
            Hardening.expectOwnFailure(Harness.Output(status: out.status, stdout: "", stderr: out.stderr), image: copy.path,
                                       "/run/imgboot: not a directory (imgboot never follows a symlink here): refusing to use it (remove it)")
            #expect(!lines.contains("machines"), "nothing was made through the symlink: \(lines)")
        case "a subdirectory owned by a user":
            Hardening.expectOwnFailure(Harness.Output(status: out.status, stdout: "", stderr: out.stderr), image: copy.path,
                                       "/run/imgboot/machines: owned by uid 65534, not root: refusing to use it (remove it)")
        default:
            #expect(out.status == 0, "\(out.stderr)")
            #expect(lines.prefix(2) == ["700 0", "700 0"], "\(lines)")
        }
        copy.leftovers.expectNone(imageUnchanged: true)
    }
}

// MARK: - Helpers

/// A process in PID, mount and UTS namespaces of its own, whose hostname is `mark`: what a
/// machine's recycled leader PID could name. It reports every signal it gets on its stdout
/// (as the init of its PID namespace, a signal without a handler would not even reach it).
final class Foreigner {
    let mark = "foreign-\(UUID().uuidString.prefix(8).lowercased())"
    let process: BackgroundProcess
    /// The host PID of its shell (PID 1 of its namespace).
    let pid: pid_t

    init() throws {
        let signals = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "CONT", "RTMIN+3", "RTMIN+4"]
        let traps = signals.map { "trap 'echo GOT-\($0)' \($0)" }.joined(separator: "; ")
        let mark = self.mark
        let started = try BackgroundProcess(["/usr/bin/unshare", "--uts", "--pid", "--mount", "--fork", "--mount-proc",
                                             "/bin/bash", "-c", "\(traps); hostname \(mark) && echo ready && while :; do sleep 0.1; done"])
        var found: pid_t?
        _ = started.wait(upTo: 30) {
            found = started.children().first
            return found != nil && started.stdout.contains("ready")
        }
        guard let found else { throw HarnessError("the foreign process did not start: \(started.stderr)") }
        process = started
        pid = found
    }

    /// Still running, and never signalled: nothing on its stdout but its start.
    func expectUntouched(_ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        usleep(300_000)  // a trap runs once the current sleep 0.1 is over
        #expect(kill(pid, 0) == 0 && Harness.commandName(of: pid) == "bash", "\(context): the foreign process is gone",
                sourceLocation: sourceLocation)
        #expect(process.stdout == "ready\n", "\(context): the foreign process was signalled: \(process.stdout)",
                sourceLocation: sourceLocation)
    }

    func end() {
        kill(pid, SIGKILL)
        process.kill()
    }
}

/// Looking at the state store as root, without imgboot.
enum Store {
    static let root = "/run/imgboot"

    static var unifiedRoot: String? {
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].first { FileManager.default.fileExists(atPath: $0 + "/cgroup.controllers") }
    }

    /// A machine's record, parsed.
    static func record(_ machine: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/machines/" + machine))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Writes a record into the existing file (or a new one, 0600) without replacing it: a lock
    /// held on the file stays held.
    static func writeInPlace(_ path: String, _ record: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: record)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HarnessError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw HarnessError("write \(path): \(String(cString: strerror(errno)))") }
    }

    /// A lock (flock, exclusive) the test itself holds on `path`, as an attacker would hold it:
    /// on a descriptor of the test process's own (close-on-exec, so no child it starts keeps it,
    /// and it goes with the test process whatever happens).
    final class Held {
        private var fd: Int32

        init(_ path: String) throws {
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw HarnessError("open \(path): \(String(cString: strerror(errno)))") }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let e = errno
                close(fd)
                throw HarnessError("lock \(path): \(String(cString: strerror(e)))")
            }
        }

        deinit { release() }

        func release() {
            guard fd >= 0 else { return }
            close(fd)
            fd = -1
        }
    }

    /// Field 22 of /proc/PID/stat.
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// The signals a process blocks (SigBlk of /proc/PID/status), as a mask.
    static func blockedSignals(of pid: pid_t) -> UInt64 {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }
        return line.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
    }

    /// Type, permission bits and owner of `path` (not following a symlink).
    static func info(_ path: String) -> (type: mode_t, mode: mode_t, uid: uid_t)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT, st.st_mode & 0o7777, st.st_uid)
    }

    /// Runs a command as nobody (uid and gid 65534, no supplementary groups).
    static func asNobody(_ command: [String]) -> Harness.Output {
        Harness.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + command)
    }
}
