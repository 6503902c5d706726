/// imgboot's own reading of a GUID Partition Table's headers and entry array. libblkid lists
/// the partitions; this is the stricter check in front of it. libblkid quietly skips entries it
/// finds out of range and quietly falls back to the backup header, where a user should be told:
/// here every structural fault is found and named, and nothing unbounded is allocated (an absurd
/// entry count in a crafted header is refused before any array is read).
struct GPT: Equatable {
    struct Header: Equatable {
        var myLBA: UInt64
        var alternateLBA: UInt64
        var firstUsableLBA: UInt64
        var lastUsableLBA: UInt64
        var diskGUID: String
        var entriesLBA: UInt64
        var entryCount: UInt32
        var entrySize: UInt32
        var entriesCRC: UInt32
    }

    struct Entry: Equatable {
        /// 1-based, as fdisk and libblkid number partitions.
        var number: Int
        var typeGUID: String
        var uniqueGUID: String
        var firstLBA: UInt64
        var lastLBA: UInt64
        var attributes: UInt64
        /// The partition name: UTF-16LE up to the first NUL (an unpaired surrogate becomes
        /// U+FFFD). Used where libblkid cannot read the table (entries of more than 128 bytes).
        var name: String = ""
    }

    var sectorSize: Int
    var header: Header
    /// The entries in use (type GUID not all zero).
    var entries: [Entry]
    /// Faults that did not stop the table from being used (a corrupt backup, …).
    var warnings: [String]

    /// The largest entry array accepted: 1 MiB (8192 entries of 128 bytes; the usual is 128).
    static let maxEntryArrayBytes = 1 << 20
    static let signature: [UInt8] = Array("EFI PART".utf8)
    static let zeroGUID = "00000000-0000-0000-0000-000000000000"

    /// Finds and checks the GPT of `file`. Returns nil when there is no GPT signature at all
    /// (an MBR disk, a bare filesystem); throws when there is one but no usable table.
    static func read(_ file: borrowing ImageFile) throws(DissectError) -> GPT? {
        let candidates = file.deviceSectorSize.map { [$0] } ?? [512, 4096]
        var found: [Int] = []
        for sectorSize in candidates {
            let bytes = try file.read(at: UInt64(sectorSize), count: 8)
            if bytes == signature { found.append(sectorSize) }
        }
        guard let sectorSize = found.first else { return nil }
        if found.count > 1 {
            // Both places hold a header: use the one that is valid, refuse if both are. (A
            // header that fails here is reported below, when it is read again for real.)
            let valid = found.filter { (try? readHeader(file, sectorSize: $0, lba: 1)) != nil }
            if valid.count > 1 {
                throw DissectError(
                    image: file.path,
                    .ambiguous("GPT headers are valid for both 512- and 4096-byte sectors"))
            }
            if let only = valid.first { return try read(file, sectorSize: only) }
        }
        return try read(file, sectorSize: sectorSize)
    }

    private static func read(_ file: borrowing ImageFile, sectorSize: Int) throws(DissectError) -> GPT {
        let ss = UInt64(sectorSize)
        let lastLBA = file.size / ss - 1
        var warnings: [String] = []

        let primary: Result<(Header, [Entry]), HeaderFault>
        do {
            let header = try readHeader(file, sectorSize: sectorSize, lba: 1)
            primary = .success((header, try readEntries(file, header, sectorSize: sectorSize)))
        } catch { primary = .failure(error) }

        // The backup sits where the primary says, or, when the primary is unusable, at the
        // last sector of the disk.
        var backupLBA = lastLBA
        if case .success(let (header, _)) = primary { backupLBA = header.alternateLBA }
        let backup: Result<(Header, [Entry]), HeaderFault>
        do {
            let header = try readHeader(file, sectorSize: sectorSize, lba: backupLBA)
            backup = .success((header, try readEntries(file, header, sectorSize: sectorSize)))
        } catch { backup = .failure(error) }

        let header: Header
        let entries: [Entry]
        switch (primary, backup) {
        case (.success(let p), .success(let b)):
            (header, entries) = p
            if p.1 != b.1 || p.0.diskGUID != b.0.diskGUID {
                warnings.append("the primary and backup GPT differ; using the primary")
            }
        case (.success(let p), .failure(let fault)):
            (header, entries) = p
            warnings.append("the backup GPT header \(fault.text); using the primary")
        case (.failure(let fault), .success(let b)):
            (header, entries) = b
            warnings.append("the primary GPT header \(fault.text); using the backup")
        case (.failure(let p), .failure(let b)):
            throw DissectError(image: file.path, .corruptGPT(primary: p.text, backup: b.text))
        }

        let problems = check(entries, header: header, sectorSize: sectorSize, imageSize: file.size)
        guard problems.isEmpty else { throw DissectError(image: file.path, .invalidTable(problems)) }
        return GPT(sectorSize: sectorSize, header: header, entries: entries, warnings: warnings)
    }

