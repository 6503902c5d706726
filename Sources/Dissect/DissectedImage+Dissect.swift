import Logging
import Support

extension DissectedImage {
    /// Reads the image at `path`: its partition table, the filesystem in each partition, and
    /// which partitions would be mounted where. Only reads; needs no privileges beyond reading
    /// the file.
    public static func dissect(path: String, logger: Logger = Logger(label: "imgboot.dissect")) throws(DissectError) -> DissectedImage {
        let file = try ImageFile(path: path)
        guard file.size > 0 else { throw DissectError(image: path, .empty) }

        let gpt = try GPT.read(file)
        let sectorSize = gpt?.sectorSize ?? file.deviceSectorSize ?? 512
        logger.debug("\(path): \(file.size) bytes, \(gpt == nil ? "no GPT signature" : "GPT with \(sectorSize)-byte sectors")")

        try GPT.refuseArraysLibblkidWouldRead(file, sectorSize: sectorSize)
        guard let probe = Probe() else { throw DissectError(image: path, .probe("libblkid could not allocate a probe")) }
        let outcome = probe.probeImage(fd: file.fd, size: file.size, sectorSize: sectorSize)
        let tableType = probe.value("PTTYPE")
        let fsAtStart = probe.value("TYPE")
        switch outcome {
        case .found: break
        case .nothing:
            if gpt != nil {
                throw DissectError(image: path, .probe("libblkid does not accept the GPT that imgboot found"))
            }
            throw DissectError(image: path, file.size < 4096 ? .tooSmall(size: file.size) : .unrecognised)
        case .ambivalent:
            throw DissectError(image: path, .ambiguous("several signatures that exclude each other at the start of the image"))
        case .failed:
            throw DissectError(image: path, .probe("libblkid failed to read the image"))
        }

        var warnings = gpt?.warnings ?? []
        var partitions: [Partition]
        let table: PartitionTableType?
        var imageUuid: String? = nil

        switch tableType {
        case "gpt"?:
            guard let gpt else {
                throw DissectError(image: path, .probe("libblkid found a GPT that imgboot cannot read"))
            }
            if let fsAtStart {
                throw DissectError(image: path, .ambiguous("both a GPT and a filesystem (\(fsAtStart)) at the start of the image"))
            }
            table = .gpt
            imageUuid = gpt.header.diskGUID
            partitions = try gptPartitions(gpt, checkedAgainst: probe.partitions(), path: path)
        case "PMBR"? where gpt.map({ $0.header.entrySize != 128 }) ?? false:
            // UEFI allows entries of 128 × 2^n bytes, but libblkid reads only 128-byte ones: it
            // passes such a GPT by and reports the protective MBR alone. imgboot's own reading,
            // with every check above, is then the table.
            guard let gpt else { throw DissectError(image: path, .unrecognised) }
            if let fsAtStart {
                throw DissectError(image: path, .ambiguous("both a GPT and a filesystem (\(fsAtStart)) at the start of the image"))
            }
            table = .gpt
            imageUuid = gpt.header.diskGUID
            partitions = try gptPartitions(gpt, checkedAgainst: nil, path: path)
        case "dos"?:
            if let fsAtStart {
                throw DissectError(image: path, .ambiguous("both an MBR partition table and a filesystem (\(fsAtStart)) at the start of the image"))
            }
            table = .dos
            imageUuid = probe.value("PTUUID").map { "0x" + $0.lowercased() }
            partitions = try dosPartitions(probe.partitions(), size: file.size, path: path)
        case let other?:
            throw DissectError(image: path, .unsupportedTable(other))
        case nil:
            guard let fsAtStart else { throw DissectError(image: path, .unrecognised) }
            table = nil
            partitions = [Partition(
                number: 0, offset: 0, size: file.size, fsType: fsAtStart,
                fsUuid: probe.value("UUID")?.lowercased(), fsLabel: probe.value("LABEL"))]
        }

        if table != nil {
            for i in partitions.indices {
                let p = partitions[i]
                switch probe.probeFilesystem(fd: file.fd, offset: p.offset, size: p.size) {
                case .found:
                    partitions[i].fsType = probe.value("TYPE")
                    partitions[i].fsUuid = probe.value("UUID")?.lowercased()
                    partitions[i].fsLabel = probe.value("LABEL")
                case .nothing:
                    break
                case .ambivalent:
                    warnings.append("partition \(p.number): several filesystem signatures that exclude each other")
                case .failed:
                    warnings.append("partition \(p.number): libblkid could not read it")
                }
            }
        }

        let selection = PartitionSelection.select(partitions, table: table)
        for warning in warnings + selection.warnings { logger.debug("\(path): \(warning)") }
        return DissectedImage(
            image: path, size: file.size, sectorSize: sectorSize, partitionTable: table,
            imageUuid: imageUuid, architecture: selection.architecture,
            partitions: selection.partitions, warnings: warnings + selection.warnings,
            tableWarnings: gpt?.warnings ?? [], rootReasons: selection.rootReasons)
    }

