#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Dissect
import Support

/// imgboot's runtime state: everything it keeps under /run/imgboot, in one format and under
/// one permission model, and the one place that knows the paths (crun keeps a container's
/// state behind one file the same way).
///
/// - `machines/NAME`: a running machine's record (`MachineRecord`), locked (flock) by its imgboot
///   for as long as it runs — the lock is the proof of life; `machines/.lock` serialises
///   registering and sweeping.
/// - `trees/HASH`: a tree `imgboot mount` mounted (`MountRecord`), named by its directory;
///   `trees/.lock` serialises writing and sweeping them; `trees/.mount` serialises `imgboot
///   mount`s from the check of their directory to their record.
/// - `roots/NAME`, `staging`: where containers mount their trees and staging tmpfs, in their
///   private mount namespaces only.
///
/// Everything is root's alone: the directories 0700, the files 0600. An unprivileged user
/// cannot open, read or lock anything here, so cannot hold a dead machine's entry alive or
/// freeze the registry. Records are JSON, written to a temporary file and renamed into place,
/// so a field can never inject another and a reader never sees half a record.
public enum StateStore {
    public static let root = "/run/imgboot"
    public static let machines = root + "/machines"
    /// Not `mounts`: an older imgboot keeps records of another format there, and would take
    /// these for damaged ones of its own (and remove them).
    public static let trees = root + "/trees"
    public static let roots = root + "/roots"
    public static let staging = root + "/staging"
    public static let users = root + "/users"
    public static let seccomp = root + "/seccomp"
    /// Held while machines register and while stale entries are swept.
    public static let registryLock = machines + "/.lock"
    /// Held while mount records are written, removed and swept.
    public static let treesLock = trees + "/.lock"
    /// Held by `imgboot mount` from checking that nothing is mounted on its directory until
    /// its tree is recorded: two at once on one directory would both find it free.
    public static let mountLock = trees + "/.mount"

    /// The directories below /run/imgboot.
    public enum Area: String, Sendable, CaseIterable {
        /// users: the locks of user ranges leased by machines (`UserRangeLease`); seccomp: the
        /// compiled system call filters (`SyscallFilter`).
        case machines, trees, roots, staging, users, seccomp
    }

    /// How long anyone may hold the registry's lock before a waiter gives up with an error:
    /// no legitimate holder keeps it for more than a moment.
    public static let lockTimeout = 5.0

    /// The largest record read: a record is a few hundred bytes.
    static let recordLimit = 64 << 10

    /// Makes sure /run/imgboot and `areas` below it exist as directories of root's with mode
    /// 0700, creating what is missing. What exists must be a real directory (a symlink there is
    /// never followed) owned by root; a wider mode (an older imgboot made them 0755) is
    /// narrowed. A directory owned by anyone else is refused: imgboot will not use state
    /// someone else could have prepared.
    public static func prepare(_ areas: [Area], subject: String) throws(MountError) {
        let run = open("/run", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard run >= 0 else { throw MountError(image: subject, .failed(operation: "open /run", errno: errno)) }
        defer { close(run) }
        let top = try directory(named: "imgboot", in: run, path: root, subject: subject)
        defer { close(top) }
        for area in areas {
            close(try directory(named: area.rawValue, in: top, path: root + "/" + area.rawValue, subject: subject))
        }
    }

    /// Creates (if missing) and checks the directory `name` in `parent`; returns it open.
    private static func directory(named name: String, in parent: Int32, path: String, subject: String) throws(MountError) -> Int32 {
        if mkdirat(parent, name, 0o700) != 0 && errno != EEXIST {
            throw MountError(image: subject, .failed(operation: "create \(path)", errno: errno))
        }
        // What is wrong with `path` itself: said of the path, after the subject if that differs.
        func refused(_ problem: String) -> MountError {
            subject == path ? MountError(image: path, .other(problem)) : MountError(image: subject, .other("\(path): \(problem)"))
        }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP || e == ENOTDIR {
                throw refused("not a directory (imgboot never follows a symlink here): refusing to use it (remove it)")
            }
            throw MountError(image: subject, .failed(operation: "open \(path)", errno: e))
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw MountError(image: subject, .failed(operation: "stat \(path)", errno: e))
        }
        guard st.st_uid == 0 else {
            close(fd)
            throw refused("owned by uid \(st.st_uid), not root: refusing to use it (remove it)")
        }
        if st.st_mode & 0o7777 != 0o700 && fchmod(fd, 0o700) != 0 {
            let e = errno
            close(fd)
            throw MountError(image: subject, .failed(operation: "make \(path) mode 0700", errno: e))
        }
        return fd
    }

