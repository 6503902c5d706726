#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Support

/// Keeps an image's locks (`ImageLock`: imgboot's own and systemd-nspawn's) for as long as a
/// tree that `imgboot mount` mounted uses the image — after `imgboot mount` itself has exited.
/// The locks belong to open file descriptions, which live as long as a process holds them: the
/// keeper is that process, `imgboot keep-locks IMAGE`, in a session of its own. It holds
/// nothing but the locks (no descriptor of the tree or a loop device, and a mount namespace of
/// its own with nothing mounted in it: see `serve`), so it keeps nothing mounted or attached.
///
/// It ends when every loop device of the tree is detached — the tree unmounted, by `imgboot
/// umount`, umount(8), or with its mount namespace — and then releases the locks as nspawn
/// does (the last user removes the lock files). It looks every second, and when sent SIGTERM
/// (`imgboot umount` does, once it has unmounted, to end it at once). A SIGTERM while the tree
/// is still mounted is ignored: the image is still in use.
public enum LockKeeper {
    /// The subcommand of imgboot that runs `serve`.
    public static let subcommand = "keep-locks"

    /// Starts the keeper of `lock`'s locks for the loop devices `devices`, and waits (at most
    /// 5 s) until it says it holds them; then closes `lock`'s descriptors, without unlocking.
    /// `executable`: imgboot itself. Returns the keeper's PID.
    static func start(_ lock: ImageLock, devices: [LoopIdentity], image: String,
                      executable: String = "/proc/self/exe") throws(AttachError) -> pid_t {
        let held = lock.heldLocks
        let orders = Orders(exclusive: held.exclusive, nspawn: held.nspawn.map(\.path), devices: devices)
        var input: [Int32] = [-1, -1], output: [Int32] = [-1, -1]
        guard imgboot_pipe_cloexec(&input) == 0 else { throw AttachError(image: image, .keepLocks("create a pipe"), errno: errno) }
        defer { for fd in input where fd >= 0 { close(fd) } }
        guard imgboot_pipe_cloexec(&output) == 0 else { throw AttachError(image: image, .keepLocks("create a pipe"), errno: errno) }
        defer { for fd in output where fd >= 0 { close(fd) } }

        // The keeper's descriptor 3 is imgboot's own lock, 4… nspawn's, in the orders' order.
        let keep = [held.image] + held.nspawn.map(\.fd)
        let argv = CStringArray(["imgboot", subcommand, image])
        let env = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        let pid = keep.withUnsafeBufferPointer { keepPointer in
            imgboot_spawn_detached(executable, argv.pointer, env.pointer, input[0], output[1],
                                   keepPointer.baseAddress, Int32(keep.count))
        }
        guard pid > 0 else { throw AttachError(image: image, .keepLocks("start imgboot \(subcommand)"), errno: errno) }
        close(input[0]); input[0] = -1
        close(output[1]); output[1] = -1

        let text = Array((orders.json.serialized(pretty: false) + "\n").utf8)
        // A keeper that died at once must not take imgboot down with SIGPIPE: its tree is
        // mounted, and is to be taken down again.
        let previous = signal(SIGPIPE, SIG_IGN)
        let written = text.withUnsafeBytes { write(input[1], $0.baseAddress, $0.count) }
        signal(SIGPIPE, previous)
        close(input[1]); input[1] = -1
        let answer = readLine(output[0], timeout: 5)
        guard written == text.count, answer == "ready" else {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            let why = answer.map { $0.isEmpty ? "it ended without a word" : $0 } ?? "it did not answer within 5 s"
            throw AttachError(image: image, .keepLocks("keep the image locked after imgboot exits: \(why)"))
        }
        lock.relinquish()
        return pid
    }

    /// What the keeper is told on its stdin (one line of JSON).
    struct Orders {
        var exclusive: Bool
        /// nspawn's lock files held on descriptors 4, 5, …
        var nspawn: [String]
        var devices: [LoopIdentity]

        var json: JSON {
            .object([
                ("exclusive", .bool(exclusive)),
                ("nspawn", .array(nspawn.map { .string($0) })),
                ("devices", .array(devices.map { d in
                    .object([
                        ("number", .int(Int64(d.number))),
                        ("diskSequence", d.diskSequence.map { .int(Int64(bitPattern: $0)) } ?? .null),
                        ("backingFile", .string(d.backingFile)),
                        ("offset", .int(Int64(bitPattern: d.offset))),
                    ])
                })),
            ])
        }

