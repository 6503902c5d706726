import ArgumentParser
import Logging

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    // The values are listed by swift-argument-parser, once: not in this text as well.
    @Option(
        name: .long,
        help: ArgumentHelp("How much to log on stderr (default: warning).", valueName: "level"))
    var logLevel: Logger.Level?

    /// A logger writing `imgboot: LEVEL: message` lines to stderr at the chosen level: the one
    /// given, else `warning`, or `error` when `quiet` (-q: no notices, errors still).
    func makeLogger(_ label: String = "imgboot", quiet: Bool = false) -> Logger {
        var logger = Logger(label: label) { _ in StderrLogHandler() }
        logger.logLevel = logLevel ?? (quiet ? .error : .warning)
        return logger
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
