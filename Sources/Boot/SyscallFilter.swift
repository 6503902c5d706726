#if canImport(Glibc)
import Glibc
#endif
import CLinux
import CSeccomp
import Dissect
import Mount
import Support

/// The container's seccomp filter: an allow-list in the spirit of systemd-nspawn's
/// (`src/nspawn/nspawn-seccomp.c`, systemd 252), compiled with libseccomp before the container
/// starts and installed by its first process as the last step before exec, so that it binds
/// everything in the container — PID 1, `enter`'s and smoke's commands included.
///
/// Three outcomes:
/// - the system calls listed in `allowed` (and those of `allowedWithCapability` whose
///   capability the container keeps) run;
/// - those in `refused` fail with EPERM: they reach past the container's namespaces (kernel
///   keyrings, BPF, perf, kexec, modules, swap, the clock, raw I/O ports, file handles,
///   fanotify, …), and EPERM is what nspawn answers;
/// - every other system call, known or unknown to libseccomp, fails with ENOSYS: a program
///   that tries a system call newer than this list falls back as on an older kernel, where an
///   EPERM would make it give up.
///
/// On x86-64 the filter covers the i386 and x32 system call ABIs too (a 32-bit program in the
/// image must not get past it through int 0x80); on arm64, 32-bit arm.
public enum SyscallFilter {
    /// Allowed to every container, grouped as systemd names its sets.
    public static let allowed: [(group: String, calls: [String])] = [
        ("default", [
            "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
            "clock_nanosleep_time64", "execve", "exit", "exit_group", "futex", "futex_time64", "futex_waitv",
            "get_robust_list", "get_thread_area", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
            "getgid32", "getgroups", "getgroups32", "getpgid", "getpgrp", "getpid", "getppid", "getresgid",
            "getresgid32", "getresuid", "getresuid32", "getrlimit", "getsid", "gettid", "gettimeofday", "getuid",
            "getuid32", "membarrier", "nanosleep", "pause", "prlimit64", "restart_syscall", "rseq", "rt_sigreturn",
            "sched_yield", "set_robust_list", "set_thread_area", "set_tid_address", "set_tls", "sigreturn", "time",
            "ugetrlimit",
        ]),
        ("aio", [
            "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup",
            "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
        ]),
        ("basic-io", [
            "_llseek", "close", "close_range", "dup", "dup2", "dup3", "lseek", "pread64", "preadv", "preadv2",
            "pwrite64", "pwritev", "pwritev2", "read", "readv", "write", "writev",
        ]),
        ("chown", ["chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32"]),
        ("file-system", [
            "access", "chdir", "chmod", "creat", "faccessat", "faccessat2", "fallocate", "fchdir", "fchmod",
            "fchmodat", "fchmodat2", "fcntl", "fcntl64", "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr",
            "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "ftruncate", "ftruncate64", "futimesat",
            "getcwd", "getdents", "getdents64", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
            "inotify_rm_watch", "lgetxattr", "link", "linkat", "listxattr", "llistxattr", "lremovexattr",
            "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "mmap", "mmap2", "munmap",
            "newfstatat", "oldfstat", "oldlstat", "oldstat", "open", "openat", "openat2", "readlink", "readlinkat",
            "removexattr", "rename", "renameat", "renameat2", "rmdir", "setxattr", "stat", "stat64", "statfs",
            "statfs64", "statx", "symlink", "symlinkat", "truncate", "truncate64", "unlink", "unlinkat", "utime",
            "utimensat", "utimensat_time64", "utimes",
        ]),
        ("io-event", [
            "_newselect", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
            "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "poll", "ppoll", "ppoll_time64",
            "pselect6", "pselect6_time64", "select",
        ]),
        ("ipc", [
            "ipc", "memfd_create", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
            "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget",
            "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64",
            "shmat", "shmctl", "shmdt", "shmget",
        ]),
        // Mounting stays possible (systemd sets up its services' namespaces), inside the
        // container's own mount namespace: a mount of the host's is refused by the kernel
        // (open_tree and bind mounts of another namespace's mounts fail with EINVAL).
        ("mount", [
            "chroot", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr", "move_mount", "open_tree",
            "pivot_root", "umount", "umount2",
        ]),
        ("network-io", [
            "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
            "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
            "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
        ]),
        ("process", [
            "arch_prctl", "capget", "clone", "clone3", "execveat", "fork", "getrusage", "kill", "pidfd_open",
            "pidfd_send_signal", "prctl", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "setns", "tgkill", "times", "tkill",
            "unshare", "vfork", "wait4", "waitid", "waitpid",
        ]),
        ("resources", [
            "ioprio_set", "mbind", "migrate_pages", "move_pages", "nice", "sched_setaffinity", "sched_setattr",
            "sched_setparam", "sched_setscheduler", "set_mempolicy", "set_mempolicy_home_node", "setpriority",
            "setrlimit",
        ]),
        ("setuid", [
            "setgid", "setgid32", "setgroups", "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32",
            "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
        ]),
        ("signal", [
            "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigsuspend", "rt_sigtimedwait",
            "rt_sigtimedwait_time64", "sigaction", "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending",
            "sigprocmask", "sigsuspend",
        ]),
        ("sync", ["fdatasync", "fsync", "msync", "sync", "sync_file_range", "sync_file_range2", "syncfs"]),
        ("timer", [
            "alarm", "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
            "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
            "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
        ]),
        ("other", [
            "brk", "capset", "copy_file_range", "fadvise64", "fadvise64_64", "flock", "get_mempolicy", "getcpu",
            "getpriority", "getrandom", "ioctl", "ioprio_get", "kcmp", "landlock_add_rule",
            "landlock_create_ruleset", "landlock_restrict_self", "madvise", "memfd_secret", "mincore", "mprotect",
            "mremap", "name_to_handle_at", "oldolduname", "olduname", "personality", "process_madvise",
            "process_mrelease", "readahead", "readdir", "remap_file_pages", "sched_get_priority_max",
            "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
            "sched_rr_get_interval", "sched_rr_get_interval_time64", "seccomp", "sendfile", "sendfile64",
            "setdomainname", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "sethostname", "setpgid", "setsid",
            "splice", "sysinfo", "tee", "umask", "uname", "userfaultfd", "vmsplice",
        ]),
    ]