    /// The partitions of imgboot's reading of the GPT. When libblkid read the table too
    /// (`raw`), it must list the same partitions, and the names are the ones it decoded.
    private static func gptPartitions(_ gpt: GPT, checkedAgainst raw: [RawPartition]?, path: String) throws(DissectError) -> [Partition] {
        let ss = UInt64(gpt.sectorSize)
        var names = Dictionary(uniqueKeysWithValues: gpt.entries.map { ($0.number, $0.name) })
        if let raw {
            guard raw.count == gpt.entries.count else {
                throw DissectError(image: path, .probe(
                    "libblkid lists \(raw.count) partitions where the GPT has \(gpt.entries.count) entries"))
            }
            let entries = Dictionary(uniqueKeysWithValues: gpt.entries.map { ($0.number, $0) })
            for r in raw {
                guard let e = entries[r.number], e.firstLBA * ss == r.offset,
                      (e.lastLBA - e.firstLBA + 1) * ss == r.size,
                      r.typeString?.lowercased() == e.typeGUID, r.flags == e.attributes
                else {
                    throw DissectError(image: path, .probe("libblkid and the GPT disagree about partition \(r.number)"))
                }
                names[r.number] = r.name ?? ""
            }
        }
        // GPT.check has made sure that every entry ends inside the image: no overflow here.
        return gpt.entries.map { e in
            let label = names[e.number] ?? e.name
            return Partition(
                number: e.number, typeUuid: e.typeGUID,
                typeName: PartitionType.lookup(e.typeGUID)?.name ?? otherGPTTypeName(e.typeGUID),
                // An all-zero GUID is no GUID (libblkid reports none either).
                uuid: e.uniqueGUID == GPT.zeroGUID ? nil : e.uniqueGUID, label: label.isEmpty ? nil : label,
                offset: e.firstLBA * ss, size: (e.lastLBA - e.firstLBA + 1) * ss,
                readOnly: e.attributes & GPTFlags.readOnly != 0,
                noAuto: e.attributes & GPTFlags.noAuto != 0,
                growFs: e.attributes & GPTFlags.growFs != 0)
        }
    }

    /// MBR partitions, checked for the faults libblkid lets through.
    private static func dosPartitions(_ raw: [RawPartition], size: UInt64, path: String) throws(DissectError) -> [Partition] {
        var problems: [String] = []
        let data = raw.filter { !$0.isExtended }
        for r in data where r.offset + r.size > size {
            problems.append("partition \(r.number) ends beyond the end of the image (byte \(r.offset + r.size) of \(size))")
        }
        let sorted = data.sorted { ($0.offset, $0.number) < ($1.offset, $1.number) }
        var furthest: RawPartition? = nil
        for r in sorted {
            if let f = furthest, r.offset < f.offset + f.size {
                problems.append("partitions \(min(f.number, r.number)) and \(max(f.number, r.number)) overlap")
            }
            if furthest.map({ r.offset + r.size > $0.offset + $0.size }) ?? true { furthest = r }
        }
        guard problems.isEmpty else { throw DissectError(image: path, .invalidTable(problems)) }
        return data.map { r in
            let type = "0x" + hex(r.type, width: 2)
            return Partition(
                number: r.number, mbrType: type, typeName: PartitionSelection.mbrTypeName(type),
                uuid: r.uuid?.lowercased(), offset: r.offset, size: r.size,
                bootable: r.flags & 0x80 != 0)
        }
    }

    /// Names for a few common GPT types outside the DPS, so that `inspect` can say what they are.
    private static func otherGPTTypeName(_ uuid: String) -> String? {
        switch uuid {
        case "21686148-6449-6e6f-744e-656564454649": "BIOS boot"
        case "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM"
        case "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID"
        case "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data"
        case "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved"
        default: nil
        }
    }
}

/// GPT partition attribute bits the Discoverable Partitions Specification defines.
public enum GPTFlags {
    public static let noAuto: UInt64 = 1 << 63
    public static let readOnly: UInt64 = 1 << 60
    public static let growFs: UInt64 = 1 << 59
}
