/// What the machine records and containers use of user namespaces; `--private-users` and the
/// leases are Boot's (Sources/Boot/UserNamespace.swift).

/// Host UIDs (and the same GIDs) a container's 0…count-1 are mapped to.
public struct UserRange: Sendable, Equatable, CustomStringConvertible {
    public var base: UInt32
    public var count: UInt32

    /// What `pick` takes: 65536 IDs, enough for every user an OS image may have (nobody is 65534).
    public static let size: UInt32 = 0x10000

    /// The block `pick` chooses from: systemd-nspawn's (0x00080000–0x6FFFFFFF), far above the
    /// IDs of host users and below the ones systemd reserves for dynamic users and homed.
    public static let pickFirst: UInt32 = 0x0008_0000
    public static let pickLast: UInt32 = 0x6FFF_0000

    public init(base: UInt32, count: UInt32) {
        self.base = base
        self.count = count
    }

    /// The container's ID `id` as the host numbers it.
    public func host(_ id: UInt32) -> UInt32 { base + id }

    /// The line for /proc/PID/uid_map and gid_map.
    public var mapLine: String { "0 \(base) \(count)\n" }

    public var description: String { "\(base)-\(UInt64(base) + UInt64(count) - 1)" }
}
