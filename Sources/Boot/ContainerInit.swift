#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// imgboot-init (Sources/ContainerInit/init.c): PID 1 of `imgboot run` and the waiter of
/// `imgboot enter`, embedded in imgboot as bytes and executed from a sealed memfd, so that the
/// container's first process maps nothing of the host's and can change nothing through
/// /proc/1/exe.
enum ContainerInit {
    /// argv[0] of the init, as the container sees it in /proc/1/cmdline.
    static let name = "imgboot-init"

    /// imgboot-init's argv[0]: its name, and `run`'s --user and --chdir for the command
    /// (Sources/ContainerInit/init.c: the user's name has no blank; the directory is the rest).
    static func argv0(user: String?, workingDirectory: String?) -> String {
        name + (user.map { " --user=" + $0 } ?? "") + (workingDirectory.map { " --chdir=" + $0 } ?? "")
    }

    /// A sealed, executable, close-on-exec memfd holding the init. The caller closes it.
    static func memfd(subject: String) throws(BootError) -> Int32 {
        let fd = containerInitExecutable.withUnsafeBytes { imgboot_sealed_executable(name, $0.baseAddress, UInt($0.count)) }
        guard fd >= 0 else { throw BootError(image: subject, "create the memfd of \(name)", errno: errno) }
        return fd
    }
}
