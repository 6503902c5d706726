// CLinux, container part: the child that runs between clone and exec. No Swift runs there;
// it only makes system calls, and reports a failure as {step, errno} on a close-on-exec pipe.
//
// Functions here return a non-negative value on success and -1 with errno on failure.

#ifndef IMGBOOT_CLINUX_CONTAINER_H
#define IMGBOOT_CLINUX_CONTAINER_H

#include <stdint.h>
#include <sys/types.h>

/// The steps of the container child, as reported on the error pipe.
enum imgboot_step {
    IMGBOOT_STEP_NONE = 0,
    IMGBOOT_STEP_SIGNALS,
    IMGBOOT_STEP_CGROUP_NAMESPACE,
    IMGBOOT_STEP_LOOPBACK,
    IMGBOOT_STEP_ROOT,
    /// An operation of the container's part of the mount plan: `index` says which.
    IMGBOOT_STEP_PLAN,
    IMGBOOT_STEP_PIVOT_ROOT,
    IMGBOOT_STEP_DETACH_OLD_ROOT,
    IMGBOOT_STEP_HOSTNAME,
    IMGBOOT_STEP_SESSION,
    IMGBOOT_STEP_CAPABILITIES,
    /// Executing the command or the image's init. (imgboot-init reports this step by number:
    /// Sources/ContainerInit/init.c.)
    IMGBOOT_STEP_EXEC,
    IMGBOOT_STEP_KEYRING,
    IMGBOOT_STEP_SECCOMP,
    /// Executing imgboot-init from its memfd.
    IMGBOOT_STEP_INIT,
    /// Taking UID and GID 0 in the user namespace.
    IMGBOOT_STEP_USER_NAMESPACE,
    /// `run --user`: imgboot-init finding the user (`index` 0), setting its groups (1), its
    /// GID (2) or its UID (3).
    IMGBOOT_STEP_USER,
    /// `run --chdir`: imgboot-init entering the directory.
    IMGBOOT_STEP_CHDIR,
};

/// What a failed step reports on the error pipe.
struct imgboot_child_error {
    int32_t step;
    int32_t error;
    /// IMGBOOT_STEP_PLAN: the index of the operation that failed; else 0.
    int32_t index;
};

/// The kinds of the container's mount operations (the container phase of the mount plan).
enum imgboot_op_kind {
    /// mount(source, target, fstype, flags, data) on a real directory of the tree.
    IMGBOOT_OP_MOUNT = 1,
    /// Bind `source` (a path inside the tree, or the console when NULL) over `target`; skipped
    /// when `target` does not exist.
    IMGBOOT_OP_COVER,
    /// Bind `target` onto itself and remount it read-only; skipped when it does not exist.
    IMGBOOT_OP_READ_ONLY,
};

/// One operation of the container's part of the mount plan. Paths are inside the tree,
/// relative ("proc/kcore"), looked up there (never through a symlink at their end).
struct imgboot_mount_op {
    int32_t kind;
    const char *target;
    const char *source;
    const char *fstype;
    unsigned long flags;
    const char *data;
};

/// How the container starts.
struct imgboot_container {
    /// The container's tree, fully mounted, in the caller's mount namespace. The child gets a
    /// copy of that namespace and pivots into the tree.
    const char *root;
    const char *hostname;
    /// NULL-terminated. In boot mode argv[0] is the init's absolute path. Otherwise
    /// `{"imgboot-init", COMMAND, ARG..., NULL}`: imgboot-init runs COMMAND (looked up in the
    /// container's PATH when it has no '/').
    char *const *argv;
    char *const *envp;
    /// 1: argv becomes PID 1 (an init). 0: imgboot-init (from `init_fd`) is PID 1 and runs the
    /// command as its child, reaping zombies, forwarding signals, and exiting with the child's
    /// status (128+N when killed by signal N).
    int boot;
    /// A sealed memfd holding imgboot-init (Sources/ContainerInit), executed when `boot` is 0.
    int init_fd;
    /// `boot`: the paths the init may have (NULL-terminated). The caller looks into the tree and
    /// says with the go byte which one (1-based) replaces argv[0].
    const char *const *init_paths;
    /// A user namespace of its own (CLONE_NEWUSER). The caller writes its UID and GID maps
    /// before the go byte; the child then takes UID and GID 0 in it, without groups.
    int user_namespace;
    /// A pidfd of the caller (pidfd_open(getpid())), or -1: with a user namespace, the child
    /// checks that the caller is still alive once its parent-death signal is set again.
    int parent_pidfd;
    /// The seccomp filter: `seccomp_length` BPF instructions (struct sock_filter), installed
    /// as the last step before exec; applies to everything in the container.
    const void *seccomp_filter;
    uint32_t seccomp_length;
    /// A terminal (pty slave) for the console and the standard streams, or -1 to keep the
    /// caller's standard streams.
    int console_fd;
    /// Which standard streams get the terminal: bit 0 stdin, bit 1 stdout, bit 2 stderr (the
    /// others pass through). Only those that are a terminal on imgboot's side: a host terminal
    /// is never handed to the container, where TIOCSTI could type into it.
    int console_streams;
    /// The path of that terminal on the host (/dev/pts/N), to bind it on /dev/console: a bind
    /// needs a source in the child's own mount namespace, which a descriptor from the parent's
    /// is not.
    const char *console_path;
    /// New network namespace with only `lo`, up.
    int private_network;
    /// The container's part of the mount plan, done in its namespaces before it pivots into
    /// the tree, in order.
    const struct imgboot_mount_op *ops;
    uint32_t op_count;
    /// A cgroup2 directory to start in, with a cgroup namespace rooted there; or -1.
    int cgroup_fd;
    /// The container's capability set (bit N = capability N): every one of the five sets of
    /// every process in the container is within it.
    uint64_t keep_capabilities;
    /// Write end of a close-on-exec pipe: a failed step writes a `struct imgboot_child_error`.
    int error_fd;
    /// Read end of a close-on-exec pipe: the child waits for one byte (see `init_paths`) before
    /// it does anything, so that the caller can write its maps, place it (cgroups) and mount
    /// its tree in its mount namespace; end-of-file makes it exit quietly. Not `boot`: the byte
    /// IMGBOOT_GO_COMMAND says that the command follows (see there).
    int sync_fd;
};

