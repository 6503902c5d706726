/// Seconds as people read them in imgboot's messages: "0.417" (three decimals, without
/// Foundation's formatters).
public func formatSeconds(_ seconds: Double) -> String {
    let millis = max(0, Int((seconds * 1000).rounded()))
    let frac = String(millis % 1000)
    return "\(millis / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}
