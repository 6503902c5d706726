import ArgumentParser
import Dissect
import Logging
import Smoke

#if canImport(Glibc)
import Glibc
#endif
import Support

@main
struct IMGBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imgboot",
        abstract: "Inspect, mount and boot raw disk images, ephemerally, without systemd or udev.",
        discussion: """
            Exit status: 125 when imgboot itself fails (bad image, bad option, missing \
            privilege), after a one-line message on stderr. `imgboot help COMMAND` (or \
            `imgboot COMMAND --help`) tells more of each command.

            EXAMPLES:
              imgboot inspect disk.raw                what is inside
              imgboot run disk.raw                    a shell in a container of it
              imgboot run disk.raw make -C /src test  a command; its exit status
              imgboot boot disk.raw                   boot its systemd
              imgboot mount --read-only disk.raw /mnt browse it on the host
              imgboot smoke --junit out.xml *.raw     do they boot, and work?
            """,
        version: "0.1.0",
        subcommands: [Inspect.self, MountImage.self, UnmountImage.self, Run.self, Boot.self, SmokeTest.self, List.self, Enter.self, Stop.self,
                      ListFiles.self, CopyFrom.self, CopyTo.self, Archive.self, KeepLocks.self]
    )

    /// The exit status of imgboot's own failures, as in OCI runtimes and systemd-nspawn.
    static let failureStatus: Int32 = 125

    /// Runs the command line. imgboot's own failures exit with status 125 after a one-line
    /// message; usage errors too, after the message and usage swift-argument-parser prints.
    static func main() {
        _ = processStart  // log times count from here
        do {
            // Before anything else runs: a child of smoke ends with smoke (and drops the
            // variable that says so).
            try EndWithSmoke.arrangeIfAsked()
            refuseArgumentsThatAreNotUTF8()
            let line = try CommandLineHabits.normalize(Array(CommandLine.arguments.dropFirst()))
            var command = try parseAsRoot(line.arguments)
            if !line.quiet { for note in line.notes { writeError(note) } }
            try command.run()
            Glibc.exit(0)
        } catch let status as ExitCode {
            Glibc.exit(status.rawValue)
        } catch let error as IMGBootError {
            // The one line names the image, a partition or a path: any of them may hold
            // characters a terminal would act on.
            writeError("imgboot: \(printable(error.description))")
            Glibc.exit(error.exitStatus)
        } catch {
            // --help, --version, and usage errors.
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            // A usage error quotes the argument, which may be a file name.
            writeError(printableLines(fullMessage(for: error)))
            Glibc.exit(failureStatus)
        }
    }
}

/// Swift reads the command line as UTF-8 and replaces what is not with U+FFFD: an image whose
/// file name is not UTF-8 would be reported as "no such file", and an argument for the
/// container would reach it changed. Both are refused instead, with the argument as it is.
func refuseArgumentsThatAreNotUTF8() {
    for n in 1..<Int(CommandLine.argc) {
        guard let argument = CommandLine.unsafeArgv[n] else { continue }
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(argument).assumingMemoryBound(to: UInt8.self), count: strlen(argument))
        if String(validating: bytes, as: UTF8.self) == nil {
            writeError("imgboot: \(printable(bytes: bytes)): not valid UTF-8 (imgboot takes file names and arguments in UTF-8 only)")
            Glibc.exit(IMGBoot.failureStatus)
        }
    }
}

/// `printable(_:)` for text of several lines: each line escaped, the newlines between kept.
func printableLines(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { printable(String($0)) }.joined(separator: "\n")
}

/// Writes a line to stderr, unbuffered.
func writeError(_ text: String) {
    writeAll(2, Array((text.hasSuffix("\n") ? text : text + "\n").utf8))
}
