import ArgumentParser
import Logging

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "How much to log on stderr: trace, debug, info, notice, warning, error, critical.",
            valueName: "level"))
    var logLevel: Logger.Level = .warning

    /// A logger writing `imgboot: LEVEL: message` lines to stderr at the chosen level.
    func makeLogger(_ label: String = "imgboot") -> Logger {
        var logger = Logger(label: label) { _ in StderrLogHandler() }
        logger.logLevel = logLevel
        return logger
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
