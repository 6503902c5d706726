import ArgumentParser
import Dissect
import Logging

#if canImport(Glibc)
import Glibc
#endif

@main
struct IMGBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imgboot",
        abstract: "Inspect, mount and boot raw disk images — ephemerally, without systemd or udev.",
        discussion: """
            Exit status: 125 when imgboot itself fails (bad image, bad option, missing \
            privilege), after a one-line message on stderr.
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
        _ = Clock.start  // log times count from here
        refuseArgumentsThatAreNotUTF8()
        do {
            var command = try parseAsRoot(normalizedArguments(Array(CommandLine.arguments.dropFirst())))
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

/// nspawn's spelling: a bare `--volatile` means `--volatile=yes` (a mode must be given with
/// `=`, as getopt's optional arguments are); and `inspect`'s bare `--json`, which once was a
/// flag, means `--json=short`. Only options before `--` are touched.
func normalizedArguments(_ arguments: [String]) -> [String] {
    var result: [String] = []
    var options = true
    let inspect = arguments.first == "inspect"
    for argument in arguments {
        if argument == "--" { options = false }
        if options && argument == "--volatile" {
            result.append("--volatile=yes")
        } else if options && inspect && argument == "--json" {
            result.append("--json=short")
        } else {
            result.append(argument)
        }
    }
    return result
}

/// `printable(_:)` for text of several lines: each line escaped, the newlines between kept.
func printableLines(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { printable(String($0)) }.joined(separator: "\n")
}

/// Writes a line to stderr, unbuffered.
func writeError(_ text: String) {
    writeAll(2, Array((text.hasSuffix("\n") ? text : text + "\n").utf8))
}
