/// FNV-1a, 64 bits: a hash simple enough to compute anywhere (a CI script may want to know which
/// smoke shard tests an image) and stable across runs and Swift versions, unlike `Hasher`. For
/// choosing (a shard, a user range's first try) and naming (a cache key), never for security.
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    /// The hash of `text`'s UTF-8 bytes.
    public static func hash(_ text: String) -> UInt64 {
        var hash = FNV1a()
        hash.mix(bytesOf: text)
        return hash.value
    }

    public mutating func mix(bytesOf text: String) {
        for byte in text.utf8 { mix(byte) }
    }

    /// `text` as one field: its bytes, then a separator byte no UTF-8 text holds, so that
    /// ("ab", "c") and ("a", "bc") differ.
    public mutating func mix(field text: String) {
        mix(bytesOf: text)
        mix(0xff)
    }

    public mutating func mix(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
}
