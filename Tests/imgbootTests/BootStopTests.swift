import Foundation
import Testing

/// Issue 13, item 4: `imgboot boot` of an init that is not systemd stops on SIGTERM. basic's
/// init is busybox's, which ignores SIGRTMIN+3 (systemd's halt, the default kill signal) and
/// halts on SIGUSR1, powers off on SIGUSR2. Asked to stop, imgboot sends the kill signal and
/// gives the init `--stop-timeout` seconds (default 30) to end; then it kills it: status 137.
/// An init that knows the signal it is sent ends cleanly: 0.
///
/// Part of `BootTests`, one test at a time.
extension BootTests {
    @Suite struct StopTests {
        /// A booting basic, up once busybox's init has started its console.
        static func bootBusybox(_ options: [String]) throws -> Boot {
            let boot = try Boot(try ImageCopy("basic"), ["--console=read-only", "--log-level=notice"] + options)
            let prompt = boot.imgboot.wait(upTo: BootTests.bootLimit) {
                boot.imgboot.stdout.contains("Please press Enter to activate this console.")
            }
            try #require(prompt, "console: \(boot.imgboot.stdout); stderr: \(boot.imgboot.stderr)")
            #expect(Harness.commandName(of: try boot.initPID()) == "init")
            return boot
        }

        /// One SIGTERM, and nothing else: the init ignores SIGRTMIN+3, and is killed when its
        /// time is up — not before (nothing else would end it), and not much after. The default
        /// time once, a shorter one given with --stop-timeout.
        @Test(arguments: [nil, 3.0])
        func anInitThatIgnoresTheKillSignalIsKilledInTime(stopTimeout: Double?) throws {
            let boot = try Self.bootBusybox(stopTimeout.map { ["--stop-timeout=\(Int($0))"] } ?? [])
            defer { boot.imgboot.kill() }
            let limit = stopTimeout ?? 30
            let asked = Date()
            boot.imgboot.signal(SIGTERM)
            let status = boot.imgboot.exitStatus(within: limit + BootTests.haltLimit)
            let took = Date().timeIntervalSince(asked)
            #expect(status == 137, "stderr: \(boot.imgboot.stderr)")
            #expect(took >= limit - 0.5, "killed after \(took) s, before its \(limit) s were up")
            let machine = boot.image.machine
            #expect(boot.imgboot.stderr == """
                imgboot: notice: \(machine): asking the init to halt with SIGRTMIN+3 (again to kill it; killed in \(Int(limit)) s otherwise)
                imgboot: warning: \(machine): the init did not stop within \(Int(limit)) s of SIGRTMIN+3: killing it

                """)
            boot.image.leftovers.expectNone(imageUnchanged: true)
        }

        /// --kill-signal names a signal busybox's init knows: it halts or powers off by itself,
        /// long before its time is up, and imgboot exits 0 (a halt and a poweroff alike end
        /// the PID namespace with SIGINT, as for systemd).
        @Test(arguments: [("SIGUSR2", "poweroff"), ("USR1", "halt"), ("\(SIGUSR2)", "poweroff")])
        func aKillSignalTheInitKnowsStopsItCleanly(signal: String, action: String) throws {
            let boot = try Self.bootBusybox(["--kill-signal=\(signal)"])
            defer { boot.imgboot.kill() }
            boot.imgboot.signal(SIGTERM)
            #expect(boot.imgboot.exitStatus(within: BootTests.haltLimit) == 0, "stderr: \(boot.imgboot.stderr)")
            #expect(boot.imgboot.stdout.contains("Requesting system \(action)"), "console: \(boot.imgboot.stdout)")
            let name = signal.hasPrefix("SIG") ? signal : signal == "USR1" ? "SIGUSR1" : "SIGUSR2"
            #expect(boot.imgboot.stderr == "imgboot: notice: \(boot.image.machine): asking the init to halt with \(name) (again to kill it; killed in 30 s otherwise)\n")
            boot.image.leftovers.expectNone(imageUnchanged: true)
        }

        /// What is not a signal or a time: one usage error, 125, nothing started.
        @Test(arguments: [
            (["--kill-signal=SIGNOPE"], "--kill-signal=SIGNOPE: not a signal"),
            (["--kill-signal=RTMIN+99"], "--kill-signal=RTMIN+99: not a signal"),
            (["--kill-signal=0"], "--kill-signal=0: not a signal"),
            (["--stop-timeout=0"], "--stop-timeout=0: seconds, more than 0"),
            (["--stop-timeout=-1"], "--stop-timeout=-1: seconds, more than 0"),
        ])
        func badOptionsAreRefused(options: [String], message: String) throws {
            let image = try ImageCopy("basic")
            let out = try Harness.imgboot(["boot"] + options + [image.path])
            #expect(out.status == 125)
            #expect(out.stderr.hasPrefix("Error: \(message)"), "\(out.stderr)")
            image.leftovers.expectNone(imageUnchanged: true)
        }
    }
}
