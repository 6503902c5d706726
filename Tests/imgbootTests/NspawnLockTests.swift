import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 13, item 2: imgboot and systemd-nspawn see each other's image locks. nspawn (252)
/// locks `.#NAME.lck` beside the image and `/run/systemd/nspawn/locks/inode-DEV:INO` with open
/// file description locks (F_OFD_SETLK), read for read-only use, write for writing.
///
/// One way round, the test holds those files exactly as nspawn does (`NspawnStyleLock`: the
/// same call on the same files) and every imgboot command that uses the image is seen to honour
/// them. The other way round, the real `systemd-nspawn --image` is run while imgboot holds the
/// image: it must refuse ("Disk image … is currently busy"). nspawn refuses to start without a
/// udev control socket to talk to, and would then go on to boot; so it runs in a mount namespace
/// of the test's own with a stand-in socket at /run/udev/control (a listener that answers
/// nothing: nspawn only connects before its lock step) and /dev/null bound over
/// /dev/loop-control, where it stops right after the lock step with "Failed to set up loopback
/// block device" — the proof that it got past the lock. No udevd runs, no loop device is made.
///
/// Part of `MountCommandTests`, whose suites run one test at a time: these mount on the host.
extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct NspawnLockTests {
        // MARK: - imgboot honours nspawn's locks

        enum Holder: String, CaseIterable, Sendable, CustomTestStringConvertible {
            case localShared, localExclusive, globalShared, globalExclusive
            var exclusive: Bool { self == .localExclusive || self == .globalExclusive }
            var local: Bool { self == .localShared || self == .localExclusive }
            var testDescription: String { rawValue }
        }

        /// nspawn holds the image (read-only, or writable): what imgboot may still do with it,
        /// and the one line it says for what it may not. Each lock file alone is honoured. Once
        /// nspawn lets go, a writable run works: the refusals were the lock's doing.
        @Test(arguments: Holder.allCases)
        func imgbootHonoursNspawnsLocks(holder: Holder) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let original = Harness.sha256(s.image)
            let file = holder.local ? NspawnStyleLock.localFile(of: s.image) : try NspawnStyleLock.globalFile(of: s.image)
            let lock = try NspawnStyleLock(file, exclusive: holder.exclusive)
            let busy = "image is busy: in use by systemd-nspawn (or another tool) — "
                + (holder.local ? ".#basic.raw.lck" : file) + " is locked"

            // Writing is refused whatever nspawn does; reading only while nspawn writes.
            Hardening.expectOwnFailure(try Harness.imgboot(["run", "--volatile=no", s.image, "--", "true"]), image: s.image, busy)
            Hardening.expectOwnFailure(try s.mount([]), image: s.image, busy)
            let overlay = try Harness.imgboot(["run", s.image, "--", "cat", "/etc/imgboot-fixture"])
            let readOnly = try s.mount(["--read-only"])
            let inspect = try Harness.imgboot(["inspect", "--json=pretty", s.image])
            if holder.exclusive {
                Hardening.expectOwnFailure(overlay, image: s.image, busy)
                Hardening.expectOwnFailure(readOnly, image: s.image, busy)
                // inspect still shows the table; the metadata it would mount is out of reach.
                #expect(inspect.status == 0, "\(inspect.stderr)")
                #expect(inspect.stdout.contains("\"osRelease\": null"))
                #expect(inspect.stdout.contains(busy), "\(inspect.stdout)")
            } else {
                #expect(overlay.status == 0 && overlay.stdout == "basic\n", "\(overlay.stderr)")
                #expect(readOnly.status == 0, "\(readOnly.stderr)")
                try s.umountAndExpectNothingLeft(host)
                #expect(inspect.status == 0 && !inspect.stdout.contains("\"osRelease\": null"), "\(inspect.stdout) \(inspect.stderr)")
            }
            s.expectNothingLeft(host)
            #expect(Harness.sha256(s.image) == original)
            #expect(FileManager.default.fileExists(atPath: file), "imgboot removed a lock file nspawn holds")

            lock.release()
            let writable = try Harness.imgboot(["run", "--volatile=no", s.image, "--", "true"])
            #expect(writable.status == 0, "\(writable.stderr)")
            s.expectNothingLeft(host)
            #expect(NspawnStyleLock.files(of: s.image).isEmpty, "lock files left: \(NspawnStyleLock.files(of: s.image))")
        }

        // MARK: - nspawn honours imgboot's locks

        /// While `imgboot mount` has the tree (writable, or read-only) — long after the mount
        /// command itself has exited — and while `imgboot run --volatile=no` runs: the real
        /// systemd-nspawn refuses the image where it would write it, or read what imgboot
        /// writes; once imgboot is done, it gets past its lock step.
        @Test(.enabled(if: Self.hasNspawn, "systemd-nspawn is not installed (Debian package systemd-container)"))
        func nspawnHonoursImgbootsLocks() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let busy = "Disk image \(s.image) is currently busy."
            let pastTheLock = "Failed to set up loopback block device"

            try s.mountExpectingSuccess([])
            for options in [["--volatile=no"], ["--read-only"], ["--volatile=overlay"]] {
                let out = try Self.nspawn(s.image, options)
                #expect(out.stderr.contains(busy), "nspawn \(options) while imgboot mount has it writable: \(out.stderr)")
            }
            try s.umountAndExpectNothingLeft(host)

            try s.mountExpectingSuccess(["--read-only"])
            let writer = try Self.nspawn(s.image, ["--volatile=no"])
            #expect(writer.stderr.contains(busy), "nspawn --volatile=no while imgboot mount has it read-only: \(writer.stderr)")
            let reader = try Self.nspawn(s.image, ["--read-only"])
            #expect(reader.stderr.contains(pastTheLock) && !reader.stderr.contains(busy), "nspawn --read-only: \(reader.stderr)")
            try s.umountAndExpectNothingLeft(host)

            let run = try BackgroundProcess([Harness.binary, "run", "--volatile=no", s.image, "--", "sleep", "100"])
            defer { run.kill() }
            let started = run.wait(upTo: 60) { run.children().flatMap(Harness.children(of:)).contains { Harness.commandName(of: $0) == "sleep" } }
            try #require(started, "imgboot run did not start: \(run.stderr)")
            let whileRunning = try Self.nspawn(s.image, ["--read-only"])
            #expect(whileRunning.stderr.contains(busy), "nspawn --read-only while imgboot run writes: \(whileRunning.stderr)")
            run.signal(SIGTERM)
            #expect(run.exitStatus(within: 60) == 128 + SIGTERM)

            let free = try Self.nspawn(s.image, ["--volatile=no"])
            #expect(free.stderr.contains(pastTheLock) && !free.stderr.contains(busy), "nspawn once imgboot is done: \(free.stderr)")
            s.expectNothingLeft(host)
            #expect(NspawnStyleLock.files(of: s.image).isEmpty, "lock files left: \(NspawnStyleLock.files(of: s.image))")
        }

        // MARK: - The keeper of a mounted tree's locks

        /// `imgboot mount` leaves one process behind, `imgboot keep-locks IMAGE`, holding the
        /// locks: it holds no mount (its mount namespace is empty), nothing of the tree, and the
        /// lock files exist while it lives. `imgboot umount` ends it before returning, and the
        /// lock files go with it.
        @Test(arguments: [[], ["--read-only"], ["--volatile=overlay"]])
        func umountEndsTheKeeper(options: [String]) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(options)
            let keepers = Harness.processes(matching: "keep-locks \(s.image)")
            try #require(keepers.count == 1, "keepers: \(keepers)")
            let keeper = keepers[0]
            let mountinfo = try String(contentsOfFile: "/proc/\(keeper)/mountinfo", encoding: .utf8)
            #expect(mountinfo.isEmpty, "the keeper's mount namespace holds: \(mountinfo)")
            let links = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(keeper)/fd").compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(keeper)/fd/\($0)")
            }
            #expect(!links.contains { $0.hasPrefix(s.dir + "/mnt") || $0.hasPrefix("/dev/loop") }, "the keeper holds \(links)")
            #expect(Set(NspawnStyleLock.files(of: s.image)) == Set([NspawnStyleLock.localFile(of: s.image), try NspawnStyleLock.globalFile(of: s.image)]))

            try s.umountAndExpectNothingLeft(host)
            #expect(Harness.processes(matching: "keep-locks \(s.image)").isEmpty, "the keeper outlived imgboot umount")
            #expect(NspawnStyleLock.files(of: s.image).isEmpty, "lock files left: \(NspawnStyleLock.files(of: s.image))")
        }

        /// A tree taken down by other means — umount(8), or its private mount namespace ending
        /// with the shell that mounted it there — ends the keeper too (within its one-second
        /// look), and the locks with it: nspawn can have the image again.
        @Test(arguments: ["umount(8)", "private namespace"])
        func theKeeperEndsWithTheTree(how: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            if how == "umount(8)" {
                try s.mountExpectingSuccess([])
                try #require(Harness.run(["/bin/umount", "--recursive", s.mnt]).status == 0)
            } else {
                // The namespace ends with the shell; the keeper must not keep it (and the tree) alive.
                let out = Hardening.inPrivateMountNamespace(
                    "\"$0\" mount \"$1\" \"$2\" && test -n \"$(ls \"$2\"/usr)\" && pgrep -f \"keep-locks $1\" >/dev/null",
                    [Harness.binary, s.image, s.mnt])
                #expect(out.status == 0, "\(out.stderr)")
            }
            #expect(Harness.waitUntil(upTo: 10) { Harness.processes(matching: "keep-locks \(s.image)").isEmpty }, "the keeper is still there")
            #expect(Harness.waitUntil(upTo: 10) { Harness.loopDevices(backing: s.image).isEmpty }, "loop devices left")
            #expect(NspawnStyleLock.files(of: s.image).isEmpty, "lock files left: \(NspawnStyleLock.files(of: s.image))")
            #expect(s.mountsBelow().isEmpty)
            #expect(HostMounts(outside: s.dir) == host)
            // Its record is stale now; the next mount there sweeps it and works.
            try s.mountExpectingSuccess(["--read-only"])
            try s.umountAndExpectNothingLeft(host)
        }

        /// The keeper holds no copy of any mount: a loop-mounted filesystem of the test's own,
        /// mounted before the tree and unmounted while the tree stays, lets its loop device go
        /// at once. (A keeper in a plain copy of the mount namespace would hold it attached for
        /// as long as the tree is mounted.)
        @Test func theKeeperHoldsNoOtherMount() throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            let other = try Scratch("bare-ext4")
            defer { other.cleanUp() }
            try #require(Harness.run(["/bin/mount", "-o", "ro,loop", other.image, other.mnt]).status == 0)
            var mounted = true
            defer { if mounted { _ = Harness.run(["/bin/umount", other.mnt]) } }
            try s.mountExpectingSuccess([])
            try #require(Harness.run(["/bin/umount", other.mnt]).status == 0)
            mounted = false
            #expect(Harness.waitUntil(upTo: 5) { Harness.loopDevices(backing: other.image).isEmpty },
                    "the other filesystem's loop device stays attached while the tree is mounted")
            try s.umountAndExpectNothingLeft(host)
        }

        // MARK: - Helpers

        static let hasNspawn = FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-nspawn")

        /// `systemd-nspawn --image=IMAGE OPTIONS… true`, stopped right after its lock step (see
        /// the suite's comment): its output.
        static func nspawn(_ image: String, _ options: [String]) throws -> Harness.Output {
            // The stand-in socket is mounted on /run/udev: a directory made for it is removed after.
            var made = false
            if !FileManager.default.fileExists(atPath: "/run/udev") {
                try FileManager.default.createDirectory(atPath: "/run/udev", withIntermediateDirectories: false)
                made = true
            }
            defer { if made { rmdir("/run/udev") } }
            return Hardening.inPrivateMountNamespace("""
                mount -t tmpfs -o size=1m,mode=0755 imgboot-test /run/udev || exit 99
                mount --bind /dev/null /dev/loop-control || exit 99
                python3 -c '
                import socket
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.bind("/run/udev/control")
                s.listen(16)
                open("/run/udev/ready", "w").close()
                while True:
                    s.accept()
                ' &
                listener=$!
                while [ ! -e /run/udev/ready ]; do sleep 0.02; done
                image="$1"
                shift
                "$0" --image="$image" "$@" true
                status=$?
                kill $listener
                exit $status
                """, ["/usr/bin/systemd-nspawn", image] + options)
        }
    }
}

