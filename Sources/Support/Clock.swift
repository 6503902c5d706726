#if canImport(Glibc)
import Glibc
#endif

/// Seconds on Swift's `ContinuousClock` since this process first asked: for timing the stages
/// and for deadlines, which the wall clock must not move. Only differences mean anything.
public func monotonicSeconds() -> Double {
    seconds(ContinuousClock.now - clockOrigin)
}

private let clockOrigin = ContinuousClock.now

/// A `Duration` in seconds.
public func seconds(_ duration: Duration) -> Double {
    let (whole, fraction) = duration.components
    return Double(whole) + Double(fraction) / 1e18
}

/// Whole seconds since the epoch on the wall clock: when a machine started, as records keep it.
public func unixSeconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int(ts.tv_sec)
}

/// A point on the monotonic clock that a wait must not pass.
public struct Deadline: Sendable {
    public let instant: Double

    /// `seconds` from now.
    public init(after seconds: Double) {
        instant = monotonicSeconds() + seconds
    }

    /// Seconds left, 0 once passed.
    public var remaining: Double { max(0, instant - monotonicSeconds()) }
    public var hasPassed: Bool { monotonicSeconds() >= instant }

    /// The time left as poll(2) takes it: milliseconds, rounded up (so that a wait never ends
    /// just before the deadline and spins), at most `cap` seconds.
    public func pollMilliseconds(atMost cap: Double = 86_400) -> Int32 {
        Int32((min(remaining, cap) * 1000).rounded(.up))
    }
}

/// Waits until `fd` is readable (for a pidfd: its process has ended) or `deadline` passes;
/// whether it became readable. An interrupted poll is resumed; another poll error is "no".
public func waitReadable(_ fd: Int32, until deadline: Deadline) -> Bool {
    while true {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = poll(&ready, 1, deadline.pollMilliseconds())
        if n > 0 { return true }
        if n < 0 && errno == EINTR { continue }
        return false
    }
}

/// Polls `condition` with a growing pause (0.2 ms up to `longestPause`) until it holds or
/// `deadline` passes; returns whether it held. For what the kernel gives no descriptor to wait
/// on (a loop device detaching).
public func waitUntil(
    deadline: ContinuousClock.Instant, longestPause: Duration = .milliseconds(20), _ condition: () -> Bool
) -> Bool {
    var pause = Duration.microseconds(200)
    while true {
        if condition() { return true }
        let now = ContinuousClock.now
        if now >= deadline { return false }
        let step = min(pause, deadline - now)
        let (seconds, attoseconds) = step.components
        usleep(UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        pause = min(pause * 2, longestPause)
    }
}