    /// `roots/MACHINE`, where the machine's tree is mounted (in its private mount namespace
    /// only), created if missing, with the staging directory beside it. Named after the
    /// machine, so that one a killed imgboot left is found and reused.
    public static func treeDirectory(machine: String, subject: String) throws(MountError) -> String {
        try prepare([.roots, .staging], subject: subject)
        let path = roots + "/" + machine
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw MountError(image: subject, .failed(operation: "create \(path)", errno: errno))
        }
        return path
    }

    // MARK: Records

    /// How `write` puts a record in place.
    public enum Placement {
        /// Over whatever is there.
        case replace
        /// Only where nothing is: fails with EEXIST otherwise.
        case create
    }

    /// Writes `record` at `path` atomically: the JSON goes into an unnamed file (O_TMPFILE,
    /// 0600) in the same directory, which is locked (flock, exclusive), then linked into place —
    /// for `.replace` under a temporary name renamed over `path` — so a reader sees the old
    /// record or the new one, never a mix, and a file that has a name has its lock from the
    /// start (a sweep takes a named temporary file whose lock is free for one whose writer
    /// died). With `locked`, the descriptor holding the lock is returned, the caller's proof of
    /// life; otherwise the lock goes with it, and nil is returned.
    @discardableResult
    public static func write(
        _ record: JSON, to path: String, placement: Placement = .replace, locked: Bool = false, subject: String
    ) throws(MountError) -> Int32? {
        let (parent, name) = splitPath(path)
        let directory = parent ?? "."
        let fd = open(directory, O_WRONLY | Int32(IMGBOOT_O_TMPFILE) | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MountError(image: subject, .failed(operation: "create a file in \(directory)", errno: errno)) }
        func fail(_ operation: String, _ e: Int32) -> MountError {
            close(fd)
            return MountError(image: subject, .failed(operation: operation, errno: e))
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { throw fail("lock a new file in \(directory)", errno) }
        do {
            try writeFully(fd, (record.serialized(pretty: false) + "\n").utf8)
        } catch {
            throw fail("write \(path)", error.code)
        }
        let file = "/proc/self/fd/\(fd)"
        switch placement {
        case .create:
            // linkat never replaces: EEXIST when `path` is taken.
            guard linkat(AT_FDCWD, file, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 else { throw fail("create \(path)", errno) }
        case .replace:
            var random = [UInt8](repeating: 0, count: 6)
            _ = random.withUnsafeMutableBytes { imgboot_random($0.baseAddress, 6) }
            let temporary = directory + "/" + temporaryPrefix + name + "." + String(getpid()) + "."
                + random.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            guard linkat(AT_FDCWD, file, AT_FDCWD, temporary, AT_SYMLINK_FOLLOW) == 0 else { throw fail("create \(temporary)", errno) }
            guard rename(temporary, path) == 0 else {
                let e = errno
                unlink(temporary)
                throw fail("rename \(temporary) to \(path)", e)
            }
        }
        if locked { return fd }
        close(fd)
        return nil
    }

    /// Temporary files start with this (a dot: listings skip them).
    static let temporaryPrefix = ".tmp."

    /// The record at `path` from the descriptor `fd` open on it, or nil when it is not a
    /// regular file of root's or not JSON.
    public static func read(_ fd: Int32) -> JSON? {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == 0 else { return nil }
        guard let data = try? readAll(fd, limit: recordLimit, at: 0) else { return nil }
        return try? JSON(parsing: data)  // not a record of this format: treated as no record
    }

    /// Opens the record at `path` for reading (never through a symlink), or -1.
    public static func openRecord(_ path: String) -> Int32 {
        open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    }

    /// The record at `path`, or nil (see `read`).
    public static func read(_ path: String) -> JSON? {
        let fd = openRecord(path)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return read(fd)
    }

    /// The names in an area's directory, without `.`, `..`, and the dot files (locks,
    /// temporary files).
    public static func names(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

    /// Removes the temporary files in `directory` whose writer died before renaming them (their
    /// lock is free). Call with the lock that serialises writers of that directory held, or
    /// where no writer can be mid-way.
    public static func removeAbandonedTemporaries(in directory: String) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasPrefix(temporaryPrefix) else { continue }
            let path = directory + "/" + name
            let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { unlink(path) }
            close(fd)
        }
    }

    // MARK: Locks

    /// Runs `body` holding the lock `path` (`registryLock`, `treesLock`; see `lock`).
    public static func withLock<T>(
        _ path: String, subject: String, stop: StopSignals?, timeout: Double = lockTimeout, _ body: () throws -> T
    ) throws -> T {
        let fd = try lock(path, subject: subject, stop: stop, timeout: timeout)
        defer { close(fd) }
        return try body()
    }

    /// Opens (creating it, 0600) and locks the lock file at `path`; returns the descriptor that
    /// holds the lock. Never blocks in flock: it polls, so that a stop signal (through `stop`,
    /// imgboot's signalfd: blocked signals never interrupt a blocking flock) ends the wait as
    /// at any other checkpoint (`Interrupted`), and a lock held longer than `timeout` — by a
    /// hung imgboot, or anyone — is an error that says so instead of a hang.
    public static func lock(_ path: String, subject: String, stop: StopSignals?, timeout: Double = lockTimeout) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MountError(image: subject, .failed(operation: "open \(path)", errno: errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == 0 else {
            close(fd)
            throw MountError(image: subject, .other("\(path) is not a regular file of root's: refusing to use it (remove it)"))
        }
        // An older imgboot made it 0644: harmless in a 0700 directory, but one mode for all.
        if st.st_mode & 0o7777 != 0o600 { _ = fchmod(fd, 0o600) }
        do {
            try waitForLock(fd, path: path, subject: subject, stop: stop, timeout: timeout)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    static func waitForLock(_ fd: Int32, path: String, subject: String, stop: StopSignals?, timeout: Double) throws {
        let deadline = Deadline(after: timeout)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            guard e == EWOULDBLOCK || e == EINTR else {
                throw MountError(image: subject, .failed(operation: "lock \(path)", errno: e))
            }
            try stop?.checkpoint(subject)
            guard !deadline.hasPassed else {
                throw MountError(image: subject, .other(
                    "\(path) has been locked by another process for \(Int(timeout.rounded())) s: is an imgboot hung? (fuser -v \(path) names it)"))
            }
            // Sleep until a signal arrives or the next look at the lock (poll ignores fd -1).
            var signal = pollfd(fd: stop?.fd ?? -1, events: Int16(POLLIN), revents: 0)
            _ = poll(&signal, 1, deadline.pollMilliseconds(atMost: 0.02))
        }
    }
}

/// Where a wait learns that imgboot is asked to stop: Boot's `Signals`, whose signalfd `fd`
/// becomes readable when a signal arrives, and whose `checkpoint` throws `Interrupted` for a
/// stop signal.
public protocol StopSignals: AnyObject {
    var fd: Int32 { get }
    func checkpoint(_ subject: String) throws
}