    /// What makes a header unusable, phrased to follow "the primary GPT header …".
    struct HeaderFault: Error {
        let text: String
        /// The header is intact but declares an entry array over `maxEntryArrayBytes`.
        var oversized = false
        init(_ text: String, oversized: Bool = false) {
            self.text = text
            self.oversized = oversized
        }
    }

    /// libblkid reads the entry array of an intact header at LBA 1 (or, when that one does not
    /// suit it, in the last sector) in full, up to 4 GiB, before it checks the array; setting
    /// the header aside here does not stop that. So an image with such a header where libblkid
    /// looks, for the sector size it probes with, is refused before libblkid sees it, even when
    /// the other header would do.
    static func refuseArraysLibblkidWouldRead(_ file: borrowing ImageFile, sectorSize: Int) throws(DissectError) {
        let sectors = file.size / UInt64(sectorSize)
        for (name, lba) in [("primary", UInt64(1)), ("backup", sectors &- 1)] where lba >= 1 && lba < sectors {
            do {
                _ = try readHeader(file, sectorSize: sectorSize, lba: lba)
            } catch where error.oversized {
                throw DissectError(image: file.path, .invalidTable(["the \(name) GPT header \(error.text)"]))
            } catch {
                // Every fault found before the size (signature, header size, checksum, LBA,
                // entry size) is one that makes libblkid pass the header by unread as well.
            }
        }
    }

    private static func readHeader(_ file: borrowing ImageFile, sectorSize: Int, lba: UInt64) throws(HeaderFault) -> Header {
        let (offset, overflow) = lba.multipliedReportingOverflow(by: UInt64(sectorSize))
        guard !overflow, offset < file.size else { throw HeaderFault("lies beyond the end of the image") }
        guard let bytes = try? file.read(at: offset, count: sectorSize), bytes.count == sectorSize else {
            throw HeaderFault("cannot be read (image truncated?)")
        }
        guard Array(bytes[0..<8]) == signature else { throw HeaderFault("is missing (no \"EFI PART\" signature)") }
        let headerSize = Int(le32(bytes, 12))
        guard headerSize >= 92, headerSize <= sectorSize else {
            throw HeaderFault("has an invalid header size (\(headerSize) bytes)")
        }
        var zeroed = Array(bytes[0..<headerSize])
        zeroed.replaceSubrange(16..<20, with: [0, 0, 0, 0])
        guard CRC32.checksum(zeroed) == le32(bytes, 16) else { throw HeaderFault("has a bad checksum") }

        let header = Header(
            myLBA: le64(bytes, 24), alternateLBA: le64(bytes, 32),
            firstUsableLBA: le64(bytes, 40), lastUsableLBA: le64(bytes, 48),
            diskGUID: guidString(bytes, 56), entriesLBA: le64(bytes, 72),
            entryCount: le32(bytes, 80), entrySize: le32(bytes, 84), entriesCRC: le32(bytes, 88))
        guard header.myLBA == lba else {
            throw HeaderFault("says it is at LBA \(header.myLBA), but was read at LBA \(lba)")
        }
        let size = header.entrySize
        guard size >= 128, size % 128 == 0, (size / 128) & (size / 128 - 1) == 0 else {
            throw HeaderFault("has an invalid entry size (\(size) bytes; must be 128 times a power of two)")
        }
        guard UInt64(header.entryCount) * UInt64(size) <= UInt64(maxEntryArrayBytes) else {
            throw HeaderFault(
                "declares \(header.entryCount) entries of \(size) bytes, more than the \(maxEntryArrayBytes / 1024) KiB imgboot accepts",
                oversized: true)
        }
        guard header.firstUsableLBA <= header.lastUsableLBA &+ 1 else {
            throw HeaderFault("has its first usable LBA (\(header.firstUsableLBA)) after its last (\(header.lastUsableLBA))")
        }
        return header
    }