/// A lock file held the way systemd-nspawn 252 holds its image locks (`make_lock_file`):
/// opened O_CREAT|O_RDWR|O_NOFOLLOW, mode 0600, and locked whole with fcntl(F_OFD_SETLK),
/// F_RDLCK or F_WRLCK; released as nspawn releases it (the last holder removes the file).
final class NspawnStyleLock {
    let path: String
    private var fd: Int32
    private var exclusive: Bool

    /// F_OFD_SETLK (Linux; Glibc's Swift module leaves it out).
    static let setLock: Int32 = 37

    init(_ path: String, exclusive: Bool) throws {
        self.path = path
        self.exclusive = exclusive
        fd = open(path, O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0o600)
        guard fd >= 0 else { throw HarnessError("open \(path): \(String(cString: strerror(errno)))") }
        guard lock(exclusive ? F_WRLCK : F_RDLCK) else {
            let e = errno
            close(fd)
            throw HarnessError("lock \(path): \(String(cString: strerror(e)))")
        }
    }

    deinit { release() }

    private func lock(_ type: Int32) -> Bool {
        var request = flock()
        request.l_type = Int16(type)
        request.l_whence = Int16(SEEK_SET)
        return fcntl(fd, Self.setLock, &request) == 0
    }

    func release() {
        guard fd >= 0 else { return }
        if !exclusive && lock(F_WRLCK) { exclusive = true }
        if exclusive { unlink(path) }
        close(fd)
        fd = -1
    }

    /// `.#NAME.lck` beside the image.
    static func localFile(of image: String) -> String {
        let url = URL(fileURLWithPath: image)
        return url.deletingLastPathComponent().path + "/.#" + url.lastPathComponent + ".lck"
    }

    /// `/run/systemd/nspawn/locks/inode-DEV:INO`, made if missing as nspawn makes it.
    static func globalFile(of image: String) throws -> String {
        var st = stat()
        guard stat(image, &st) == 0 else { throw HarnessError("stat \(image): \(String(cString: strerror(errno)))") }
        try FileManager.default.createDirectory(atPath: "/run/systemd/nspawn/locks", withIntermediateDirectories: true)
        return "/run/systemd/nspawn/locks/inode-\(UInt64(st.st_dev)):\(UInt64(st.st_ino))"
    }

    /// The image's lock files that exist.
    static func files(of image: String) -> [String] {
        [localFile(of: image), (try? globalFile(of: image)) ?? ""].filter { FileManager.default.fileExists(atPath: $0) }
    }
}
