#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Support

/// A running machine as the state store keeps it (`/run/imgboot/machines/NAME`), and what
/// `imgboot list` shows. Its processes are named by PID *and* start time, and the leader by its
/// cgroup too: a PID alone names whatever process has it now, which after the machine is gone
/// may be anyone's.
public struct MachineRecord: Sendable, Equatable {
    public var name: String
    /// What PID 1 is.
    public enum Kind: String, Sendable, Equatable {
        /// The image's init: stopped by asking it to power off (SIGRTMIN+4).
        case boot
        /// imgboot-init and a command: stopped by SIGTERM to the command.
        case run
    }

    public var kind: Kind
    /// The volatile mode.
    public var mode: String
    /// The image, as an absolute path.
    public var image: String
    /// The container's PID 1 as the host numbers it; nil until it has started.
    public var leader: ProcessIdentity?
    /// The imgboot process supervising it.
    public var supervisor: ProcessIdentity
    /// Seconds since the epoch.
    public var started: Int
    /// The machine's cgroup directory on the host (in the unified hierarchy), if it has one.
    public var cgroup: String?
    /// Whether it has a network namespace of its own (`--private-network`).
    public var privateNetwork: Bool
    /// The host IDs of its users, when it has a user namespace (`--private-users`).
    public var users: UserRange?

    public init(name: String, kind: Kind, mode: String, image: String, leader: ProcessIdentity?, supervisor: ProcessIdentity,
                started: Int, cgroup: String?, privateNetwork: Bool, users: UserRange? = nil) {
        self.name = name
        self.kind = kind
        self.mode = mode
        self.image = image
        self.leader = leader
        self.supervisor = supervisor
        self.started = started
        self.cgroup = cgroup
        self.privateNetwork = privateNetwork
        self.users = users
    }

    /// The leader's PID, 0 until it has started (as `imgboot list` shows it).
    public var leaderPID: pid_t { leader?.pid ?? 0 }

    /// The record's JSON (format version 1).
    public var json: JSON {
        .object([
            ("version", .int(1)),
            ("name", .string(name)),
            ("kind", .string(kind.rawValue)),
            ("mode", .string(mode)),
            ("image", .string(image)),
            ("leader", .int(Int64(leaderPID))),
            ("leaderStartTime", .int(Int64(clamping: leader?.startTime ?? 0))),
            ("supervisor", .int(Int64(supervisor.pid))),
            ("supervisorStartTime", .int(Int64(clamping: supervisor.startTime))),
            ("started", .int(Int64(started))),
            ("cgroup", .string(cgroup)),
            ("privateNetwork", .bool(privateNetwork)),
            ("users", users.map { .object([("base", .int(Int64($0.base))), ("count", .int(Int64($0.count)))]) } ?? .null),
        ])
    }

    /// Reads a record; nil unless every field is there with its type (a record of another
    /// format, or a damaged one, is no record).
    public init?(json: JSON) {
        guard json["version"]?.intValue == 1,
              let name = json["name"]?.stringValue, let kind = json["kind"]?.stringValue.flatMap(Kind.init(rawValue:)),
              let mode = json["mode"]?.stringValue, let image = json["image"]?.stringValue,
              let leader = json["leader"]?.intValue.flatMap({ pid_t(exactly: $0) }), leader >= 0,
              let leaderStart = json["leaderStartTime"]?.intValue.flatMap({ UInt64(exactly: $0) }),
              let supervisor = json["supervisor"]?.intValue.flatMap({ pid_t(exactly: $0) }), supervisor > 0,
              let supervisorStart = json["supervisorStartTime"]?.intValue.flatMap({ UInt64(exactly: $0) }),
              let started = json["started"]?.intValue.flatMap({ Int(exactly: $0) }),
              let cgroup = json["cgroup"], cgroup.isNull || cgroup.stringValue != nil,
              let privateNetwork = json["privateNetwork"]?.boolValue
        else { return nil }
        // users: null, an object with both numbers, or (an older record) absent.
        var users: UserRange?
        if let range = json["users"], !range.isNull {
            guard let base = range["base"]?.intValue.flatMap({ UInt32(exactly: $0) }),
                  let count = range["count"]?.intValue.flatMap({ UInt32(exactly: $0) }), count > 0 else { return nil }
            users = UserRange(base: base, count: count)
        }
        self.init(name: name, kind: kind, mode: mode, image: image,
                  leader: leader > 0 ? ProcessIdentity(pid: leader, startTime: leaderStart) : nil,
                  supervisor: ProcessIdentity(pid: supervisor, startTime: supervisorStart),
                  started: started, cgroup: cgroup.stringValue, privateNetwork: privateNetwork, users: users)
    }