        init(exclusive: Bool, nspawn: [String], devices: [LoopIdentity]) {
            self.exclusive = exclusive
            self.nspawn = nspawn
            self.devices = devices
        }

        init?(json: JSON) {
            guard let exclusive = json["exclusive"]?.boolValue, case .array(let files)? = json["nspawn"],
                  case .array(let devices)? = json["devices"] else { return nil }
            self.exclusive = exclusive
            nspawn = files.compactMap(\.stringValue)
            self.devices = devices.compactMap { d in
                guard let number = d["number"]?.intValue.flatMap({ Int(exactly: $0) }), let offset = d["offset"]?.intValue
                else { return nil }
                return LoopIdentity(number: number, diskSequence: d["diskSequence"]?.intValue.map { UInt64(bitPattern: $0) },
                                    backingFile: d["backingFile"]?.stringValue, offset: UInt64(bitPattern: offset))
            }
            guard nspawn.count == files.count, self.devices.count == devices.count else { return nil }
        }
    }

    /// The keeper's life (`imgboot keep-locks`): reads its orders, moves to a mount namespace
    /// of its own with nothing mounted in it, says "ready", and holds the locks until the
    /// devices are detached. Returns the exit status. Started otherwise than by `start`, it
    /// holds nothing and says so.
    ///
    /// Why a namespace of its own with nothing in it: staying in imgboot mount's namespace would
    /// keep that namespace alive — with the tree, were it a private one (`unshare -m`) — and a
    /// plain copy of it would hold a copy of every mount there is, keeping every loop device
    /// mounted anywhere at that moment attached (anyone's, not only this tree's) after its
    /// owner unmounts it. So the copy is made private (an unmount in it must never reach the
    /// original) and then detached whole; only a descriptor of /sys/block stays, to look at the
    /// devices.
    public static func serve() -> Int32 {
        guard let line = readLine(0, timeout: 5), let json = try? JSON(parsing: Array(line.utf8)),
              let orders = Orders(json: json) else {
            say("no orders on stdin (imgboot mount starts this)")
            return 2
        }
        let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP, 0]
        let signalFD = signals.withUnsafeBufferPointer { imgboot_signalfd($0.baseAddress) }
        guard signalFD >= 0 else { return fail("signalfd") }
        let sysBlock = open("/sys/block", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard sysBlock >= 0 else { return fail("open /sys/block") }
        guard imgboot_unshare(IMGBOOT_CLONE_NEWNS) == 0 else { return fail("unshare the mount namespace") }
        guard mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0 else { return fail("make its mounts private") }
        guard umount2("/", Int32(MNT_DETACH)) == 0 else { return fail("detach its mounts") }

        // On every failure so far the locks went with this process, unreleased: imgboot mount
        // still holds them, and releases them itself.
        guard !orders.devices.allSatisfy({ $0.isDetached(sysBlock: sysBlock) }) else {
            say("the tree's loop devices are already detached")
            return 1
        }
        say("ready")
        dup2(2, 1)  // /dev/null: the pipe's end goes, and imgboot mount stops reading

        var pause: Int32 = 1000
        while true {
            var ready = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
            let n = poll(&ready, 1, pause)
            if n < 0 && errno != EINTR { break }
            while imgboot_signalfd_read(signalFD) > 0 {}
            if orders.devices.allSatisfy({ $0.isDetached(sysBlock: sysBlock) }) { break }
            // Signalled: the tree is being taken down, and a device may take a moment to go
            // (autoclear is asynchronous): look again soon, then less and less often.
            pause = n > 0 ? 2 : min(pause * 2, 1000)
        }
        release(orders)
        return 0
    }

    private static func fail(_ step: String) -> Int32 {
        say("cannot \(step): \(errnoString(errno))")
        return 1
    }

    /// Releases the inherited locks: nspawn's as nspawn does (the last user removes the file),
    /// imgboot's by closing.
    private static func release(_ orders: Orders) {
        for (index, path) in orders.nspawn.enumerated() {
            let fd = Int32(4 + index)
            if orders.exclusive || imgboot_ofd_lock(fd, 2) == 0 { unlink(path) }
            close(fd)
        }
        close(3)
    }

    private static func say(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }

    /// One line (without its newline) read from `fd` within `timeout` seconds: "" at end of
    /// file with nothing read, nil when nothing came in time.
    static func readLine(_ fd: Int32, timeout: Double) -> String? {
        let deadline = Deadline(after: timeout)
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 1 << 20 {
            guard waitReadable(fd, until: deadline) else { return nil }
            let got = read(fd, &byte, 1)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 || byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

