import Support

extension DissectedImage {
    /// The object `imgboot inspect --json` prints (schema in README.md).
    public var json: JSON {
        .object([
            ("image", .string(image)),
            ("size", .int(Int64(clamping: size))),
            ("sectorSize", .int(Int64(sectorSize))),
            ("partitionTable", .string(partitionTable?.rawValue)),
            ("imageUuid", .string(imageUuid)),
            ("architecture", .string(architecture?.rawValue)),
            ("partitions", .array(partitions.map(\.json))),
            ("warnings", .array(warnings.map(JSON.string))),
        ])
    }
}

extension Partition {
    public var json: JSON {
        .object([
            ("number", .int(Int64(number))),
            ("designator", .string(designator?.rawValue)),
            ("typeUuid", .string(typeUuid)),
            ("mbrType", .string(mbrType)),
            ("typeName", .string(typeName)),
            ("uuid", .string(uuid)),
            ("label", .string(label)),
            ("offset", .int(Int64(clamping: offset))),
            ("size", .int(Int64(clamping: size))),
            ("fsType", .string(fsType)),
            ("fsUuid", .string(fsUuid)),
            ("fsLabel", .string(fsLabel)),
            ("architecture", .string(architecture?.rawValue)),
            ("readOnly", .bool(readOnly)),
            ("noAuto", .bool(noAuto)),
            ("growFs", .bool(growFs)),
            ("bootable", .bool(bootable)),
            ("mountPoint", .string(mountPoint)),
        ])
    }
}
