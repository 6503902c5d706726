import ArgumentParser
import Boot
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
import Support
#endif

extension IMGBoot {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "list",
            abstract: "List the running machines (every imgboot run and boot).",
            discussion: """
                Needs root: imgboot's state is root's alone.

                EXAMPLES:
                  imgboot list
                  imgboot list --json
                """)

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print a JSON array instead of a table.")
        var json = false

        func run() throws {
            guard geteuid() == 0 else {
                throw CommandError(description: "\(StateStore.root): listing machines needs root (imgboot's state there is root's alone)")
            }
            // A leader that cannot be proven the machine's (its PID since reused) is shown as 0:
            // never a PID that names someone else's process.
            let machines = try MachineRegistry.list().map { m in
                var m = m
                if !m.leaderIsVerified { m.leader = nil }
                return m
            }
            if json {
                print(JSON.array(machines.map { m in
                    .object([
                        ("name", .string(m.name)), ("kind", .string(m.kind.rawValue)), ("mode", .string(m.mode)),
                        ("leader", .int(Int64(m.leaderPID))), ("supervisor", .int(Int64(m.supervisor.pid))),
                        ("image", .string(m.image)), ("started", .int(Int64(m.started))), ("cgroup", .string(m.cgroup)),
                        ("users", .string(m.users.map { "\($0.base):\($0.count)" })),
                    ])
                }).serialized())
                return
            }
            guard !machines.isEmpty else {
                print("No machines.")
                return
            }
            let now = unixSeconds()
            var rows = [["MACHINE", "KIND", "MODE", "LEADER", "USERS", "UP", "IMAGE"]]
            for m in machines {
                rows.append([printable(m.name), m.kind.rawValue, printable(m.mode), String(m.leaderPID),
                             m.users.map(\.description) ?? "host", duration(now - m.started), printable(m.image)])
            }
            print(textTable(rows), terminator: "")
        }

        func duration(_ seconds: Int) -> String {
            let s = max(0, seconds)
            if s < 60 { return "\(s)s" }
            if s < 3600 { return "\(s / 60)m\(s % 60)s" }
            return "\(s / 3600)h\((s % 3600) / 60)m"
        }
    }

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

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            // Named here, not derived from the type: deriving it costs a scan of every protocol
            // conformance in the binary at each start-up.
            commandName: "stop",
            abstract: "Power off a running machine; kill it if it has not stopped after the timeout.",
            discussion: """
                A booted machine's init gets SIGRTMIN+4 (systemd powers off); a `run` container's \
                command gets SIGTERM. Returns once imgboot has torn the machine down (loop devices \
                detached, cgroup removed). Exit status 0 when it stopped in time, 1 when it had \
                to be killed.

                EXAMPLES:
                  imgboot stop debian
                  imgboot stop --timeout 5 build-1
                """)

        @OptionGroup var global: GlobalOptions

        // .unconditional: "-5" is the value (refused with the reason), not an option.
        @Option(parsing: .unconditional, help: ArgumentHelp("Seconds to wait before killing it.", valueName: "seconds"))
        var timeout: Double = 30

        @Argument(help: "The machine's name (see imgboot list).", completion: IMGBoot.machineCompletion)
        var machine: String

        func validate() throws { try validateTimeout(timeout) }

        func run() throws {
            try requireRoot(machine, "stopping a machine", why: "the machine's processes, and imgboot's state")
            if !(try Machines.stop(machine, timeout: timeout, logger: global.makeLogger())) { throw ExitCode(1) }
        }
    }
}