    /// A pidfd of the machine's leader, once it is proven to be the leader: the pidfd is opened
    /// first, then the process behind the PID must have the recorded start time and lie in the
    /// machine's cgroup (or below it: systemd moves itself to init.scope), and finally the
    /// pidfd must still refer to a live process — so the checks were made on the process the
    /// pidfd holds, and a PID reused by anyone else is never signalled or entered. Every
    /// signal to a machine and every `enter` goes through here.
    public func openLeader() throws(MountError) -> PidFD {
        guard let leader else { throw MountError(image: name, .other("the machine has not started yet")) }
        let fd = imgboot_pidfd_open(leader.pid)
        guard fd >= 0 else { throw MountError(image: name, .failed(operation: "the machine has ended", errno: errno)) }
        let pidfd = PidFD(fd)
        guard ProcessIdentity.startTime(of: leader.pid) == leader.startTime else {
            throw notTheLeader(leader.pid, "it started at another time")
        }
        if let cgroup {
            guard let expected = CgroupHierarchy.path(ofDirectory: cgroup), let actual = CgroupHierarchy.path(of: leader.pid),
                  actual == expected || actual.hasPrefix(expected + "/")
            else { throw notTheLeader(leader.pid, "it is not in the machine's cgroup") }
        }
        guard imgboot_pidfd_send_signal(pidfd.fd, 0) == 0 else {
            throw MountError(image: name, .failed(operation: "the machine has ended", errno: errno))
        }
        return pidfd
    }

    /// Whether `openLeader` would succeed now: the recorded leader is the machine's.
    public var leaderIsVerified: Bool {
        do {
            _ = try openLeader()
            return true
        } catch {
            return false
        }
    }

    private func notTheLeader(_ pid: pid_t, _ why: String) -> MountError {
        MountError(image: name, .other("PID \(pid) is no longer the machine's leader (\(why)): refusing to signal or enter it"))
    }
}

/// A process named for the lifetime of the boot: its PID and its start time (clock ticks after
/// boot, field 22 of /proc/PID/stat). A PID is reused once its process is gone; the pair is not.
public struct ProcessIdentity: Sendable, Equatable {
    public var pid: pid_t
    public var startTime: UInt64

    public init(pid: pid_t, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The process with PID `pid` now, or nil when there is none.
    public init?(pid: pid_t) {
        guard let start = ProcessIdentity.startTime(of: pid) else { return nil }
        self.init(pid: pid, startTime: start)
    }

    /// The start time of the process with PID `pid` now, or nil.
    public static func startTime(of pid: pid_t) -> UInt64? {
        readTextFile("/proc/\(pid)/stat", limit: 4096).flatMap(startTime(stat:))
    }

    /// Field 22 of a /proc/PID/stat line. The command name (field 2) is in parentheses and may
    /// hold spaces and parentheses itself, so fields are counted from the last ')'.
    static func startTime(stat text: String) -> UInt64? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (the state).
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}

/// A pidfd, closed with its owner.
public struct PidFD: ~Copyable {
    public let fd: Int32

    public init(_ fd: Int32) { self.fd = fd }

    deinit { close(fd) }
}

/// Paths in the unified (cgroup v2) hierarchy.
public enum CgroupHierarchy {
    /// The unified hierarchy's mount point: /sys/fs/cgroup on pure v2 hosts,
    /// /sys/fs/cgroup/unified on hybrid ones; nil when the host has none.
    public static func unifiedRoot() -> String? {
        for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] where imgboot_is_cgroup2(candidate) == 1 {
            return candidate
        }
        return nil
    }

    /// A cgroup directory's path within the hierarchy (`/imgboot/NAME` for
    /// `/sys/fs/cgroup/unified/imgboot/NAME`), as /proc/PID/cgroup names cgroups.
    static func path(ofDirectory directory: String) -> String? {
        guard let root = unifiedRoot(), directory.hasPrefix(root + "/") else { return nil }
        return String(directory.dropFirst(root.count))
    }

    /// The unified-hierarchy cgroup of process `pid` (the `0::PATH` line of /proc/PID/cgroup).
    static func path(of pid: pid_t) -> String? {
        guard let text = readTextFile("/proc/\(pid)/cgroup", limit: 64 << 10) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
    }
}
