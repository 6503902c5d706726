import ArgumentParser
import Boot
import Dissect

#if canImport(Glibc)
import Glibc
#endif
import Support

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
                  imgboot run --overlay=$PWD:$HOME/out:/src disk.raw make -C /src
                  imgboot run --volatile=no disk.raw apt-get install -y vim
                  imgboot run -u nobody --chdir=/tmp disk.raw id
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

        @Option(name: [.customShort("u"), .customLong("user")], help: ArgumentHelp(
            "Run the command as this user of the image's /etc/passwd (a name, or a UID): its groups from /etc/group, and HOME, USER, LOGNAME and SHELL from its entry unless -E sets them (nspawn's --user). A UID that is not in passwd runs with GID = UID and HOME=/.",
            valueName: "name"))
        var user: String?

        @Option(help: ArgumentHelp("Run the command in this directory of the container, entered as --user (nspawn's --chdir; default /).",
                                   valueName: "dir"))
        var chdir: String?

        @Argument(help: "The raw disk image (or block device).", completion: IMGBoot.imageCompletion)
        var image: String

        @Argument(parsing: .remaining, help: ArgumentHelp("The command and its arguments.", valueName: "command"))
        var command: [String] = []

        func validate() throws {
            if let user, !ContainerSpec.isValidUserName(user) {
                throw ValidationError("--user \(printable(user)): not a user name or UID (letters, digits, '.', '_' and '-', not starting with '-'; at most 64)")
            }
            if let chdir, !chdir.hasPrefix("/") || chdir.utf8.count > 4095 {
                throw ValidationError("--chdir \(printable(chdir)): must be an absolute path in the container")
            }
            if boot && (user != nil || chdir != nil) {
                throw ValidationError("--user and --chdir are for a command; -b boots the image's init, as root, in /")
            }
        }

        func run() throws {
            let notify = NotifySocket.fromEnvironment()
            try reportingFailure(to: notify) {
                let logger = global.makeLogger(quiet: machine.quiet)
                // `run -b` is rewritten to `boot` before parsing (CommandLineHabits); this is for
                // a caller that builds a Run by hand.
                let console: ContainerSpec.Console? = boot && pipe ? .pipe : nil
                var spec = try options.spec(image: image, machine: machine, arguments: command, boot: boot, console: console, logger: logger)
                spec.user = user
                spec.workingDirectory = chdir
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
}