    private static func readEntries(_ file: borrowing ImageFile, _ header: Header, sectorSize: Int) throws(HeaderFault) -> [Entry] {
        let count = Int(header.entryCount)
        let size = Int(header.entrySize)
        let (offset, overflow) = header.entriesLBA.multipliedReportingOverflow(by: UInt64(sectorSize))
        guard !overflow, offset < file.size,
              let bytes = try? file.read(at: offset, count: count * size), bytes.count == count * size
        else { throw HeaderFault("points at an entry array beyond the end of the image") }
        guard CRC32.checksum(bytes) == header.entriesCRC else {
            throw HeaderFault("has a bad entry-array checksum")
        }
        var entries: [Entry] = []
        for index in 0..<count {
            let base = index * size
            let type = guidString(bytes, base)
            if type == zeroGUID { continue }
            entries.append(Entry(
                number: index + 1, typeGUID: type, uniqueGUID: guidString(bytes, base + 16),
                firstLBA: le64(bytes, base + 32), lastLBA: le64(bytes, base + 40),
                attributes: le64(bytes, base + 48), name: utf16Name(bytes, base + 56)))
        }
        return entries
    }

    /// The structural faults of a table's entries, each naming the entries at fault.
    static func check(_ entries: [Entry], header: Header, sectorSize: Int, imageSize: UInt64) -> [String] {
        var problems: [String] = []
        let ss = UInt64(sectorSize)
        var sane: [Entry] = []
        for e in entries {
            // LBAs are inclusive, so a partition cannot be empty: last = first - 1 is how a
            // table says "zero sectors", which no tool writes and nothing can be mounted from.
            if e.firstLBA > 0 && e.lastLBA == e.firstLBA - 1 {
                problems.append("partition \(e.number) is empty (zero sectors: first LBA \(e.firstLBA), last LBA \(e.lastLBA))")
                continue
            }
            if e.lastLBA < e.firstLBA {
                problems.append("partition \(e.number) ends before it starts (LBA \(e.firstLBA) to \(e.lastLBA))")
                continue
            }
            let (end, overflow) = (e.lastLBA &+ 1).multipliedReportingOverflow(by: ss)
            if overflow || end > imageSize || e.lastLBA == .max {
                problems.append("partition \(e.number) ends beyond the end of the image (LBA \(e.lastLBA); the image has \(imageSize / ss) sectors)")
                continue
            }
            if e.firstLBA < header.firstUsableLBA || e.lastLBA > header.lastUsableLBA {
                problems.append("partition \(e.number) lies outside the table's usable area (LBA \(header.firstUsableLBA) to \(header.lastUsableLBA))")
                continue
            }
            sane.append(e)
        }
        // In order of start, each entry is compared with the one reaching furthest before it.
        var furthest: Entry? = nil
        for e in sane.sorted(by: { ($0.firstLBA, $0.number) < ($1.firstLBA, $1.number) }) {
            if let f = furthest, e.firstLBA <= f.lastLBA {
                problems.append("partitions \(min(f.number, e.number)) and \(max(f.number, e.number)) overlap")
            }
            if furthest.map({ e.lastLBA > $0.lastLBA }) ?? true { furthest = e }
        }
        return problems
    }
}

func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
}

func le64(_ b: [UInt8], _ at: Int) -> UInt64 {
    (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
}

/// The 36 UTF-16LE code units of a GPT entry's name at `at`, up to the first NUL.
func utf16Name(_ b: [UInt8], _ at: Int) -> String {
    let units = (0..<36).lazy.map { UInt16(b[at + 2 * $0]) | UInt16(b[at + 2 * $0 + 1]) << 8 }
    return String(decoding: units.prefix { $0 != 0 }, as: UTF16.self)
}

/// A GUID in its mixed-endian on-disk form, as the usual lower-case string.
func guidString(_ b: [UInt8], _ at: Int) -> String {
    let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
    let digits = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(36)
    for i in order {
        if i < 0 { s.append("-"); continue }
        let byte = b[at + i]
        s.append(digits[Int(byte >> 4)])
        s.append(digits[Int(byte & 0xF)])
    }
    return s
}
