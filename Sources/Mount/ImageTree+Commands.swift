import Dissect
import Logging

extension ImageTree {
    /// The tree for `ls`, `copy-from` and `archive` (read-only), or for `copy-to` (partition
    /// `writable` read-write). Refused while `imgboot mount` has the image mounted writable —
    /// or mounted at all, for a writer — as `run` refuses it; a running machine's lock refuses
    /// a writer too (`image is busy`). `willWrite`: a read-only tree to look at before writing,
    /// refused as a writer would be, whose warnings are left for the writable tree to give.
    public static func forCommand(_ image: DissectedImage, writable: Int? = nil, willWrite: Bool = false, logger: Logger) throws -> ImageTree {
        let path = image.image
        if let other = try MountRecord.conflict(image: path, writable: writable != nil || willWrite, subject: path, stop: nil) {
            throw MountError(image: path, .busy("mounted\(other.writable ? " writable" : "") on \(other.directory) by imgboot mount"))
        }
        let tree = try open(image, writable: writable, logger: logger)
        if !willWrite || writable != nil {
            for warning in tree.warnings { logger.warning("\(path): \(warning)") }
        }
        return tree
    }
}
