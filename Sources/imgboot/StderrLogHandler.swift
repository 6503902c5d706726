import Dissect
import Logging

#if canImport(Glibc)
import Glibc
#endif
import Support

/// Log lines for people: `imgboot: debug: message`, with the time since start-up when at
/// debug level or below, so that the stages' costs are visible.
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = "imgboot: \(event.level): "
        if logLevel <= .debug {
            line += "[\(formatSeconds(monotonicSeconds() - processStart))] "
        }
        // Messages name images, partitions and paths: escaped here, once for every log line.
        line += printable("\(event.message)")
        writeError(line)
    }
}

/// When imgboot started, on the monotonic clock: log lines say how long after.
let processStart = monotonicSeconds()

