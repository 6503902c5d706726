#if canImport(Glibc)
import Glibc
#endif
import CMount

/// One mount through libmount, configured the way imgboot mounts image contents: the
/// filesystem type always explicit, no mount helpers (/sbin/mount.*), no utab, and the target
/// taken literally (never canonicalised: it is usually `/proc/self/fd/N`, which must not be
/// turned back into a path string an image symlink could redirect).
public enum LibMount {
    /// Returns nil on success, or the errno and libmount's message.
    public static func mount(source: String, target: String, fsType: String?, options: String?, flags: UInt = 0) -> (errno: Int32, message: String)? {
        guard let cxt = mnt_new_context() else { return (ENOMEM, "cannot allocate a libmount context") }
        defer { mnt_free_context(cxt) }
        mnt_context_disable_helpers(cxt, 1)
        mnt_context_disable_mtab(cxt, 1)
        mnt_context_disable_canonicalize(cxt, 1)
        mnt_context_set_source(cxt, source)
        mnt_context_set_target(cxt, target)
        if let fsType { mnt_context_set_fstype(cxt, fsType) }
        if let options, !options.isEmpty { mnt_context_set_options(cxt, options) }
        if flags != 0 { mnt_context_set_mflags(cxt, UInt(flags)) }
        let rc = mnt_context_mount(cxt)
        if rc == 0 { return nil }
        let code: Int32 = mnt_context_syscall_called(cxt) == 1 ? mnt_context_get_syscall_errno(cxt) : (rc < 0 ? -rc : EINVAL)
        var buffer = [CChar](repeating: 0, count: 1024)
        _ = mnt_context_get_excode(cxt, rc, &buffer, buffer.count)
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (code, message)
    }
}