    /// Allowed only when the container keeps the capability they need (capability number).
    public static let allowedWithCapability: [(capability: Int, calls: [String])] = [
        (14, ["mlock", "mlock2", "mlockall", "munlock", "munlockall"]),  // CAP_IPC_LOCK
        (16, ["delete_module", "finit_module", "init_module"]),  // CAP_SYS_MODULE
        (17, ["ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write"]),  // CAP_SYS_RAWIO
        (19, ["process_vm_readv", "process_vm_writev", "ptrace"]),  // CAP_SYS_PTRACE
        (20, ["acct"]),  // CAP_SYS_PACCT
        (22, ["reboot"]),  // CAP_SYS_BOOT: in a PID namespace, it ends the container only
        (25, ["adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday", "stime"]),  // CAP_SYS_TIME
        (26, ["vhangup"]),  // CAP_SYS_TTY_CONFIG
        (34, ["syslog"]),  // CAP_SYSLOG
    ]

    /// Refused with EPERM (unless `allowedWithCapability` allows them): what reaches past the
    /// container's namespaces.
    public static let refused: [String] = [
        // Kernel keyrings are not namespaced: the host's keys, by serial number.
        "add_key", "keyctl", "request_key",
        // BPF (detach the device policy, read kernel memory), perf (the whole system's events).
        "bpf", "perf_event_open", "lookup_dcookie",
        // A new kernel; modules.
        "kexec_file_load", "kexec_load", "delete_module", "finit_module", "init_module",
        // A file handle opens any file of a filesystem, from any descriptor on it (the host's,
        // through a standard stream redirected to a host file).
        "open_by_handle_at",
        // Another process's descriptors.
        "pidfd_getfd",
        // Whole-filesystem watches, quotas, swap, accounting, the kernel log, the clock.
        "fanotify_init", "fanotify_mark", "quotactl", "quotactl_fd", "swapon", "swapoff", "acct", "syslog",
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday", "stime",
        // Raw I/O ports, memory locking, CPU emulation, memory protection keys, obsolete ones.
        "ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
        "mlock", "mlock2", "mlockall", "munlock", "munlockall",
        "modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "nfsservctl", "uselib", "_sysctl", "ptrace", "process_vm_readv", "process_vm_writev", "reboot", "vhangup",
    ]

    /// The filter for a container that keeps `capabilities` (bit N = capability N), as BPF
    /// instructions (`struct sock_filter`, 8 bytes each) ready for seccomp(2): from the cache in
    /// /run/imgboot/seccomp when this very filter was compiled before, else compiled and cached.
    /// (Compiling for three ABIs takes libseccomp about 40 ms, more than the rest of a container
    /// start; the cache is keyed by everything the program depends on: the lists below, the
    /// capabilities, libseccomp's version and the architecture.)
    public static func program(keeping capabilities: UInt64) throws(BootError) -> [UInt8] {
        let path = cacheDirectory + "/" + String(cacheKey(capabilities), radix: 16) + ".bpf"
        if let cached = readCached(path) { return cached }
        let program = try compile(keeping: capabilities)
        writeCache(program, to: path)
        return program
    }

    static let cacheDirectory = StateStore.seccomp

    /// FNV-1a over what the compiled program depends on.
    static func cacheKey(_ capabilities: UInt64) -> UInt64 {
        var hash = FNV1a()
        func mix(_ text: String) { hash.mix(field: text) }
        for (group, calls) in allowed { mix(group); calls.forEach(mix) }
        for (capability, calls) in allowedWithCapability { mix(String(capability)); calls.forEach(mix) }
        refused.forEach(mix)
        mix("socket: all but AF_NETLINK/NETLINK_AUDIT, by conditional rules on the low 32 bits of family and protocol")
        mix(String(capabilities, radix: 16))
        if let version = seccomp_version() {
            mix("\(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)")
        }
        #if arch(x86_64)
        mix("x86_64")
        #elseif arch(arm64)
        mix("arm64")
        #endif
        mix("optimize=2")
        return hash.value
    }

