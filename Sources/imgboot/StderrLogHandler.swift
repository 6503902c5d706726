import Dissect
import Logging

#if canImport(Glibc)
import Glibc
#endif

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
            line += "[\(formatSeconds(Clock.sinceStart()))] "
        }
        // Messages name images, partitions and paths: escaped here, once for every log line.
        line += printable("\(event.message)")
        writeError(line)
    }
}

enum Clock {
    static let start = now()

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func sinceStart() -> Double { now() - start }
}

