import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 6, concurrency: many containers of one image at once, the image lock between
/// writable and volatile users, and imgboot beside another program that attaches and detaches
/// loop devices all the while.
///
/// Proven elsewhere: the lock itself (`ImageLockTests`); attaching from 8 threads while
/// `losetup` attaches and detaches 200 times (`AttachTests.ConcurrencyTests`, the library level:
/// here it is the `imgboot run` command line); `imgboot mount` of a mounted image refused
/// (`MountCommandTests`).
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct HardeningConcurrencyTests {
    /// The directories each mode lets a container write, in RAM.
    static let writable: [String: [String]] = [
        "overlay": ["/etc", "/root", "/var", "/home", "/srv"],
        "yes": ["/etc", "/root", "/var"],
        "state": ["/var"],
    ]

    /// 8 containers of one image at once: every one starts, writes a token of its own, waits
    /// (bounded) until all 8 have written theirs, then finds exactly its own token back and no
    /// other, and exits 0. Default machine names are made unique (basic-…, basic-…-2, …).
    @Test(arguments: ["overlay", "yes", "state"])
    func eightContainersOfOneImage(mode: String) throws {
        let image = try ImageCopy("basic")
        let barrier = image.directory + "/barrier"
        try FileManager.default.createDirectory(atPath: barrier, withIntermediateDirectories: true)
        let directories = try #require(Self.writable[mode]).joined(separator: " ")
        let script = """
            for d in \(directories); do echo "$TOKEN" > $d/token || exit 1; done
            touch /run/barrier/$TOKEN
            i=0; while [ $(ls /run/barrier | wc -l) -lt 8 ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
            ls /run/barrier | wc -l
            grep -rhs imgboot-token- /etc /root /var /home /srv | sort -u
            hostname
            """
        var runs: [(token: String, process: BackgroundProcess)] = []
        defer { for run in runs { run.process.kill() } }
        for n in 1...8 {
            let token = "imgboot-token-\(n)-\(image.machine)"
            runs.append((token, try BackgroundProcess([Harness.binary, "run", "--volatile=\(mode)", "--bind=\(barrier):/run/barrier",
                                                       "--setenv=TOKEN=\(token)", image.path, "--", "sh", "-c", script])))
        }
        var hostnames: Set<String> = []
        for run in runs {
            #expect(run.process.exitStatus(within: 120) == 0, "\(run.token): \(run.process.stderr)")
            let lines = run.process.stdout.split(separator: "\n").map(String.init)
            try #require(lines.count == 3, "\(run.token): \(lines); \(run.process.stderr)")
            #expect(lines[0] == "8", "\(run.token) did not see all 8 running at once")
            #expect(lines[1] == run.token, "\(run.token) saw: \(lines[1])")
            hostnames.insert(lines[2])
        }
        #expect(hostnames.count == 8, "machine names: \(hostnames)")
        for name in hostnames {
            #expect(Harness.machineCgroup(name) == nil && Harness.machineFiles(name).isEmpty, "\(name) left something")
        }
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// Waits until imgboot's container runs its command (sleep).
    private func waitUntilRunning(_ imgboot: BackgroundProcess, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let running = imgboot.wait(upTo: 60) {
            imgboot.children().flatMap(Harness.children(of:)).contains { Harness.commandName(of: $0) == "sleep" }
                || imgboot.children().contains { Harness.commandName(of: $0) == "init" }
        }
        try #require(running, "the container did not start: \(imgboot.stderr)", sourceLocation: sourceLocation)
    }

    /// A writable run next to a volatile one (run, or boot) of the same image, a second writable
    /// run next to a writable one, and a volatile run next to a writable one: refused, "image is
    /// busy", without disturbing the first, which then ends as usual.
    @Test(arguments: [
        (["run", "--volatile=overlay"], ["--volatile=no"], "image is busy: another imgboot uses it"),
        (["boot", "--volatile=overlay", "--console=passive", "--log-level=notice"], ["--volatile=no"], "image is busy: another imgboot uses it"),
        (["run", "--volatile=state"], ["--volatile=no"], "image is busy: another imgboot uses it"),
        (["run", "--volatile=no"], ["--volatile=no"], "image is busy: another imgboot uses it"),
        (["run", "--volatile=no"], ["--volatile=overlay"], "image is busy: another imgboot uses it writably"),
        (["run", "--volatile=no"], ["--read-only"], "image is busy: another imgboot uses it writably"),
    ] as [([String], [String], String)])
    func secondUserOfABusyImageIsRefused(first: [String], second: [String], message: String) throws {
        let image = try ImageCopy("basic")
        let boot = first[0] == "boot"
        let command = boot ? [] : ["--", "sleep", "1000"]
        let firstRun = try BackgroundProcess([Harness.binary] + first + ["--machine=first-\(image.machine)", image.path] + command)
        defer { firstRun.kill() }
        try waitUntilRunning(firstRun)

        let refused = try Harness.imgboot(["run"] + second + ["--machine=second-\(image.machine)", image.path, "--", "true"])
        Hardening.expectOwnFailure(refused, image: image.path, message)
        #expect(Harness.machineCgroup("second-\(image.machine)") == nil && Harness.machineFiles("second-\(image.machine)").isEmpty)
        #expect(firstRun.isRunning, "the first one was disturbed: \(firstRun.stderr)")

        // The first ends as usual: run passes SIGTERM to sleep; busybox's init ignores the halt
        // request, the second signal kills it (see BootTests.busyboxInit).
        firstRun.signal(SIGTERM)
        if boot {
            _ = firstRun.wait(upTo: 30) { firstRun.stderr.contains("asking the init to halt") }
            firstRun.signal(SIGTERM)
        }
        #expect(firstRun.exitStatus(within: 60) == (boot ? 137 : 143))
        #expect(Harness.machineCgroup("first-\(image.machine)") == nil && Harness.machineFiles("first-\(image.machine)").isEmpty)
        image.leftovers.expectNone(imageUnchanged: first.contains("--volatile=no") ? false : true)
    }

    /// imgboot next to another program that attaches and detaches a loop device of its own
    /// 100 times with losetup: every run of imgboot works, every losetup works and always finds
    /// its own file behind its device, nobody detaches anyone else's device, and nothing is left.
    @Test func besideLosetupAttachingAndDetaching() throws {
        let image = try ImageCopy("basic")
        let other = image.directory + "/other.img"
        try #require(Harness.run(["/usr/bin/truncate", "-s", "16M", other]).status == 0)
        let loop = try BackgroundProcess(["/bin/sh", "-c", """
            f=$0; i=0
            while [ $i -lt 100 ]; do
                d=$(/sbin/losetup -f --show "$f") || { echo "attach $i failed"; exit 1; }
                b=$(/sbin/losetup -n -O BACK-FILE "$d")
                [ "$b" = "$f" ] || { echo "$d shows $b"; exit 1; }
                /sbin/losetup -d "$d" || { echo "detach $d failed"; exit 1; }
                i=$((i+1))
            done
            echo done $i
            """, other])
        defer { loop.kill() }

        // Two imgboots at a time, each run again and again, until losetup's loop is through.
        var runs = 0
        while loop.isRunning || runs < 4 {
            let pair = try (0..<2).map { _ in
                try BackgroundProcess([Harness.binary, "run", image.path, "--", "cat", "/etc/imgboot-fixture", "/home/user/hello.txt"])
            }
            for run in pair {
                #expect(run.exitStatus(within: 120) == 0, "\(run.stderr)")
                #expect(run.stdout == "basic\nhello from the imgboot home partition\n")
                runs += 1
            }
            if runs > 400 { break }  // a guard against a hang, not a count that matters
        }
        #expect(loop.exitStatus(within: 120) == 0, "losetup: \(loop.stdout)\(loop.stderr)")
        #expect(loop.stdout == "done 100\n", "\(loop.stdout)\(loop.stderr)")
        #expect(Harness.loopDevices(backing: other).isEmpty)
        image.leftovers.expectNone(imageUnchanged: true)
    }
}
