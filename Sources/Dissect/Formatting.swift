#if canImport(Glibc)
import Glibc
#endif

/// Seconds as people read them in imgboot's messages: "0.417" (three decimals, without
/// Foundation's formatters).
public func formatSeconds(_ seconds: Double) -> String {
    let millis = max(0, Int((seconds * 1000).rounded()))
    let frac = String(millis % 1000)
    return "\(millis / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}

/// Seconds on the monotonic clock, for timing the stages (`--log-level=debug`).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// "stage NAME: N µs" for the time since `start`, as every stage's timing line reads.
public func stageLine(_ name: String, since start: Double) -> String {
    "stage \(name): \(Int(((monotonicSeconds() - start) * 1_000_000).rounded())) µs"
}
