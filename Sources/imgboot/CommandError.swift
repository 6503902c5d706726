import ArgumentParser
import Attach
import Dissect
import Boot
import Mount

#if canImport(Glibc)
import Glibc
#endif
import Support

/// A failure of imgboot's own about the command line's paths or privileges.
struct CommandError: IMGBootError {
    let subject: String?
    let errno: Int32?
    /// What is wrong; with an errno, what failed (its text follows).
    let what: String

    init(_ subject: String?, _ what: String, errno: Int32? = nil) {
        self.subject = subject
        self.what = what
        self.errno = errno
    }

    var detail: String { failure(what, errno: errno) }
}

/// Root or a one-line error that says why: `why` names what the command needs root for.
func requireRoot(_ subject: String, _ what: String, why: String = "loop devices, mounts and namespaces") throws {
    guard geteuid() == 0 else {
        throw CommandError(subject, "\(what) needs root (\(why))")
    }
}

/// A timeout is a positive, finite number of seconds.
func validateTimeout(_ seconds: Double, option: String = "--timeout") throws {
    guard seconds.isFinite, seconds > 0 else {
        throw ValidationError("\(option) \(seconds): must be a positive number of seconds")
    }
}

/// The canonical path of an existing directory, or a one-line error.
func existingDirectory(_ path: String) throws -> String {
    guard let resolved = realpath(path, nil) else {
        throw CommandError(path, "\(errno == ENOENT ? "no such directory" : errnoString(errno))")
    }
    defer { free(resolved) }
    let canonical = String(cString: resolved)
    var st = stat()
    guard stat(canonical, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
        throw CommandError(path, "not a directory")
    }
    return canonical
}
