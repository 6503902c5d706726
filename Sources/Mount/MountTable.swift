#if canImport(Glibc)
import Glibc
#endif
import Dissect
import Support

/// The mount table of the calling process's mount namespace (/proc/self/mountinfo).
public struct MountTable {
    public struct Entry: Equatable, Sendable {
        public var id: Int
        public var parent: Int
        public var mountPoint: String
        public var fsType: String
        public var source: String
        public var options: String
    }

    public var entries: [Entry]

    /// Reads the table now.
    public static func current() -> MountTable {
        MountTable(parsing: readTextFile("/proc/self/mountinfo", limit: 16 << 20) ?? "")
    }

    /// Parses mountinfo text (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPER`.
    public init(parsing text: String) {
        entries = text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count,
                  let id = Int(fields[0]), let parent = Int(fields[1])
            else { return nil }
            return Entry(id: id, parent: parent, mountPoint: MountTable.unescape(fields[4]),
                         fsType: fields[dash + 1], source: MountTable.unescape(fields[dash + 2]), options: fields[5])
        }
    }

    /// Mounts at `dir` or below it, most recent first: the order to unmount. The table lists
    /// mounts in the order they were made, and the reverse of that is right even where depth is
    /// not: a partition an image's symlink led onto the tree's root (`/var -> ../..`) is stacked
    /// on `dir` itself and hides the deeper mounts made before it, which can only be unmounted
    /// by path once it is gone.
    public func mounts(atOrBelow dir: String) -> [Entry] {
        let base = dir.hasSuffix("/") && dir.count > 1 ? String(dir.dropLast()) : dir
        return entries.reversed().filter { e in
            e.mountPoint == base || e.mountPoint.hasPrefix(base == "/" ? "/" : base + "/")
        }
    }

    /// The mount with ID `id` and every mount below it (mounted on it, or on those, …), in the
    /// table's order. Only by the table's parent links: a mount that lies below the same
    /// directory but is not stacked on `id` (one `id` was mounted over) is no part of it.
    public func tree(from id: Int) -> [Entry] {
        var members: Set<Int> = [id]
        var grew = true
        while grew {
            grew = false
            for e in entries where !members.contains(e.id) && members.contains(e.parent) {
                members.insert(e.id)
                grew = true
            }
        }
        return entries.filter { members.contains($0.id) }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
