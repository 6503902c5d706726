import ArgumentParser
import Boot
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

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
                throw CommandError(StateStore.root, "listing machines needs root (imgboot's state there is root's alone)")
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
}