    /// A cached program, if it is one of root's own files nobody else could have written.
    private static func readCached(_ path: String) -> [UInt8]? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == 0, st.st_mode & 0o022 == 0,
              let bytes = readFile(path, limit: 1 << 20), !bytes.isEmpty, bytes.count % 8 == 0 else { return nil }
        return bytes
    }

    /// Best effort: a cache that cannot be written only costs the next start the compilation.
    private static func writeCache(_ program: [UInt8], to path: String) {
        // Best effort (see above): a store that cannot be prepared leaves the program uncached.
        guard (try? StateStore.prepare([.seccomp], subject: "seccomp")) != nil else { return }
        let temporary = path + ".\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        let written = (try? writeFully(fd, program)) != nil
        close(fd)
        if !written || rename(temporary, path) != 0 { unlink(temporary) }
    }

    /// Compiles the filter with libseccomp (see `program(keeping:)`).
    static func compile(keeping capabilities: UInt64) throws(BootError) -> [UInt8] {
        guard let context = seccomp_init(imgboot_scmp_act_errno(ENOSYS)) else {
            throw BootError(image: "seccomp", "libseccomp: cannot create a filter")
        }
        defer { seccomp_release(context) }
        // A binary search over the system call numbers rather than a chain of comparisons: every
        // system call of the container goes through this program.
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for arch in secondaryArchitectures() {
            // -EEXIST: already there (the native one); an architecture the library does not
            // know is one the kernel here cannot run either.
            _ = seccomp_arch_add(context, arch)
        }

        var allow = Set(allowed.flatMap(\.calls))
        for (capability, calls) in allowedWithCapability where capabilities & (1 << UInt64(capability)) != 0 {
            allow.formUnion(calls)
        }
        // socket() by rules of its own, below.
        allow.remove("socket")
        for name in allow.sorted() { try add(context, name, action: imgboot_scmp_act_allow()) }
        for name in Set(refused).subtracting(allow).sorted() { try add(context, name, action: imgboot_scmp_act_errno(EPERM)) }
        // Every socket() but the audit netlink one. (i386's socketcall multiplexer, whose
        // arguments are in memory where no filter can look, stays allowed whole, as under nspawn:
        // i386's glibc makes every socket through it. Its audit socket with it — a known gap,
        // attacked in ContainmentTests.I386ABI.auditTrailStaysTheHosts.)
        let socketRules = imgboot_scmp_socket_rules(context, AF_NETLINK, 9 /* NETLINK_AUDIT */, EAFNOSUPPORT)
        guard socketRules == 0 else { throw BootError(image: "seccomp", "libseccomp: cannot add the rules for socket", errno: -socketRules) }

        return try export(context)
    }

    private static func add(_ context: scmp_filter_ctx, _ name: String, action: UInt32) throws(BootError) {
        let number = seccomp_syscall_resolve_name(name)
        guard number != __NR_SCMP_ERROR else { return }  // unknown to this libseccomp: ENOSYS
        let result = seccomp_rule_add_array(context, action, number, 0, nil)
        // -EDOM: no such call on one of the architectures; -EEXIST: listed twice.
        guard result == 0 || result == -EDOM || result == -EEXIST else {
            throw BootError(image: "seccomp", "libseccomp: cannot add a rule for \(name)", errno: -result)
        }
    }

    private static func secondaryArchitectures() -> [UInt32] {
        #if arch(x86_64)
        return [imgboot_scmp_arch_x86(), imgboot_scmp_arch_x32()]
        #elseif arch(arm64)
        return [imgboot_scmp_arch_arm()]
        #else
        return []
        #endif
    }

    /// The BPF program libseccomp generates, read back through a memfd (libseccomp 2.5 exports
    /// only to a descriptor).
    private static func export(_ context: scmp_filter_ctx) throws(BootError) -> [UInt8] {
        let fd = imgboot_memfd_create("imgboot-seccomp")
        guard fd >= 0 else { throw BootError(image: "seccomp", "create a memfd", errno: errno) }
        defer { close(fd) }
        let result = seccomp_export_bpf(context, fd)
        guard result == 0 else { throw BootError(image: "seccomp", "libseccomp: cannot export the filter", errno: -result) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0, size % 8 == 0 else { throw BootError(image: "seccomp", "libseccomp exported \(size) bytes") }
        let program: [UInt8]
        do {
            program = try readAll(fd, limit: Int(size), at: 0)
        } catch {
            throw BootError(image: "seccomp", "read the exported filter", errno: error.code)
        }
        guard program.count == Int(size) else { throw BootError(image: "seccomp", "read the exported filter: \(program.count) of \(size) bytes") }
        return program
    }
}
