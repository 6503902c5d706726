/// How much of the image a mount or boot may change (systemd-nspawn's `--volatile`).
public enum VolatileMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The image as it is: writable unless `--read-only` or a flag says otherwise.
    case no
    /// A fresh tmpfs as root, with the image's /usr read-only on it; /etc and /var empty.
    case yes
    /// The image read-only, with a fresh tmpfs on /var.
    case state
    /// Every mounted partition under an overlay whose upper layer lives in RAM.
    case overlay

    public var description: String { rawValue }

    /// Parses the spellings nspawn users type: `yes/no/true/false/on/off/1/0`, `state`,
    /// `overlay` (any case). Nil for anything else.
    public init?(parsing text: String) {
        switch text.lowercased() {
        case "yes", "true", "on", "1": self = .yes
        case "no", "false", "off", "0": self = .no
        case "state": self = .state
        case "overlay": self = .overlay
        default: return nil
        }
    }

    /// Whether the image stays untouched whatever happens in the tree.
    public var isVolatile: Bool { self != .no }
}

/// The choices that shape a mount plan.
public struct MountOptions: Sendable, Equatable {
    public var volatile: VolatileMode
    /// Mount everything read-only (only with `volatile == .no`; the volatile modes never
    /// write the image anyway).
    public var readOnly: Bool
    /// Every mount of the tree `nosuid` and `nodev`: set-user-ID bits and file capabilities of
    /// the image's files give nothing. `imgboot mount` (a tree in the host's mount table, where
    /// any local user can run what it holds) unless `--suid`; a container's tree is private to
    /// it, and keeps its setuid programs working.
    public var nosuid: Bool

    public init(volatile: VolatileMode = .no, readOnly: Bool = false, nosuid: Bool = false) {
        self.volatile = volatile
        self.readOnly = readOnly
        self.nosuid = nosuid
    }
}
