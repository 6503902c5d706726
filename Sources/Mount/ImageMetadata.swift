/// What an image says about itself: its os-release, hostname and machine ID, and the init
/// `imgboot boot` would run. Parsed here from the files' bytes, whatever they are (the image is
/// hostile): pure, so that the fuzzer (Fuzz/MetadataFuzzer.swift) can give it arbitrary input.
/// Reading the files from the image is ImageMetadata+Read.swift.
public struct ImageMetadata: Sendable, Equatable {
    public var osRelease: [OSReleaseField]
    public var hostname: String?
    public var machineId: String?
    /// Whether the image has systemd as its init (/usr/lib/systemd/systemd or
    /// /lib/systemd/systemd, a regular file).
    public var hasSystemd: Bool = false
    /// The init `imgboot boot` would run: the first of `initPaths` that is an executable
    /// regular file in the image's tree (root with /usr), or nil.
    public var initPath: String? = nil

    public struct OSReleaseField: Sendable, Equatable {
        public var key: String
        public var value: String
    }

    /// The inits `boot` tries, in order.
    public static let initPaths = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/sbin/init"]

    /// The most read of each file.
    static let limits = (osRelease: 64 * 1024, hostname: 256, machineId: 128)
}

extension ImageMetadata {
    /// The metadata in the contents of os-release, hostname and machine-id (nil: no such
    /// file). At most `limits` bytes of each are looked at; bytes that are not UTF-8 become
    /// U+FFFD; the hostname and machine ID are their file's first line that is not empty or a
    /// comment, trimmed of spaces and tabs.
    public init(parsing osRelease: [UInt8]?, hostname: [UInt8]?, machineId: [UInt8]?,
                hasSystemd: Bool = false, initPath: String? = nil) {
        func text(_ bytes: [UInt8]?, _ limit: Int) -> String? {
            bytes.map { String(decoding: $0.prefix(limit), as: UTF8.self) }
        }
        self.osRelease = OSRelease.parse(text(osRelease, Self.limits.osRelease) ?? "")
            .map { OSReleaseField(key: $0.key, value: $0.value) }
        self.hostname = text(hostname, Self.limits.hostname).flatMap(Self.firstLine)
        self.machineId = text(machineId, Self.limits.machineId).flatMap(Self.firstLine)
        self.hasSystemd = hasSystemd
        self.initPath = initPath
    }

    /// The first line that is not empty or a comment, trimmed; nil if none.
    static func firstLine(_ text: String) -> String? {
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = Substring(line).trimmingWhitespace()
            if !trimmed.isEmpty && !trimmed.hasPrefix("#") { return String(trimmed) }
        }
        return nil
    }
}
