#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// The shell a container runs when no command is given: root's login shell from the image's
/// /etc/passwd, as systemd-nspawn and machinectl take it; `/bin/sh` when there is no passwd, no
/// root entry in it, or the program it names is not in the tree.
public enum LoginShell {
    /// What runs when the image names no usable shell.
    public static let fallback = ["/bin/sh"]

    /// The most of /etc/passwd read: root's entry is near the top of any real one.
    static let passwdLimit = 256 * 1024
    /// The longest shell field used, and the most words in it: what the container's child can
    /// take through its start-up pipe in one atomic write (see `encoded`).
    static let maxFieldLength = 1024
    static let maxWords = 16

    /// The words of root's shell field in the passwd text `passwd` (the first entry named
    /// `root`, as getpwnam finds it): an empty field is `/bin/sh` (passwd(5)); a field with
    /// blanks, such as `/usr/bin/busybox sh`, is split on them into a program and its arguments
    /// (util-linux's login runs such a field with `sh -c`, which needs a /bin/sh that an image
    /// naming busybox that way may not have). Nil when there is no such entry or the field is
    /// not usable: not an absolute path, too long, or holding a NUL or a control character.
    /// `user`: another entry than root's, by name or UID (`run --user`).
    public static func parse(passwd: String, user: String = "root") -> [String]? {
        // "\r\n" is one Character to Swift: lines end at either.
        for line in passwd.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count == 7, fields[0] == user || (user.allSatisfy(\.isNumber) && fields[2] == user) else { continue }
            let field = fields[6]
            guard field.utf8.count <= maxFieldLength,
                  !field.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f }) else { return nil }
            let words = field.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let program = words.first else { return fallback }
            guard program.hasPrefix("/"), words.count <= maxWords else { return nil }
            return words
        }
        return nil
    }

    /// Root's login shell in the tree whose root directory is `root` (a descriptor): passwd is
    /// read bounded, resolved inside the tree (a symlink in it cannot lead out), and the
    /// program must be a regular, executable file of the tree; otherwise `fallback`.
    public static func resolve(inTree root: Int32, user: String = "root") -> [String] {
        guard let bytes = ImageMetadata.readBounded(root, "etc/passwd", limit: passwdLimit),
              let words = parse(passwd: String(decoding: bytes, as: UTF8.self), user: user),
              ImageMetadata.isExecutableFile(root, words[0]) else { return fallback }
        return words
    }
}
