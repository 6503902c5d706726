import ArgumentParser
import Boot
import Dissect
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

extension IMGBoot {
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
