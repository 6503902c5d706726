/// The capability bounding set of a container: what systemd-nspawn keeps by default but the
/// audit capabilities, and nothing else (no CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME,
/// CAP_BPF, CAP_SYS_PACCT, CAP_MAC_*, CAP_IPC_LOCK, CAP_SYSLOG, CAP_WAKE_ALARM,
/// CAP_BLOCK_SUSPEND, CAP_PERFMON, …).
public enum Capabilities {
    /// Capability numbers (linux/capability.h).
    public static let names: [Int: String] = [
        0: "chown", 1: "dac_override", 2: "dac_read_search", 3: "fowner", 4: "fsetid", 5: "kill",
        6: "setgid", 7: "setuid", 8: "setpcap", 9: "linux_immutable", 10: "net_bind_service",
        11: "net_broadcast", 12: "net_admin", 13: "net_raw", 14: "ipc_lock", 15: "ipc_owner",
        16: "sys_module", 17: "sys_rawio", 18: "sys_chroot", 19: "sys_ptrace", 20: "sys_pacct",
        21: "sys_admin", 22: "sys_boot", 23: "sys_nice", 24: "sys_resource", 25: "sys_time",
        26: "sys_tty_config", 27: "mknod", 28: "lease", 29: "audit_write", 30: "audit_control",
        31: "setfcap", 32: "mac_override", 33: "mac_admin", 34: "syslog", 35: "wake_alarm",
        36: "block_suspend", 37: "audit_read", 38: "perfmon", 39: "bpf", 40: "checkpoint_restore",
    ]

    /// nspawn's default set (systemd 252, `arg_caps_retain`).
    public static let nspawnDefault: [Int] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29, 30, 31,
    ]

    /// CAP_AUDIT_WRITE and CAP_AUDIT_CONTROL: nspawn keeps them, imgboot does not. Their only use
    /// is the audit netlink socket, which the filter refuses (EAFNOSUPPORT, as nspawn's does) —
    /// but i386's socketcall() opens sockets with its arguments in memory, where no filter can
    /// look: without a user namespace, root in the container would write (and, with
    /// CAP_AUDIT_CONTROL, reconfigure) the host's audit trail. Without them the kernel refuses.
    public static let audit = [29, 30]

    /// What a container keeps by default.
    public static let containerDefault = nspawnDefault.filter { !audit.contains($0) }

    /// CAP_NET_ADMIN, kept only with a private network (as nspawn does).
    public static let netAdmin = 12

    /// The bounding set to keep, as a bit mask.
    public static func keep(privateNetwork: Bool) -> UInt64 {
        (containerDefault + (privateNetwork ? [netAdmin] : [])).reduce(0) { $0 | (1 << UInt64($1)) }
    }
}
