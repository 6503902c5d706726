import ArgumentParser
import Boot
import Dissect

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "run",
            abstract: "Run a command in a container of the image (default: a shell).",
            discussion: """
                The command runs under a tiny init (PID 1) that reaps and forwards signals, so \
                exit statuses behave as in a shell: the command's, 128+N if killed by signal N, \
                127 if not found, 126 if not executable. With a terminal, the command gets a pty \
                (Ctrl-] three times within a second kills the container); otherwise stdin, stdout \
                and stderr pass through untouched. Default --volatile=overlay: the image is never \
                written unless you ask with --volatile=no.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "command"))
        var command: [String] = []

        func validate() throws { try options.validate() }

        func run() throws {
            let logger = global.makeLogger()
            let spec = try options.spec(image: image, arguments: command, boot: false, console: nil, logger: logger)
            if options.dryRun {
                print(printableLines(Container.plan(for: spec).description))
                return
            }
            try requireRoot(image, "running a container")
            throw ExitCode(try Container.run(spec, logger: logger))
        }
    }

    struct Boot: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "boot",
            abstract: "Boot the image's init (systemd) as PID 1 in a container.",
            discussion: """
                The init is the first of /usr/lib/systemd/systemd, /lib/systemd/systemd, \
                /sbin/init. When it reports READY=1, imgboot prints "imgboot: MACHINE is ready \
                (after N.NNN s)" on stderr. SIGTERM or SIGINT (Ctrl-C when not interactive) asks \
                the init to halt (--kill-signal); a second one kills it, and so does the end of \
                --stop-timeout. Exit status 0 after a clean poweroff or halt, 133 after a \
                reboot, 137 when the init was killed. Default --volatile=overlay.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions

        @Option(help: ArgumentHelp(
            "interactive (default with a terminal), read-only (default otherwise), passive, or pipe.",
            valueName: "mode"))
        var console: ContainerSpec.Console?

        @Option(help: ArgumentHelp(
            "The signal that asks the init to stop when imgboot gets SIGTERM or SIGINT (default SIGRTMIN+3, systemd's halt; busybox's init halts on SIGUSR1, powers off on SIGUSR2).",
            valueName: "signal"))
        var killSignal: String?

        @Option(help: ArgumentHelp(
            "How long the init has to end after the kill signal before it is killed (default \(Int(ContainerSpec.defaultStopTimeout)) s).",
            valueName: "seconds"))
        var stopTimeout: Double?

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(parsing: .postTerminator, help: ArgumentHelp("Arguments for the init, after --.", valueName: "init-arg"))
        var initArguments: [String] = []

        func validate() throws {
            try options.validate()
            if let killSignal, SignalName.number(killSignal) == nil {
                throw ValidationError("--kill-signal=\(killSignal): not a signal (a name such as SIGUSR2 or SIGRTMIN+4, or a number)")
            }
            if let stopTimeout, !(stopTimeout > 0 && stopTimeout <= 24 * 3600) {
                let given = stopTimeout == stopTimeout.rounded() && abs(stopTimeout) < 1e9 ? String(Int(stopTimeout)) : String(stopTimeout)
                throw ValidationError("--stop-timeout=\(given): seconds, more than 0 and at most a day (86400)")
            }
        }

        func run() throws {
            let logger = global.makeLogger()
            var spec = try options.spec(image: image, arguments: initArguments, boot: true, console: console, logger: logger)
            spec.killSignal = killSignal.flatMap(SignalName.number)
            spec.stopTimeout = stopTimeout ?? ContainerSpec.defaultStopTimeout
            if options.dryRun {
                print(printableLines(Container.plan(for: spec).description))
                return
            }
            try requireRoot(image, "booting a container")
            throw ExitCode(try Container.run(spec, logger: logger))
        }
    }
}

extension ContainerSpec.Console: ExpressibleByArgument {}
