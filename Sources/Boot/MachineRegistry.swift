#if canImport(Glibc)
import Glibc
#endif
import Logging
import Mount
import Support

/// Running machines, findable by name, in the state store (`StateStore.machines`): each
/// `run`/`boot` keeps its record `machines/NAME` locked (flock) for as long as it runs. The lock
/// is the proof of life — it dies with the process, whatever kills it — so an entry whose lock
/// can be taken belongs to a dead machine, and is removed (with what the machine left) by
/// whoever finds it. Only root can open anything there (`StateStore`): no one else can hold a
/// dead machine's lock, nor the registry's.
public enum MachineRegistry {
    public typealias Machine = MachineRecord

    /// A machine's registration, held for its lifetime.
    public final class Registration {
        public private(set) var machine: MachineRecord
        /// The lock on the record now at `path`.
        private var fd: Int32
        private let path: String

        fileprivate init(machine: MachineRecord, fd: Int32, path: String) {
            self.machine = machine
            self.fd = fd
            self.path = path
        }

        deinit { unregister() }

        /// Records the container's PID 1 — with its start time, so that no one mistakes a later
        /// process of that PID for it — and the machine's cgroup, once it exists. The new record
        /// is locked before it replaces the old one, so the entry is never without its lock.
        public func update(leader pid: pid_t, cgroup: String?) throws(MountError) {
            guard fd >= 0 else { return }
            guard let leader = ProcessIdentity(pid: pid) else {
                throw MountError(image: machine.name, .failed(operation: "read /proc/\(pid)/stat", errno: ESRCH))
            }
            var updated = machine
            updated.leader = leader
            updated.cgroup = cgroup
            let lock = try StateStore.write(updated.json, to: path, placement: .replace, locked: true, subject: machine.name)
            close(fd)
            fd = lock ?? -1
            machine = updated
        }

        /// Removes the entry; the lock goes with the descriptor.
        public func unregister() {
            guard fd >= 0 else { return }
            if MachineRegistry.isAtPath(fd, path) { unlink(path) }
            close(fd)
            fd = -1
        }
    }

    /// Registers a machine named `name`. When `exact` (the user chose the name), a name in use
    /// fails; otherwise the first free of `name`, `name-2`, `name-3`, … is taken. Waits for the
    /// registry's lock as `StateStore.lock` does: a stop signal through `stop` interrupts it,
    /// and a lock held too long is an error. `subject` (the image) is what messages name.
    public static func register(
        name: String, exact: Bool, image: String, mode: String, kind: MachineRecord.Kind, privateNetwork: Bool, users: UserRange? = nil,
        subject: String, stop: StopSignals?
    ) throws -> Registration {
        try StateStore.prepare([.machines], subject: subject)
        guard let supervisor = ProcessIdentity(pid: getpid()) else {
            throw BootError(image: subject, "read /proc/self/stat", errno: errno)
        }
        // A suffixed name must still fit in a hostname: the name is cut to make room.
        let candidates = exact ? [name] : [name] + (2...999).map { String(name.prefix(ContainerSpec.maxMachineNameLength - "-\($0)".count)) + "-\($0)" }
        return try StateStore.withLock(StateStore.registryLock, subject: subject, stop: stop) { () throws -> Registration in
            // Whatever killed machines left (entries, cgroups, tree directories) goes now.
            sweepLocked()
            for candidate in candidates {
                let path = StateStore.machines + "/" + candidate
                var st = stat()
                if lstat(path, &st) == 0 { continue }  // a live machine's (the sweep removed the dead)
                let machine = MachineRecord(name: candidate, kind: kind, mode: mode, image: image, leader: nil,
                                            supervisor: supervisor, started: unixSeconds(), cgroup: nil, privateNetwork: privateNetwork,
                                            users: users)
                let lock = try StateStore.write(machine.json, to: path, placement: .create, locked: true, subject: subject)
                return Registration(machine: machine, fd: lock ?? -1, path: path)
            }
            throw BootError(image: subject, "machine \(name) is already running (choose another --machine)")
        }
    }

    /// The machines running now, by name; the entries of dead ones are removed on the way.
    public static func list() throws -> [MachineRecord] {
        try StateStore.prepare([.machines], subject: StateStore.root)
        var machines: [MachineRecord] = []
        var stale = false
        for name in StateStore.names(in: StateStore.machines) {
            switch probe(name) {
            case .alive(let machine?): machines.append(machine)
            case .alive(nil): break  // a live entry of another format (an older imgboot's)
            case .dead: stale = true
            }
        }
        if stale { sweep() }
        return machines
    }

    /// The running machine called `name`, or nil (a dead machine's entry is removed).
    public static func lookup(_ name: String) throws -> MachineRecord? {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { return nil }
        try StateStore.prepare([.machines], subject: name)
        switch probe(name) {
        case .alive(let machine): return machine
        case .dead:
            sweep()
            return nil
        }
    }

    enum Probe {
        /// Its lock is held; the record, if it is one of this format for this name.
        case alive(MachineRecord?)
        /// No entry, or one whose lock is free.
        case dead
    }

    /// Looks at the entry `name` without the registry's lock: alive when its lock is held. A
    /// free lock on a file that is no longer at the path only means the machine replaced its
    /// record meanwhile: look again.
    static func probe(_ name: String) -> Probe {
        let path = StateStore.machines + "/" + name
        for _ in 0..<8 {
            let fd = StateStore.openRecord(path)
            guard fd >= 0 else { return .dead }
            defer { close(fd) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                if isAtPath(fd, path) { return .dead }
                continue
            }
            let machine = StateStore.read(fd).flatMap(MachineRecord.init(json:))
            return .alive(machine.flatMap { $0.name == name ? $0 : nil })
        }
        return .alive(nil)
    }

    /// Removes the entries of dead machines, taking the registry's lock. Housekeeping: when the
    /// lock cannot be had now (held, or no time to wait for it), the next one does it.
    static func sweep() {
        _ = try? StateStore.withLock(StateStore.registryLock, subject: StateStore.registryLock, stop: nil, timeout: 1) {
            sweepLocked()
        }
    }

    /// Removes every dead machine's entry, and abandoned temporary files. Call with the
    /// registry's lock held.
    static func sweepLocked() {
        StateStore.removeAbandonedTemporaries(in: StateStore.machines)
        for name in StateStore.names(in: StateStore.machines) { removeIfStaleLocked(name) }
    }

    /// Removes the entry `name` if its machine is gone, with what the machine left beside it.
    /// Call with the registry's lock held (no one registers meanwhile).
    static func removeIfStaleLocked(_ name: String) {
        let path = StateStore.machines + "/" + name
        let fd = StateStore.openRecord(path)
        guard fd >= 0 else { return }
        defer { close(fd) }
        // Locked: alive. Unlocked but no longer at the path: its machine replaced it by a
        // locked record meanwhile — alive too.
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, isAtPath(fd, path) else { return }
        // Its processes died with its imgboot, so its cgroups are empty; its tree was only ever
        // mounted in namespaces that are gone. The paths come from the name, never from the
        // record: nothing read from a file decides what is removed.
        if let unified = CgroupHierarchy.unifiedRoot() { MachineCgroup.removeTree(unified + "/imgboot/" + name) }
        rmdir(DeviceCgroup.root + "/imgboot/" + name)
        rmdir(StateStore.roots + "/" + name)
        unlink(path)
    }

    /// Whether `fd` is open on the very file now at `path`.
    static func isAtPath(_ fd: Int32, _ path: String) -> Bool {
        var open = stat(), named = stat()
        return fstat(fd, &open) == 0 && lstat(path, &named) == 0 && open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }
}
