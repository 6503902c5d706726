import Foundation
import Testing

/// The notify protocol as a program that starts imgboot sees it: a datagram socket of the
/// test's own as `NOTIFY_SOCKET`, and what arrives there. In BootTests' serialized suite: they
/// boot Debian too.
extension BootTests {
    /// `--notify-ready=yes`: the first datagram says the container runs but not READY=1; READY=1
    /// comes from the init, so that by the time it arrives imgboot has printed its ready line
    /// (it does so before passing READY=1 on). The console, going to a pipe, is 80x24.
    @Test func notifyReadyYesForwardsTheInitsReady() throws {
        let image = try debian()
        let socket = try TestNotifySocket(path: image.directory + "/notify")
        let boot = try BackgroundProcess([Harness.binary, "boot", "--console=read-only", "--notify-ready=yes", image.path],
                                         environment: ["NOTIFY_SOCKET": socket.address])
        defer { boot.kill() }
        let first = try #require(socket.receive(within: Self.bootLimit), "nothing on the notify socket; stderr: \(boot.stderr)")
        #expect(first.contains("STATUS=Container running."), "first datagram: \(first)")
        #expect(!first.contains("READY=1"), "READY=1 before the init said it: \(first)")
        var ready: [String] = []
        while let message = socket.receive(within: Self.bootLimit) {
            if message.contains("READY=1") {
                ready.append(message)
                break
            }
        }
        try #require(!ready.isEmpty, "no READY=1; stderr: \(boot.stderr)")
        #expect(boot.stderr.contains("imgboot: \(image.machine) is ready (after "), "stderr: \(boot.stderr)")

        let size = try Harness.imgboot(["enter", image.machine, "--", "stty", "-F", "/dev/console", "size"])
        #expect(size.stdout == "24 80\n", "console size: \(size.stdout) \(size.stderr)")

        boot.signal(SIGTERM)
        #expect(boot.exitStatus(within: Self.haltLimit) == 0)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// Without --notify-ready (nspawn's default), READY=1 comes as soon as the init runs — long
    /// before the system is ready — and the init's own READY=1 is passed on after it. Here on an
    /// abstract socket (`@NAME`).
    @Test func notifyReadyNoSaysReadyWhenTheInitRuns() throws {
        let image = try debian()
        let socket = try TestNotifySocket(abstract: "imgboot-test-\(image.machine)")
        let boot = try BackgroundProcess([Harness.binary, "boot", "--console=passive", image.path],
                                         environment: ["NOTIFY_SOCKET": socket.address])
        defer { boot.kill() }
        let first = try #require(socket.receive(within: Self.bootLimit), "nothing on the notify socket; stderr: \(boot.stderr)")
        #expect(first.split(separator: "\n").contains("READY=1") && first.contains("STATUS=Container running."), "\(first)")
        var forwarded = false
        while let message = socket.receive(within: Self.bootLimit) {
            if message.split(separator: "\n").contains("READY=1") {
                forwarded = true
                break
            }
        }
        #expect(forwarded, "the init's READY=1 was not passed on")
        #expect(boot.stderr.contains("imgboot: \(image.machine) is ready (after "))
        boot.signal(SIGTERM)
        #expect(boot.exitStatus(within: Self.haltLimit) == 0)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// imgboot's own failure on the notify socket: STATUS= the one-line error, and a code a
    /// program can act on — `no-init` for an image without systemd under --init=systemd
    /// (busybox's /sbin/init is not booted), `failed` for a malformed image (`run` too).
    @Test(arguments: [
        (["boot", "--init=systemd"], "basic", "no-init", "no init to boot: none of /usr/lib/systemd/systemd, /lib/systemd/systemd is in the image"),
        (["run"], "overlap", "failed", "invalid partition table: partitions 1 and 2 overlap"),
        (["boot"], "overlap", "failed", "invalid partition table: partitions 1 and 2 overlap"),
    ])
    func failureIsReportedOnTheNotifySocket(_ command: [String], _ fixture: String, _ code: String, _ reason: String) throws {
        let image = try ImageCopy(fixture)
        let socket = try TestNotifySocket(path: image.directory + "/notify")
        let process = try BackgroundProcess([Harness.binary] + command + [image.path] + (command == ["run"] ? ["--", "true"] : []),
                                            environment: ["NOTIFY_SOCKET": socket.address])
        defer { process.kill() }
        #expect(process.exitStatus(within: Self.haltLimit) == 125)
        let message = try #require(socket.receive(within: 5), "nothing on the notify socket; stderr: \(process.stderr)")
        let fields = message.split(separator: "\n").map(String.init)
        #expect(fields == ["STATUS=\(image.path): \(reason)" + (code == "no-init" ? " (use `imgboot run` to run a command)" : ""),
                           "X_IMGBOOT_ERROR=\(code)"])
        #expect(!fields.contains("READY=1"))
        #expect(process.stderr.hasPrefix("imgboot: \(image.path): \(reason)"), "stderr: \(process.stderr)")
        #expect(!process.stderr.contains("is ready"), "busybox's init was booted")
        image.leftovers.expectNone(imageUnchanged: true)
    }
}

/// An AF_UNIX datagram socket of the test's, bound at a path (removed with the test's
/// directory) or an abstract name: what a service manager gives a program as NOTIFY_SOCKET.
final class TestNotifySocket {
    let address: String
    private let fd: Int32

    convenience init(path: String) throws { try self.init(address: path) }
    convenience init(abstract name: String) throws { try self.init(address: "@" + name) }

    private init(address: String) throws {
        self.address = address
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(address.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let length = MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count + (bytes.first == 0 ? 0 : 1)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, byte) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw HarnessError("bind \(address): \(String(cString: strerror(e)))")
        }
    }

    deinit { close(fd) }

    /// The next datagram, or nil when none arrives within `seconds`.
    func receive(within seconds: Double) -> String? {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let n = poll(&ready, 1, Int32(max(1, min(1000, deadline.timeIntervalSinceNow * 1000))))
            if n == 1 { break }
        }
        guard ready.revents != 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }
}
