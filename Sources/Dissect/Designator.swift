/// The role of a partition, from its GPT type UUID (Discoverable Partitions Specification),
/// or from the fallback rules for images without DPS types (see `PartitionSelection`).
public enum Designator: String, Sendable, CaseIterable {
    case root
    case usr
    case rootVerity = "root-verity"
    case usrVerity = "usr-verity"
    case rootVeritySignature = "root-verity-sig"
    case usrVeritySignature = "usr-verity-sig"
    case home
    case srv
    case `var`
    case tmp
    case esp
    case xbootldr
    case swap
    case userHome = "user-home"
    case linuxGeneric = "linux-generic"

    /// Where a partition of this role is mounted in the tree, or nil when it is never mounted.
    public var mountPoint: String? {
        switch self {
        case .root: "/"
        case .usr: "/usr"
        case .home: "/home"
        case .srv: "/srv"
        case .var: "/var"
        case .tmp: "/var/tmp"
        case .xbootldr: "/boot"
        case .esp: "/efi"
        case .rootVerity, .usrVerity, .rootVeritySignature, .usrVeritySignature,
             .swap, .userHome, .linuxGeneric:
            nil
        }
    }

    /// Root and /usr (and their verity kinds) exist once per architecture.
    public var isPerArchitecture: Bool {
        switch self {
        case .root, .usr, .rootVerity, .usrVerity, .rootVeritySignature, .usrVeritySignature: true
        default: false
        }
    }

    /// Several candidates of these roles are told apart by the version in their label;
    /// for the others, the first partition wins.
    var isVersioned: Bool { isPerArchitecture }
}
