/// What a disk image holds, as `imgboot inspect --json` prints it. Plain data: produced by
/// `DissectedImage.dissect(path:)`, consumed by the later stages of the pipeline.
public struct DissectedImage: Sendable, Equatable {
    /// The image's path, as the user gave it.
    public var image: String
    /// Size in bytes.
    public var size: UInt64
    /// The sector size the partition table was read with (512 or 4096).
    public var sectorSize: Int
    /// "gpt", "dos", or nil for a bare filesystem image.
    public var partitionTable: PartitionTableType?
    /// The GPT disk GUID, or the MBR disk identifier ("0x1234abcd"); lower case.
    public var imageUuid: String?
    /// The architecture of the root (or /usr) partition that would be used, if it has one.
    public var architecture: Architecture?
    public var partitions: [Partition]
    /// Things a user should know that do not stop imgboot: a corrupt primary GPT header that
    /// was replaced by its backup, a partition that is skipped and why.
    public var warnings: [String]
    /// Of `warnings`, those about damage to the partition table itself (a corrupt header
    /// replaced by its backup, a backup that differs): the ones worth saying when the image is
    /// used anyway. (The others say why a partition is not used, which an error repeats when
    /// that matters.)
    public var tableWarnings: [String]
    /// Of `warnings`, those that say why there is no root to use (`PartitionSelection`).
    public var rootReasons: [String]

    public init(
        image: String, size: UInt64, sectorSize: Int, partitionTable: PartitionTableType?,
        imageUuid: String?, architecture: Architecture?, partitions: [Partition],
        warnings: [String] = [], tableWarnings: [String] = [], rootReasons: [String] = []
    ) {
        self.image = image
        self.size = size
        self.sectorSize = sectorSize
        self.partitionTable = partitionTable
        self.imageUuid = imageUuid
        self.architecture = architecture
        self.partitions = partitions
        self.warnings = warnings
        self.tableWarnings = tableWarnings
        self.rootReasons = rootReasons
    }

    /// The partitions that will be mounted, in the order their mount points nest
    /// (root first, then /usr, /home, …).
    public var usedPartitions: [Partition] {
        partitions.filter { $0.mountPoint != nil }
            .sorted { ($0.mountPoint ?? "").count < ($1.mountPoint ?? "").count }
    }

    /// The partition that will be mounted at `/`, if any.
    public var root: Partition? {
        partitions.first { $0.mountPoint == "/" }
    }
}

public enum PartitionTableType: String, Sendable {
    case gpt
    case dos
}

/// One partition (or, for a bare filesystem image, the whole file as number 0).
public struct Partition: Sendable, Equatable {
    /// The partition number as fdisk shows it; 0 for a bare filesystem image.
    public var number: Int
    /// Its role, from the type UUID or the fallback rules; nil when it has none.
    public var designator: Designator?
    /// GPT type UUID, lower case; nil on MBR.
    public var typeUuid: String?
    /// The MBR partition type ("0x83"); nil on GPT.
    public var mbrType: String?
    /// A name for the type ("Linux root (x86-64)"), nil when unknown.
    public var typeName: String?
    /// GPT partition UUID, lower case (on MBR, the disk id and number, as libblkid forms it).
    public var uuid: String?
    /// GPT partition name.
    public var label: String?
    /// Byte offset in the image.
    public var offset: UInt64
    /// Size in bytes.
    public var size: UInt64
    /// The filesystem inside, probed at the partition's offset ("ext4", "squashfs", "swap", …).
    public var fsType: String?
    public var fsUuid: String?
    public var fsLabel: String?
    /// For root and /usr partitions (and their verity kinds), the architecture of the type.
    public var architecture: Architecture?
    /// GPT flag 60 set, or a filesystem that cannot be written (squashfs, erofs).
    public var readOnly: Bool
    /// GPT flag 63: never used automatically.
    public var noAuto: Bool
    /// GPT flag 59: the filesystem should grow to the partition's size.
    public var growFs: Bool
    /// MBR bootable flag.
    public var bootable: Bool
    /// Where it would be mounted, or nil when it would not be used.
    public var mountPoint: String?

    public init(
        number: Int, designator: Designator? = nil, typeUuid: String? = nil, mbrType: String? = nil,
        typeName: String? = nil, uuid: String? = nil, label: String? = nil, offset: UInt64,
        size: UInt64, fsType: String? = nil, fsUuid: String? = nil, fsLabel: String? = nil,
        architecture: Architecture? = nil, readOnly: Bool = false, noAuto: Bool = false,
        growFs: Bool = false, bootable: Bool = false, mountPoint: String? = nil
    ) {
        self.number = number
        self.designator = designator
        self.typeUuid = typeUuid
        self.mbrType = mbrType
        self.typeName = typeName
        self.uuid = uuid
        self.label = label
        self.offset = offset
        self.size = size
        self.fsType = fsType
        self.fsUuid = fsUuid
        self.fsLabel = fsLabel
        self.architecture = architecture
        self.readOnly = readOnly
        self.noAuto = noAuto
        self.growFs = growFs
        self.bootable = bootable
        self.mountPoint = mountPoint
    }

    /// "partition 3 (srv)" — how messages name a partition.
    public var displayName: String {
        let what = designator?.rawValue ?? typeName ?? typeUuid ?? mbrType ?? "unknown type"
        return number == 0 ? "filesystem image" : "partition \(number) (\(what))"
    }
}
