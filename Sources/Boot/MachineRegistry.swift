#if canImport(Glibc)
import Glibc
#endif
import Logging
import Mount

/// Running machines, findable by name: each `run`/`boot` holds a file in
/// /run/imgboot/machines named after its machine, locked (flock) for as long as it runs. The
/// lock is the proof of life — it dies with the process, whatever kills it — so a file whose
/// lock can be taken belongs to a dead machine and is removed by whoever finds it.
public enum MachineRegistry {
    public static let directory = "/run/imgboot/machines"

    /// What `imgboot list` shows about a machine.
    public struct Machine: Sendable, Equatable {
        public var name: String
        /// The container's PID 1, as the host numbers it (0 until it has started).
        public var leader: pid_t
        /// The imgboot process supervising it.
        public var supervisor: pid_t
        public var image: String
        public var mode: String
        /// `boot` (an init as PID 1) or `run` (a command).
        public var kind: String
        /// Seconds since the epoch.
        public var started: Int
        /// The machine's cgroup directory on the host, if it has one.
        public var cgroup: String?
        /// The host IDs its users are (--private-users), if it has a user namespace.
        public var users: UserRange?

        var text: String {
            ["name=\(name)", "leader=\(leader)", "supervisor=\(supervisor)", "image=\(image)", "mode=\(mode)",
             "kind=\(kind)", "started=\(started)", "cgroup=\(cgroup ?? "")",
             "users=\(users.map { "\($0.base):\($0.count)" } ?? "")"].joined(separator: "\n") + "\n"
        }

        init(name: String, leader: pid_t, supervisor: pid_t, image: String, mode: String, kind: String, started: Int, cgroup: String?) {
            self.name = name
            self.leader = leader
            self.supervisor = supervisor
            self.image = image
            self.mode = mode
            self.kind = kind
            self.started = started
            self.cgroup = cgroup
        }

        init?(text: String) {
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2 { fields[kv[0]] = kv[1] }
            }
            guard let name = fields["name"], let leader = fields["leader"].flatMap({ pid_t($0) }),
                  let supervisor = fields["supervisor"].flatMap({ pid_t($0) }) else { return nil }
            self.init(name: name, leader: leader, supervisor: supervisor, image: fields["image"] ?? "",
                      mode: fields["mode"] ?? "", kind: fields["kind"] ?? "", started: fields["started"].flatMap { Int($0) } ?? 0,
                      cgroup: fields["cgroup"].flatMap { $0.isEmpty ? nil : $0 })
            if case .range(let base, let count)? = fields["users"].flatMap(PrivateUsers.init(parsing:)) {
                users = UserRange(base: base, count: count)
            }
        }
    }

    /// A machine's registration, held for its lifetime.
    public final class Registration {
        public private(set) var machine: Machine
        private let fd: Int32
        private let path: String

        fileprivate init(machine: Machine, fd: Int32, path: String) {
            self.machine = machine
            self.fd = fd
            self.path = path
        }

        deinit { unregister() }

        /// Records the host IDs of the machine's users.
        public func update(users: UserRange?) {
            machine.users = users
            write()
        }

        /// Records the container's PID 1 (and its cgroup) once it exists.
        public func update(leader: pid_t, cgroup: String?) {
            machine.leader = leader
            machine.cgroup = cgroup
            write()
        }

        fileprivate func write() {
            let bytes = Array(machine.text.utf8)
            _ = ftruncate(fd, 0)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }

        private var registered = true

        /// Removes the file; the lock goes with the descriptor.
        public func unregister() {
            guard registered else { return }
            registered = false
            unlink(path)
            close(fd)
        }
    }

    public enum NameError: Error, Equatable {
        case taken(String)
        case failed(String, Int32)
    }

    /// Registers a machine named `name`. When `exact` (the user chose the name), a name in use
    /// fails; otherwise the first free of `name`, `name-2`, `name-3`, … is taken.
    public static func register(
        name: String, exact: Bool, image: String, mode: String, kind: String
    ) throws(NameError) -> Registration {
        if mkdir("/run/imgboot", 0o755) != 0 && errno != EEXIST { throw .failed("create /run/imgboot", errno) }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw .failed("create \(directory)", errno) }
        // A suffixed name must still fit in a hostname: the name is cut to make room.
        let candidates = exact ? [name] : [name] + (2...999).map { String(name.prefix(ContainerSpec.maxMachineNameLength - "-\($0)".count)) + "-\($0)" }
        // Whatever killed machines left (entries, cgroups, tree directories) goes now.
        _ = list()
        return try withRegistryLock { () throws(NameError) -> Registration in
            for candidate in candidates {
                let path = directory + "/" + candidate
                if access(path, F_OK) == 0 && !removeIfStaleLocked(path) { continue }
                let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
                guard fd >= 0 else {
                    if errno == EEXIST { continue }
                    throw .failed("create \(path)", errno)
                }
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                    let e = errno
                    close(fd)
                    unlink(path)
                    throw .failed("lock \(path)", e)
                }
                var ts = timespec()
                clock_gettime(CLOCK_REALTIME, &ts)
                let machine = Machine(name: candidate, leader: 0, supervisor: getpid(), image: image, mode: mode,
                                      kind: kind, started: Int(ts.tv_sec), cgroup: nil)
                let registration = Registration(machine: machine, fd: fd, path: path)
                registration.write()
                return registration
            }
            throw .taken(name)
        }
    }

    /// Runs `body` holding the registry's lock: registering and removing stale entries are
    /// serialised, so that no one removes a file another has just created and not yet locked.
    static func withRegistryLock<T>(_ body: () throws(NameError) -> T) throws(NameError) -> T {
        let lock = open(directory + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw .failed("open \(directory)/.lock", errno) }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw .failed("lock \(directory)/.lock", errno) }
        }
        return try body()
    }

    /// Removes the registration at `path` if its machine is gone; true if it was (or the file
    /// vanished meanwhile). Call with the registry's lock held.
    static func removeIfStaleLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return errno == ENOENT }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }
        // A machine whose imgboot was killed: what it left beside its entry goes with it (its
        // processes died with it, so its cgroups are empty; its tree was only ever mounted in
        // namespaces that are gone).
        var buffer = [UInt8](repeating: 0, count: 8192)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0, let machine = Machine(text: String(decoding: buffer[0..<n], as: UTF8.self)) {
            if let cgroup = machine.cgroup { MachineCgroup.removeTree(cgroup) }
            rmdir(DeviceCgroup.root + "/imgboot/" + machine.name)
            rmdir("/run/imgboot/roots/" + machine.name)
            Directory.removeEmptyTree("/run/imgboot/roots/" + machine.name + ".staging")
        }
        unlink(path)
        return true
    }

    /// Removes the registration at `path` if its machine is gone; true if it was.
    @discardableResult
    static func removeIfStale(_ path: String) -> Bool {
        // A registry that cannot be locked: treat the entry as alive; never remove what may live.
        (try? withRegistryLock { () throws(NameError) -> Bool in removeIfStaleLocked(path) }) ?? false
    }

    /// The machines running now; stale entries are removed on the way.
    public static func list() -> [Machine] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var machines: [Machine] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            if let machine = lookup(name) { machines.append(machine) }
        }
        return machines.sorted { $0.name < $1.name }
    }

    /// The running machine called `name`, or nil (a stale entry is removed).
    public static func lookup(_ name: String) -> Machine? {
        guard !name.contains("/"), name != ".", name != ".." else { return nil }
        let path = directory + "/" + name
        if removeIfStale(path) { return nil }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return Machine(text: String(decoding: buffer[0..<n], as: UTF8.self))
    }
}
