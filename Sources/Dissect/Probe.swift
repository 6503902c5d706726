import CBlkid

/// A libblkid probe over a range of the image's descriptor. Owns the probe.
final class Probe {
    private let probe: blkid_probe

    init?() {
        guard let p = blkid_new_probe() else { return nil }
        probe = p
    }

    deinit { blkid_free_probe(probe) }

    /// The outcome of `blkid_do_safeprobe`.
    enum Outcome: Equatable {
        case found
        case nothing
        /// Several signatures that exclude each other (e.g. two filesystems).
        case ambivalent
        case failed
    }

    /// Probes the whole image for a partition table and a filesystem at its start.
    func probeImage(fd: Int32, size: UInt64, sectorSize: Int) -> Outcome {
        guard blkid_probe_set_device(probe, fd, 0, Int64(size)) == 0 else { return .failed }
        blkid_probe_set_sectorsize(probe, UInt32(sectorSize))
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, Int32(BLKID_PARTS_ENTRY_DETAILS))
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL))
        return outcome(blkid_do_safeprobe(probe))
    }

    /// Probes `size` bytes at `offset` for a filesystem (or swap, or another superblock).
    func probeFilesystem(fd: Int32, offset: UInt64, size: UInt64) -> Outcome {
        guard blkid_probe_set_device(probe, fd, Int64(offset), Int64(size)) == 0 else { return .failed }
        blkid_probe_enable_partitions(probe, 0)
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL))
        return outcome(blkid_do_safeprobe(probe))
    }

    private func outcome(_ rc: Int32) -> Outcome {
        switch rc {
        case 0: .found
        case 1: .nothing
        case -2: .ambivalent
        default: .failed
        }
    }

    /// A value the last probe found ("TYPE", "UUID", "LABEL", "PTTYPE", "PTUUID").
    func value(_ name: String) -> String? {
        var data: UnsafePointer<CChar>? = nil
        var length = 0
        guard blkid_probe_lookup_value(probe, name, &data, &length) == 0, let data else { return nil }
        return String(cString: data)
    }

    /// The partitions the last whole-image probe found.
    func partitions() -> [RawPartition] {
        guard let list = blkid_probe_get_partitions(probe) else { return [] }
        let count = blkid_partlist_numof_partitions(list)
        guard count > 0 else { return [] }
        return (0..<count).compactMap { i -> RawPartition? in
            guard let p = blkid_partlist_get_partition(list, i) else { return nil }
            let start = blkid_partition_get_start(p)
            let size = blkid_partition_get_size(p)
            guard start >= 0, size >= 0 else { return nil }
            return RawPartition(
                number: Int(blkid_partition_get_partno(p)),
                // libblkid counts in 512-byte sectors whatever the table's sector size.
                offset: UInt64(start) * 512,
                size: UInt64(size) * 512,
                typeString: blkid_partition_get_type_string(p).map { String(cString: $0) },
                type: Int(blkid_partition_get_type(p)),
                uuid: blkid_partition_get_uuid(p).map { String(cString: $0) },
                name: blkid_partition_get_name(p).map { String(cString: $0) },
                flags: UInt64(blkid_partition_get_flags(p)),
                isExtended: blkid_partition_is_extended(p) != 0)
        }
    }
}

/// A partition as libblkid lists it, before imgboot gives it meaning.
struct RawPartition: Equatable {
    var number: Int
    var offset: UInt64
    var size: UInt64
    var typeString: String?
    var type: Int
    var uuid: String?
    var name: String?
    var flags: UInt64
    var isExtended: Bool
}
