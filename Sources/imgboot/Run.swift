import ArgumentParser
import Boot
import Dissect

#if canImport(Glibc)
import Glibc
import Support
#endif

extension IMGBoot {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "run",
            abstract: "Run a command in a container of the image (default: root's login shell).",
            discussion: """
                The command runs under a tiny init (PID 1) that reaps and forwards signals, so \
                exit statuses behave as in a shell: the command's, 128+N if killed by signal N, \
                127 if not found, 126 if not executable. Everything after IMAGE that is not an \
                option of imgboot's is the command, as in systemd-nspawn; -- before the command \
                says so plainly. Without a command, root's login shell from the image's \
                /etc/passwd runs (/bin/sh if it names none that exists). With a terminal, the \
                command gets a pty (Ctrl-] three times within a second kills the container); \
                otherwise stdin, stdout and stderr pass through untouched. Default \
                --volatile=overlay: the image is never written unless you ask with --volatile=no.

                EXAMPLES:
                  imgboot run disk.raw                    a shell; changes stay in RAM
                  imgboot run disk.raw ls -l /etc         a command
                  imgboot run disk.raw -- ls -l /etc      the same
                  imgboot run -M build -E CC=gcc disk.raw make     a name, a variable
                  imgboot run --bind=$PWD:/src disk.raw make -C /src
                  imgboot run --volatile=no disk.raw apt-get install -y vim
                  imgboot run -b disk.raw                 as imgboot boot disk.raw
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions
        @OptionGroup var machine: MachineOptions

        @Flag(name: [.customShort("b"), .customLong("boot")],
              help: "Boot the image's init instead, as `imgboot boot` does (nspawn's -b); the command's words go to the init.")
        var boot = false

        @Flag(name: [.customShort("P"), .customLong("pipe")], help: ArgumentHelp(
            "Pass stdin, stdout and stderr through untouched (nspawn's --pipe). run does so without it for every stream that is not a terminal; one that is still gets a pty of the container's own, never the host's terminal itself."))
        var pipe = false

        @Argument(help: "The raw disk image (or block device).", completion: IMGBoot.imageCompletion)
        var image: String

        @Argument(parsing: .remaining, help: ArgumentHelp("The command and its arguments.", valueName: "command"))
        var command: [String] = []

        func run() throws {
            let notify = NotifySocket.fromEnvironment()
            try reportingFailure(to: notify) {
                let logger = global.makeLogger(quiet: machine.quiet)
                // `run -b` is rewritten to `boot` before parsing (CommandLineHabits); this is for
                // a caller that builds a Run by hand.
                let console: ContainerSpec.Console? = boot && pipe ? .pipe : nil
                var spec = try options.spec(image: image, machine: machine, arguments: command, boot: boot, console: console, logger: logger)
                if machine.dryRun {
                    print(printableLines(Container.plan(for: spec).description))
                    return
                }
                try requireRoot(image, boot ? "booting a container" : "running a container")
                spec.notifySocket = notify
                throw ExitCode(try Container.run(spec, logger: logger))
            }
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

extension ContainerSpec.Console: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [
            "interactive": "input and output on this terminal, in raw mode (default with a terminal)",
            "read-only": "the output; input is not read (default otherwise)",
            "passive": "nothing",
            "pipe": "input and output, without a terminal",
        ]
    }
}

extension ContainerSpec.InitSelection: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [
            "auto": "systemd, else /sbin/init (default)",
            "systemd": "only systemd; an image without it is an error (X_IMGBOOT_ERROR=no-init)",
        ]
    }
}

/// Runs `body`; when imgboot itself fails (its one-line errors, status 125), says so on the
/// notify socket too, so that whoever started imgboot learns why without reading stderr.
func reportingFailure(to notify: NotifySocket?, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as IMGBootError {
        notify?.sendFailure(error)
        throw error
    }
}

/// nspawn's booleans: `yes`, `no` (and `true`/`false`, `on`/`off`, `1`/`0`).
enum YesNo: String, ExpressibleByArgument, Sendable {
    case yes, no

    init?(argument: String) {
        switch argument {
        case "yes", "true", "on", "1": self = .yes
        case "no", "false", "off", "0": self = .no
        default: return nil
        }
    }

    static var allValueStrings: [String] { ["yes", "no"] }
    static var allValueDescriptions: [String: String] {
        ["yes": "when the init reports READY=1", "no": "as soon as the init runs (default)"]
    }
}
