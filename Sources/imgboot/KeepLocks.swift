import ArgumentParser
import Attach

extension IMGBoot {
    /// The process `imgboot mount` leaves behind to hold the image's locks while the tree is
    /// mounted (Attach's `LockKeeper`). Not for users: started with its orders on stdin.
    struct KeepLocks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: LockKeeper.subcommand,
            abstract: "Hold an image's locks while its tree is mounted (started by imgboot mount).",
            shouldDisplay: false)

        @Argument(help: "The image (for ps to show).")
        var image: String

        func run() throws {
            throw ExitCode(LockKeeper.serve())
        }
    }
}
