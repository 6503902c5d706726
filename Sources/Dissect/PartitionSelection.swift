/// The rules that decide which partitions of an image are used and where they are mounted
/// (DESIGN.md, "Partition selection"). Pure: no I/O, so every rule is unit-tested.
public enum PartitionSelection {
    /// Filesystems imgboot mounts automatically. The type is always passed to mount
    /// explicitly, never left to the kernel to guess.
    public static let mountableFilesystems: Set<String> = ["btrfs", "erofs", "ext4", "squashfs", "vfat", "xfs"]

    /// Filesystems that cannot be written.
    public static let readOnlyFilesystems: Set<String> = ["squashfs", "erofs"]

    /// The outcome of selection: the partitions with their designators, read-only state and
    /// mount points filled in, the image's architecture, and notes for the user.
    public struct Result: Equatable, Sendable {
        public var partitions: [Partition]
        public var architecture: Architecture?
        public var warnings: [String]
        /// Of `warnings`, those that say why no root is used.
        public var rootReasons: [String] = []
    }

    /// Applies the selection rules. `partitions` carry their type (GPT type UUID or MBR type),
    /// flags, labels and probed filesystems; their `designator`, `architecture` and
    /// `mountPoint` are (re)computed here.
    public static func select(
        _ partitions: [Partition], table: PartitionTableType?, native: Architecture = .native
    ) -> Result {
        var parts = partitions
        var warnings: [String] = [], rootReasons: [String] = []
        func rootReason(_ text: String) {
            warnings.append(text)
            rootReasons.append(text)
        }

        // Designators from the types.
        for i in parts.indices {
            parts[i].mountPoint = nil
            switch table {
            case .gpt:
                let type = parts[i].typeUuid.flatMap(PartitionType.lookup)
                parts[i].designator = type?.designator
                parts[i].architecture = type?.architecture
            case .dos:
                parts[i].designator = parts[i].mbrType.flatMap(mbrDesignator)
                parts[i].architecture = nil
            case nil:
                // A bare filesystem image: the whole file is the root.
                parts[i].designator = .root
            }
            let fs = parts[i].fsType ?? ""
            parts[i].readOnly = parts[i].readOnly || readOnlyFilesystems.contains(fs)
        }

        // One partition per mountable role: the first, or for root and /usr the newest label.
        var chosen: [Designator: Int] = [:]
        for i in parts.indices where !parts[i].noAuto {
            guard let d = parts[i].designator, d.mountPoint != nil else { continue }
            if d.isPerArchitecture && parts[i].architecture != native && table == .gpt { continue }
            if let j = chosen[d] {
                if d.isVersioned && compareVersions(parts[i].label ?? "", parts[j].label ?? "") > 0 {
                    chosen[d] = i
                }
            } else {
                chosen[d] = i
            }
        }

        // No root of the native architecture: fall back to the rules for images without one.
        if chosen[.root] == nil {
            switch table {
            case .gpt:
                let generic = parts.indices.filter { parts[$0].designator == .linuxGeneric && !parts[$0].noAuto }
                if generic.count == 1, let g = generic.first {
                    parts[g].designator = .root
                    chosen[.root] = g
                } else if generic.count > 1 {
                    rootReason("\(generic.count) generic Linux partitions and no root partition: none is used as root")
                }
            case .dos:
                let bootable = parts.indices.filter { parts[$0].bootable && parts[$0].mbrType == "0x83" }
                if bootable.count == 1, let b = bootable.first {
                    parts[b].designator = .root
                    chosen[.root] = b
                } else if bootable.count > 1 {
                    rootReason("\(bootable.count) bootable Linux partitions: none is used as root")
                }
            case nil:
                break
            }
        }

        for (designator, i) in chosen.sorted(by: { $0.value < $1.value }) {
            guard let mountPoint = designator.mountPoint else { continue }
            // A root that cannot be mounted is why there is none to use.
            let note = designator == .root ? rootReason : { warnings.append($0) }
            if let fs = parts[i].fsType {
                guard mountableFilesystems.contains(fs) else {
                    note("\(parts[i].displayName): \(fs) filesystems are not mounted automatically")
                    continue
                }
            } else {
                note("\(parts[i].displayName): no filesystem found")
                continue
            }
            parts[i].mountPoint = mountPoint
        }

        // The image's architecture: that of the root (or /usr) in use, else of any root or /usr.
        let archSource = [chosen[.root], chosen[.usr]].compactMap { $0 }.map { parts[$0] }
            + parts.filter { $0.designator == .root || $0.designator == .usr }
        let architecture = archSource.lazy.compactMap(\.architecture).first

        if chosen[.root] == nil && table == .gpt {
            let foreign = Set(parts.filter { $0.designator == .root }.compactMap(\.architecture))
            if !foreign.isEmpty {
                let names = foreign.map(\.rawValue).sorted().joined(separator: ", ")
                rootReason("no root partition for \(native.rawValue) (the image has one for \(names))")
            }
        }
        return Result(partitions: parts, architecture: architecture, warnings: warnings, rootReasons: rootReasons)
    }

    /// The role of an MBR partition type.
    static func mbrDesignator(_ type: String) -> Designator? {
        switch type {
        case "0x83": .linuxGeneric
        case "0x82": .swap
        case "0xef": .esp
        case "0xea": .xbootldr
        default: nil
        }
    }

    /// A name for an MBR partition type, in the style of fdisk.
    static func mbrTypeName(_ type: String) -> String? {
        switch type {
        case "0x83": "Linux"
        case "0x82": "Linux swap"
        case "0xef": "EFI System"
        case "0xea": "Linux extended boot"
        case "0x05", "0x0f", "0x85": "Extended"
        case "0x8e": "Linux LVM"
        case "0xfd": "Linux raid autodetect"
        case "0x07": "HPFS/NTFS/exFAT"
        case "0x0b", "0x0c", "0x0e", "0x06", "0x04", "0x01": "FAT"
        default: nil
        }
    }
}