/// The go byte of a container that is not booted: run argv as it is.
#define IMGBOOT_GO 1
/// The go byte of a container that is not booted when the command was chosen from the mounted
/// tree (root's login shell from its /etc/passwd): after the byte come the length of the words
/// (16 bits, little-endian, at most IMGBOOT_COMMAND_MAX) and the words, each NUL-terminated, at
/// most IMGBOOT_COMMAND_WORDS of them; they replace argv after argv[0] ("imgboot-init").
#define IMGBOOT_GO_COMMAND 2
#define IMGBOOT_COMMAND_MAX 2048
#define IMGBOOT_COMMAND_WORDS 32

/// How to run a command inside a running container (`imgboot enter`).
struct imgboot_enter {
    /// A pidfd of the container's PID 1: its namespaces are joined (mount, PID, UTS, IPC,
    /// network, cgroup), and with the mount namespace its root.
    int leader_pidfd;
    /// The machine's cgroup2 directory, or -1.
    int cgroup_fd;
    /// `{"imgboot-init", COMMAND, ARG..., NULL}`, as for `run`.
    char *const *argv;
    char *const *envp;
    /// A terminal (pty slave) for the command, or -1 to pass the standard streams through.
    int console_fd;
    /// As in `struct imgboot_container`.
    int console_streams;
    /// The machine has a user namespace: join it too, and become its root.
    int user_namespace;
    /// As in `struct imgboot_container`.
    int parent_pidfd;
    int init_fd;
    const void *seccomp_filter;
    uint32_t seccomp_length;
    uint64_t keep_capabilities;
    int error_fd;
};

/// Starts `imgboot enter`'s child: it joins the container's namespaces, takes the container's
/// capability set, session keyring and seccomp filter, and executes imgboot-init, which forks
/// the command into them (a PID namespace only applies to children) and waits for it, leaving
/// with its status (128+N when killed by signal N), passing signals on. So the first process
/// the container can see is already as unprivileged as the container, and holds nothing of
/// imgboot's. Returns its PID and a pidfd.
pid_t imgboot_enter_start(const struct imgboot_enter *config, int *pidfd);

/// Starts the container child with clone3: new mount, PID, UTS, IPC (and network, and user)
/// namespaces, in the cgroup `cgroup_fd`, killed if the caller dies. Its mount namespace is a
/// copy of the caller's, in which the caller then mounts the tree (setns). Returns its PID (in
/// the caller's namespace) and stores a pidfd in `*pidfd`.
pid_t imgboot_container_start(const struct imgboot_container *config, int *pidfd);

/// pidfd_send_signal(2).
int imgboot_pidfd_send_signal(int pidfd, int signal);

/// pidfd_open(2).
int imgboot_pidfd_open(pid_t pid);

/// SIGRTMIN+n as the kernel numbers it (glibc reserves the first few for itself).
int imgboot_sigrtmin(void);

/// unshare(2) and setns(2), which Swift's Glibc module does not export.
int imgboot_unshare(int flags);
int imgboot_setns(int fd, int nstype);

#define IMGBOOT_CLONE_NEWNS 0x00020000
#define IMGBOOT_CLONE_NEWCGROUP 0x02000000
#define IMGBOOT_CLONE_NEWUSER 0x10000000

#endif
