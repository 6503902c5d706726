import ArgumentParser
import Boot
import Dissect

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
    struct Boot: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "boot",
            abstract: "Boot the image's init (systemd) as PID 1 in a container.",
            discussion: """
                The init is the first of /usr/lib/systemd/systemd, /lib/systemd/systemd, \
                /sbin/init. When it reports READY=1, imgboot prints "imgboot: MACHINE is ready \
                (after N.NNN s)" on stderr (not with -q). SIGTERM or SIGINT (Ctrl-C when not \
                interactive) asks the init to halt (--kill-signal); a second one kills it, and so \
                does the end of --stop-timeout. Exit status 0 after a clean poweroff or halt, 133 \
                after a reboot, 137 when the init was killed. Default --volatile=overlay. \
                Everything after IMAGE that is not an option of imgboot's goes to the init. With \
                $NOTIFY_SOCKET set, imgboot sends READY=1 there once the init runs (with \
                --notify-ready=yes: when the init reports READY=1), passes on the init's STATUS=, \
                and on its own failure sends STATUS=<the error> and X_IMGBOOT_ERROR=no-init or \
                failed.

                EXAMPLES:
                  imgboot boot debian.raw                 its console on this terminal
                  imgboot boot -q --console=passive debian.raw &    in the background
                  imgboot boot debian.raw systemd.unit=rescue.target
                  imgboot boot -P debian.raw < input.txt  the console through pipes
                  imgboot boot --kill-signal=SIGUSR2 busybox.raw
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions
        @OptionGroup var machine: MachineOptions

        @Option(help: ArgumentHelp("What imgboot relays of the container's console:", valueName: "mode"))
        var console: ContainerSpec.Console?

        @Flag(name: [.customShort("P"), .customLong("pipe")], help: "Short for --console=pipe (nspawn's -P).")
        var pipe = false

        @Option(help: ArgumentHelp(
            "The signal that asks the init to stop when imgboot gets SIGTERM or SIGINT (default SIGRTMIN+3, systemd's halt; busybox's init halts on SIGUSR1, powers off on SIGUSR2).",
            valueName: "signal"))
        var killSignal: String?

        @Option(help: ArgumentHelp(
            "How long the init has to end after the kill signal before it is killed (default \(Int(ContainerSpec.defaultStopTimeout)) s).",
            valueName: "seconds"))
        var stopTimeout: Double?

        @Option(help: ArgumentHelp(
            "When READY=1 goes to $NOTIFY_SOCKET:",
            valueName: "yes|no"))
        var notifyReady: YesNo = .no

        @Option(name: .customLong("init"), help: ArgumentHelp("Which of the image's inits is booted:", valueName: "which"))
        var initSelection: ContainerSpec.InitSelection = .auto

        @Argument(help: "The raw disk image (or block device).", completion: IMGBoot.imageCompletion)
        var image: String

        @Argument(parsing: .remaining, help: ArgumentHelp("Arguments for the init.", valueName: "init-arg"))
        var initArguments: [String] = []

        func validate() throws {
            if pipe, let console, console != .pipe {
                throw ValidationError("-P with --console=\(console.rawValue): -P means --console=pipe")
            }
            if let killSignal, SignalName.number(killSignal) == nil {
                throw ValidationError("--kill-signal=\(killSignal): not a signal (a name such as SIGUSR2 or SIGRTMIN+4, or a number)")
            }
            if let stopTimeout, !(stopTimeout > 0 && stopTimeout <= 24 * 3600) {
                let given = stopTimeout == stopTimeout.rounded() && abs(stopTimeout) < 1e9 ? String(Int(stopTimeout)) : String(stopTimeout)
                throw ValidationError("--stop-timeout=\(given): seconds, more than 0 and at most a day (86400)")
            }
        }

        func run() throws {
            let notify = NotifySocket.fromEnvironment()
            try reportingFailure(to: notify) {
                let logger = global.makeLogger(quiet: machine.quiet)
                var spec = try options.spec(image: image, machine: machine, arguments: initArguments, boot: true,
                                            console: pipe ? .pipe : console, logger: logger)
                spec.killSignal = killSignal.flatMap(SignalName.number)
                spec.stopTimeout = stopTimeout ?? ContainerSpec.defaultStopTimeout
                spec.initSelection = initSelection
                if machine.dryRun {
                    print(printableLines(Container.plan(for: spec).description))
                    return
                }
                try requireRoot(image, "booting a container")
                spec.notifySocket = notify
                spec.notifyReady = notifyReady == .yes
                throw ExitCode(try Container.run(spec, logger: logger))
            }
        }
    }
}
