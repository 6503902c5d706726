import ArgumentParser
import Boot
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
    struct Enter: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "enter",
            abstract: "Run a command (default: root's login shell) inside a running machine.",
            discussion: """
                The command joins the machine's namespaces, root and cgroup, with the container's \
                capability set and a clean environment (container=imgboot, PATH, TERM, HOME, USER). \
                Everything after NAME that is not an option of imgboot's is the command; without \
                one, root's login shell from the machine's /etc/passwd runs (/bin/sh if it names \
                none that exists). Exit status as `run`: the command's, 128+N if killed by signal \
                N, 127/126 when it cannot be executed; 125 when imgboot cannot (no such machine).

                EXAMPLES:
                  imgboot enter debian                    a shell in the machine
                  imgboot enter debian systemctl --failed a command
                  imgboot enter debian -- systemctl --failed   the same
                  imgboot enter -E LANG=C.UTF-8 debian journalctl -b
                """)

        @OptionGroup var global: GlobalOptions

        @Option(name: [.customLong("setenv"), .customShort("E", allowingJoined: true)],
                help: ArgumentHelp("Set an environment variable (repeatable).", valueName: "VAR=VALUE"))
        var environment: [String] = []

        @Argument(help: "The machine's name (see imgboot list).", completion: IMGBoot.machineCompletion)
        var machine: String

        @Argument(parsing: .remaining, help: ArgumentHelp("The command and its arguments.", valueName: "command"))
        var command: [String] = []

        func run() throws {
            try requireRoot(machine, "entering a machine", why: "the machine's namespaces, and imgboot's state")
            throw ExitCode(try Machines.enter(machine, command: command, environment: environment, logger: global.makeLogger()))
        }
    }
}
