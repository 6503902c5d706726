import Support

/// `--shard I/N`: the I-th of N shares of the images, for a CI matrix of N jobs.
///
/// An image belongs to shard `FNV-1a-64(file name) mod N + 1`, its file name being the path's
/// last component as UTF-8. So the share an image falls in depends on nothing but its own
/// file name and N: not on the order of the command line, not on which other images are given,
/// not on the directory a CI job checked it out to; the N jobs of a matrix, given the same
/// images, test each exactly once.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    /// 1-based, as CI systems number their parallel jobs (GitLab's CI_NODE_INDEX).
    public let index: Int
    public let count: Int

    /// Parses `I/N` with 1 ≤ I ≤ N; nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, (1...count).contains(index) else { return nil }
        self.index = index
        self.count = count
    }

    public var description: String { "\(index)/\(count)" }

    /// Whether `image` (a path) is in this shard.
    public func contains(_ image: String) -> Bool {
        Int(Self.hash(fileName(image)) % UInt64(count)) + 1 == index
    }

    /// The images of this shard, in the order given.
    public func select(_ images: [String]) -> [String] { images.filter(contains) }

    static func hash(_ text: String) -> UInt64 { FNV1a.hash(text) }

    private func fileName(_ path: String) -> String {
        String(path.split(separator: "/").last ?? Substring(path))
    }
}
