#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Logging
import Mount
import Support

/// `--private-users`: whether the container gets a user namespace, and which host UIDs and GIDs
/// its users are. systemd-nspawn's names; the default of `run`, `boot` and `smoke` is `pick`.
public enum PrivateUsers: Sendable, Equatable, CustomStringConvertible {
    /// No user namespace: root in the container is root on the host.
    case no
    /// A free range of 65536 UIDs and GIDs, chosen and locked by imgboot for the machine's life.
    case pick
    /// A user namespace mapping UIDs 0–65535 to themselves: the same owners as on the host, but
    /// capabilities only over the container's own namespaces.
    case identity
    /// The range starting at `base`, `count` long.
    case range(base: UInt32, count: UInt32)

    /// Parses nspawn's syntax: `no`, `pick`, `identity`, `UID[:COUNT]` (COUNT defaults to 65536).
    /// Booleans are accepted too: `yes`/`true`/`on`/`1` mean `pick`, `no`/`false`/`off`/`0` mean `no`.
    /// Nil when the text is none of these.
    public init?(parsing text: String) {
        switch text {
        case "no", "false", "off", "0": self = .no
        case "pick", "yes", "true", "on", "1": self = .pick
        case "identity": self = .identity
        default:
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let base = UInt32(parts[0]), parts.count == 1 || UInt32(parts[1]) != nil else { return nil }
            let count = parts.count == 2 ? UInt32(parts[1]) ?? 0 : UserRange.size
            guard count > 0, UInt64(base) + UInt64(count) <= UInt64(UInt32.max) else { return nil }
            self = .range(base: base, count: count)
        }
    }

    public var description: String {
        switch self {
        case .no: "no"
        case .pick: "pick"
        case .identity: "identity"
        case .range(let base, let count): "\(base):\(count)"
        }
    }
}

/// A range held by a running machine: a lock on `/run/imgboot/users/SLOT` for each 65536-ID
/// slot it covers, taken without waiting and held until the machine ends. The kernel drops the
/// locks of a killed imgboot, so the next machine can take the range again; the lock files
/// themselves stay (empty, root's, in a root-only directory) and are reused.
public final class UserRangeLease {
    public let range: UserRange
    private var locks: [Int32]

    private init(range: UserRange, locks: [Int32]) {
        self.range = range
        self.locks = locks
    }

    deinit { release() }

    public func release() {
        for fd in locks { close(fd) }
        locks.removeAll()
    }

    public static let directory = StateStore.users

    /// Why a range cannot be had.
    public struct Failure: Error, Sendable {
        public let description: String
    }

    /// The range for `mode` (nil for `no` and `identity`, which lease nothing), for the machine
    /// `machine` (whose name seeds the search, so that a machine tends to get the same range).
    /// The lock files are in `StateStore.users`, which the caller has prepared.
    public static func lease(_ mode: PrivateUsers, machine: String) throws(Failure) -> UserRangeLease? {
        switch mode {
        case .no, .identity:
            return nil
        case .range(let base, let count):
            let range = UserRange(base: base, count: count)
            if let owner = hostOwner(in: range) {
                throw Failure(description: "--private-users=\(mode): \(owner) of the host is in that range")
            }
            guard let lease = try take(range) else {
                throw Failure(description: "--private-users=\(mode): the range is in use by another machine")
            }
            return lease
        case .pick:
            let slots = (UserRange.pickLast - UserRange.pickFirst) / UserRange.size
            var slot = UInt32(FNV1a.hash(machine) % UInt64(slots))
            for _ in 0..<256 {
                let range = UserRange(base: UserRange.pickFirst + slot * UserRange.size, count: UserRange.size)
                if hostOwner(in: range) == nil, let lease = try take(range) { return lease }
                var next: UInt32 = 0
                _ = withUnsafeMutableBytes(of: &next) { imgboot_random($0.baseAddress, 4) }
                slot = next % slots
            }
            throw Failure(description: "--private-users=pick: no free range of \(UserRange.size) IDs found (try --private-users=no)")
        }
    }

    /// Locks every slot `range` touches, or returns nil (releasing what it took) when another
    /// machine holds one.
    private static func take(_ range: UserRange) throws(Failure) -> UserRangeLease? {
        var locks: [Int32] = []
        let first = range.base / UserRange.size, last = (range.base + (range.count - 1)) / UserRange.size
        for slot in first...last {
            switch lock(slot) {
            case .success(let fd): locks.append(fd)
            case .failure(let failure):
                for fd in locks { close(fd) }
                if case .busy = failure { return nil }
                if case .error(let what) = failure { throw Failure(description: what) }
            }
        }
        return UserRangeLease(range: range, locks: locks)
    }

    private enum LockFailure: Error {
        case busy
        case error(String)
    }

    private static func lock(_ slot: UInt32) -> Result<Int32, LockFailure> {
        let path = directory + "/\(slot)"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return .failure(.error("cannot create \(path): \(errnoString(errno))")) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return .failure(.error("\(path) is not a regular file of root's"))
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            return e == EWOULDBLOCK ? .failure(.busy) : .failure(.error("cannot lock \(path): \(errnoString(e))"))
        }
        return .success(fd)
    }

    /// A user or group of the host (from /etc/passwd and /etc/group) whose ID is in `range`,
    /// as "user NAME (UID)", or nil.
    static func hostOwner(in range: UserRange) -> String? {
        for (file, kind) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
            for line in (readTextFile(file) ?? "").split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                guard fields.count > 2, let id = UInt32(fields[2]) else { continue }
                if id >= range.base && UInt64(id) < UInt64(range.base) + UInt64(range.count) {
                    return "\(kind) \(fields[0]) (\(id))"
                }
            }
        }
        return nil
    }
}

/// The parent's part in setting up a container's user namespace.
enum UserNamespaceSetup {
    /// Maps the container's IDs 0…count-1 to `users` (UIDs and GIDs alike) in the user namespace
    /// of the waiting child `pid`.
    static func writeMaps(pid: pid_t, _ users: UserRange, subject: String) throws(BootError) {
        for map in ["uid_map", "gid_map"] {
            let path = "/proc/\(pid)/\(map)"
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw BootError(image: subject, "open \(path)", errno: errno) }
            defer { close(fd) }
            // One write: the kernel takes a map whole, from the first write only.
            let line = Array(users.mapLine.utf8)
            let n = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n == line.count else {
                throw BootError(image: subject, "write \(path) (\(users))", errno: n < 0 ? errno : EIO)
            }
        }
    }

    /// Runs `body` in the mount namespace of the waiting child `pid`, then returns to imgboot's
    /// own. (Both are mount namespaces of root's: host root may enter the child's, whatever
    /// user namespace owns it.)
    static func inMountNamespace<T: ~Copyable>(of pid: pid_t, subject: String, logger: Logger, _ body: () throws -> T) throws -> T {
        let host = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC)
        guard host >= 0 else { throw BootError(image: subject, "open /proc/self/ns/mnt", errno: errno) }
        defer { close(host) }
        let container = open("/proc/\(pid)/ns/mnt", O_RDONLY | O_CLOEXEC)
        guard container >= 0 else { throw BootError(image: subject, "open the container's mount namespace", errno: errno) }
        defer { close(container) }
        guard imgboot_setns(container, IMGBOOT_CLONE_NEWNS) == 0 else {
            throw BootError(image: subject, "enter the container's mount namespace", errno: errno)
        }
        defer {
            if imgboot_setns(host, IMGBOOT_CLONE_NEWNS) != 0 {
                logger.error("\(subject): cannot return to the host's mount namespace: \(errnoString(errno))")
            }
        }
        return try body()
    }
}
