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
            let notify = NotifySocket.fromEnvironment()
            try reportingFailure(to: notify) {
                let logger = global.makeLogger()
                var spec = try options.spec(image: image, arguments: command, boot: false, console: nil, logger: logger)
                if options.dryRun {
                    print(printableLines(spec.plan.description))
                    return
                }
                try requireRoot(image, "running a container")
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
                (after N.NNN s)" on stderr. SIGTERM or SIGINT (Ctrl-C when not interactive) asks \
                the init to halt; a second one kills it. Exit status 0 after a clean poweroff or \
                halt, 133 after a reboot. Default --volatile=overlay. With $NOTIFY_SOCKET set, \
                imgboot sends READY=1 there once the init runs (with --notify-ready=yes: when the \
                init reports READY=1), passes on the init's STATUS=, and on its own failure sends \
                STATUS=<the error> and X_IMGBOOT_ERROR=no-init or failed.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: BootOptions

        @Option(help: ArgumentHelp(
            "interactive (default with a terminal), read-only (default otherwise), passive, or pipe.",
            valueName: "mode"))
        var console: ContainerSpec.Console?

        @Option(help: ArgumentHelp(
            "yes: READY=1 on $NOTIFY_SOCKET when the init reports it; no (default): as soon as the init runs.",
            valueName: "yes|no"))
        var notifyReady: YesNo = .no

        @Option(name: .customLong("init"), help: ArgumentHelp(
            "auto (default): systemd, else /sbin/init; systemd: only systemd (an image without it is an error, X_IMGBOOT_ERROR=no-init).",
            valueName: "which"))
        var initSelection: ContainerSpec.InitSelection = .auto

        @Argument(help: "The raw disk image (or block device).")
        var image: String

        @Argument(parsing: .postTerminator, help: ArgumentHelp("Arguments for the init, after --.", valueName: "init-arg"))
        var initArguments: [String] = []

        func validate() throws { try options.validate() }

        func run() throws {
            let notify = NotifySocket.fromEnvironment()
            try reportingFailure(to: notify) {
                let logger = global.makeLogger()
                var spec = try options.spec(image: image, arguments: initArguments, boot: true, console: console, logger: logger)
                if options.dryRun {
                    print(printableLines(spec.plan.description))
                    return
                }
                try requireRoot(image, "booting a container")
                spec.notifySocket = notify
                spec.notifyReady = notifyReady == .yes
                spec.initSelection = initSelection
                throw ExitCode(try Container.run(spec, logger: logger))
            }
        }
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
}

extension ContainerSpec.Console: ExpressibleByArgument {}
extension ContainerSpec.InitSelection: ExpressibleByArgument {}
