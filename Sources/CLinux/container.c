// The container child: everything between clone and exec, in C, with system calls only (no
// allocation, no stdio), so that nothing of the parent's runtime state can bite. A failure is
// reported as {step, errno} on the error pipe and ends the child with status 125.

#define _GNU_SOURCE
#include "CLinuxContainer.h"
#include "CLinuxFS.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

extern char **environ;

static int error_fd = -1;

static _Noreturn void fail_at(int step, int32_t index) {
    struct imgboot_child_error e = { .step = step, .error = errno, .index = index };
    if (error_fd >= 0) {
        ssize_t ignored = write(error_fd, &e, sizeof e);
        (void)ignored;
    }
    _exit(125);
}

static _Noreturn void fail(int step) { fail_at(step, 0); }

/// "/proc/self/fd/N" into `buffer` (at least 32 bytes).
static const char *fd_path(char *buffer, int fd) {
    static const char prefix[] = "/proc/self/fd/";
    char digits[16];
    int n = 0;
    unsigned value = (unsigned)fd;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value && n < (int)sizeof digits);
    memcpy(buffer, prefix, sizeof prefix - 1);
    for (int i = 0; i < n; i++)
        buffer[sizeof prefix - 1 + i] = digits[n - 1 - i];
    buffer[sizeof prefix - 1 + n] = '\0';
    return buffer;
}

/// Opens `path` inside the tree `root` without following a symlink at its end: an image whose
/// /proc or /dev is a symlink gets an error, never a mount somewhere else.
static int open_in_root(int root, const char *path, int want_directory) {
    int fd = imgboot_openat2(root, path, O_PATH | O_CLOEXEC | O_NOFOLLOW, 0,
                             IMGBOOT_RESOLVE_IN_ROOT | IMGBOOT_RESOLVE_NO_MAGICLINKS);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (want_directory && !S_ISDIR(st.st_mode)) {
        close(fd);
        errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
        return -1;
    }
    return fd;
}

/// Carries out the container's part of the mount plan (see `struct imgboot_mount_op`) in the
/// tree `root`; a failure reports the operation's index. `console_path`: the pty imgboot relays
/// (a path in the host's /dev/pts, still reachable before the pivot), or NULL for /dev/null.
static void run_ops(int root, const struct imgboot_mount_op *ops, uint32_t count, const char *console_path) {
    char source[32], target[32];
    for (uint32_t i = 0; i < count; i++) {
        const struct imgboot_mount_op *op = &ops[i];
        int fd = open_in_root(root, op->target, op->kind == IMGBOOT_OP_MOUNT);
        if (fd < 0) {
            if (errno == ENOENT && op->kind != IMGBOOT_OP_MOUNT)
                continue;  // a kernel without /proc/kcore: nothing to cover
            fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
        }
        switch (op->kind) {
        case IMGBOOT_OP_MOUNT:
            if (mount(op->source, fd_path(target, fd), op->fstype, op->flags, op->data) < 0)
                fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
            break;
        case IMGBOOT_OP_COVER: {
            const char *from = op->source ? op->source : (console_path ? console_path : "dev/null");
            int by_path = !op->source && console_path;
            int src = by_path ? -1 : open_in_root(root, from, 0);
            if (!by_path && src < 0)
                fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
            if (mount(by_path ? from : fd_path(source, src), fd_path(target, fd), NULL, MS_BIND, NULL) < 0)
                fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
            if (src >= 0)
                close(src);
            break;
        }
        case IMGBOOT_OP_READ_ONLY:
            if (mount(fd_path(target, fd), target, NULL, MS_BIND | MS_REC, NULL) < 0)
                fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
            close(fd);
            // The old descriptor is the file *under* the new bind: look it up again.
            fd = open_in_root(root, op->target, 0);
            if (fd < 0 || mount(NULL, fd_path(target, fd), NULL,
                                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
            break;
        default:
            errno = EINVAL;
            fail_at(IMGBOOT_STEP_PLAN, (int32_t)i);
        }
        close(fd);
    }
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail(IMGBOOT_STEP_LOOPBACK);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        fail(IMGBOOT_STEP_LOOPBACK);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        fail(IMGBOOT_STEP_LOOPBACK);
    close(s);
}

/// Leaves the process with at most `keep` in each of its five capability sets: bounding,
/// ambient, inheritable, permitted, effective. (For root, exec then grants exactly the
/// bounding set: the program executed next holds `keep` and nothing more.)
static void drop_capabilities(uint64_t keep) {
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(IMGBOOT_STEP_CAPABILITIES);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(IMGBOOT_STEP_CAPABILITIES);
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0)
        fail(IMGBOOT_STEP_CAPABILITIES);
    for (int i = 0; i < 2; i++) {
        uint32_t mask = (uint32_t)(keep >> (32 * i));
        data[i].effective &= mask;
        data[i].permitted &= mask;
        data[i].inheritable &= mask;
    }
    if (syscall(SYS_capset, &header, data) < 0)
        fail(IMGBOOT_STEP_CAPABILITIES);
}

/// A session keyring of the container's own: the caller's (root's login session, a CI job's
/// secrets) is not inherited. (With no keyring support in the kernel there is nothing to hide.)
static void join_session_keyring(void) {
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
        fail(IMGBOOT_STEP_KEYRING);
}

/// Installs the container's seccomp filter (compiled by imgboot with libseccomp before the
/// clone: nothing here allocates). It holds CAP_SYS_ADMIN still, so no_new_privs is not needed
/// — and not set: setuid programs in the image keep working, as under nspawn.
static void install_filter(const void *filter, uint32_t length) {
    if (!filter || length == 0)
        return;
    struct sock_fprog program = { .len = (unsigned short)length, .filter = (struct sock_filter *)filter };
    if (length > 0xffff || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) < 0)
        fail(IMGBOOT_STEP_SECCOMP);
}

/// Takes UID and GID 0 of the user namespace just entered (the caller's, host root's, are not
/// mapped in it), without supplementary groups. Changing the UID clears the parent-death
/// signal: it is set again, or a killed imgboot would leave the container running.
static void become_namespace_root(int parent_pidfd) {
    if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        fail(IMGBOOT_STEP_USER_NAMESPACE);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
    // imgboot may have died in between, unnoticed: its pidfd says so (readable once it ended).
    struct pollfd parent = { .fd = parent_pidfd, .events = POLLIN };
    if (parent_pidfd >= 0 && poll(&parent, 1, 0) != 0)
        _exit(125);
}

static void reset_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        sigaction(sig, &action, NULL);  // EINVAL for the few glibc keeps: nothing to reset
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
}

/// Makes the terminal `fd` the standard streams in `streams` (bit 0: stdin, 1: stdout, 2:
/// stderr). (Whoever runs on it makes it their controlling terminal: an init takes
/// /dev/console by itself, imgboot-init's command the stream that is a terminal.)
static void use_terminal(int fd, int streams) {
    for (int stream = 0; stream < 3; stream++)
        if ((streams & (1 << stream)) && dup2(fd, stream) < 0)
            fail(IMGBOOT_STEP_SESSION);
    if (fd > 2)
        close(fd);
}

/// Nothing of imgboot's but the standard streams crosses exec (descriptors Swift or a library
/// opened without O_CLOEXEC included).
static void close_on_exec_from(unsigned first) {
    if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
        fail(IMGBOOT_STEP_EXEC);
}

static size_t length(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

// imgboot-init reports a command it cannot execute as this step, by number.
_Static_assert(IMGBOOT_STEP_EXEC == 11, "Sources/ContainerInit/init.c hard-codes IMGBOOT_STEP_EXEC");
_Static_assert(sizeof(struct imgboot_child_error) == 12, "Sources/ContainerInit/init.c writes 3 int32");

/// The signals imgboot-init passes on, and SIGCHLD: blocked across its exec, so that none sent
/// before it has set up its signalfd is lost (an unblocked one would be dropped: PID 1 ignores
/// signals it has no handler for).
static void block_init_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    const int signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGCHLD };
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
}

/// Executes imgboot-init from the memfd `init_fd` with `argv` ({"imgboot-init", COMMAND, …}):
/// the standard streams (the terminal `console_fd` on `streams`, else the caller's), the error
/// pipe as fd 3 (see init.c), nothing else; the container's capabilities, keyring and seccomp
/// filter already in place.
static _Noreturn void exec_init(int console_fd, int streams, int init_fd, char *const *argv, char *const *envp,
                                uint64_t keep, const void *filter, uint32_t filter_length) {
    if (console_fd >= 0)
        use_terminal(console_fd, streams);
    // Out of the way of fd 3 first: either may sit there now.
    int init = fcntl(init_fd, F_DUPFD_CLOEXEC, 16);
    int errors = fcntl(error_fd, F_DUPFD_CLOEXEC, 16);
    if (init < 0 || errors < 0 || dup3(errors, 3, 0) < 0)
        fail(IMGBOOT_STEP_INIT);
    error_fd = 3;
    close_on_exec_from(4);
    join_session_keyring();
    block_init_signals();
    drop_capabilities(keep);
    install_filter(filter, filter_length);
    syscall(SYS_execveat, init, "", argv, envp, AT_EMPTY_PATH);
    fail(IMGBOOT_STEP_INIT);
}

/// Reads exactly `length` bytes from `fd`; whether it could.
static int read_exactly(int fd, void *buffer, size_t length) {
    size_t done = 0;
    while (done < length) {
        ssize_t n = read(fd, (char *)buffer + done, length - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        done += (size_t)n;
    }
    return 1;
}

/// The command that follows IMGBOOT_GO_COMMAND on `fd`, as argv: `argv0`, the words, NULL.
/// NULL when the message is malformed.
static char **read_command(int fd, char *argv0) {
    // This process's own copy of memory: static storage is safe to fill and to exec from.
    static char text[IMGBOOT_COMMAND_MAX];
    static char *argv[IMGBOOT_COMMAND_WORDS + 2];
    unsigned char header[2];
    if (!read_exactly(fd, header, sizeof header))
        return NULL;
    size_t length = (size_t)header[0] | (size_t)header[1] << 8;
    if (length == 0 || length > sizeof text || !read_exactly(fd, text, length) || text[length - 1] != '\0')
        return NULL;
    size_t count = 0;
    argv[count++] = argv0;
    for (size_t start = 0; start < length; ) {
        if (count > IMGBOOT_COMMAND_WORDS)
            return NULL;
        argv[count++] = text + start;
        start += strlen(text + start) + 1;
    }
    argv[count] = NULL;
    return argv;
}

static _Noreturn void child(const struct imgboot_container *c) {
    error_fd = c->error_fd;
    // If imgboot dies, so does the container (and with it every mount and loop device).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
    unsigned char go;
    ssize_t n;
    do {
        n = read(c->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(125);
    char **argv = (char **)c->argv;
    if (!c->boot && go == IMGBOOT_GO_COMMAND && !(argv = read_command(c->sync_fd, argv[0])))
        _exit(125);
    close(c->sync_fd);
    reset_signals();

    // The tree lies below imgboot's root-only directories: opened while this process still has
    // host root's UID, before it becomes the user namespace's root.
    int root = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        fail(IMGBOOT_STEP_ROOT);

    // The maps are written: become the namespace's root (the creator's IDs are not mapped in it).
    if (c->user_namespace)
        become_namespace_root(c->parent_pidfd);
    // This copy of the caller's memory is the child's own: the init the caller chose goes in.
    if (c->boot && c->init_paths && go >= 1)
        argv[0] = (char *)c->init_paths[go - 1];

    // Already in the machine's cgroup (CLONE_INTO_CGROUP): root the namespace there.
    if (c->cgroup_fd >= 0) {
        if (unshare(CLONE_NEWCGROUP) < 0)
            fail(IMGBOOT_STEP_CGROUP_NAMESPACE);
        close(c->cgroup_fd);
    }
    if (c->private_network)
        loopback_up();

    // The container's part of the plan: what belongs to its new namespaces (/proc, sysfs,
    // cgroup2, mqueue) and what comes after them (the masks, read-only /proc/sys, the console).
    run_ops(root, c->ops, c->op_count, c->console_fd >= 0 ? c->console_path : NULL);

    // Into the tree; the old root (the host's) is detached and gone from this namespace.
    if (fchdir(root) < 0)
        fail(IMGBOOT_STEP_PIVOT_ROOT);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail(IMGBOOT_STEP_PIVOT_ROOT);
    if (umount2(".", MNT_DETACH) < 0)
        fail(IMGBOOT_STEP_DETACH_OLD_ROOT);
    if (chdir("/") < 0)
        fail(IMGBOOT_STEP_DETACH_OLD_ROOT);
    close(root);

    if (c->hostname && sethostname(c->hostname, length(c->hostname)) < 0)
        fail(IMGBOOT_STEP_HOSTNAME);
    if (setsid() < 0)
        fail(IMGBOOT_STEP_SESSION);

    if (!c->boot)
        exec_init(c->console_fd, c->console_streams, c->init_fd, argv, c->envp, c->keep_capabilities,
                  c->seccomp_filter, c->seccomp_length);
    // An init takes /dev/console as its terminal by itself; it only needs the standard streams.
    if (c->console_fd >= 0)
        use_terminal(c->console_fd, c->console_streams);
    close_on_exec_from(3);
    join_session_keyring();
    drop_capabilities(c->keep_capabilities);
    install_filter(c->seccomp_filter, c->seccomp_length);
    execve(argv[0], argv, c->envp);
    fail(IMGBOOT_STEP_EXEC);
}

/// clone3 with fork's semantics (no new stack): `flags` plus a pidfd, into the cgroup2 directory
/// `cgroup_fd` when it is not -1. Returns 0 in the child, its PID in the parent, -1 on failure.
static pid_t clone_into(uint64_t flags, int cgroup_fd, int *pidfd) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags | CLONE_PIDFD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

pid_t imgboot_container_start(const struct imgboot_container *config, int *pidfd) {
    uint64_t flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    if (config->private_network)
        flags |= CLONE_NEWNET;
    if (config->user_namespace)
        flags |= CLONE_NEWUSER;
    pid_t pid = clone_into(flags, config->cgroup_fd, pidfd);
    if (pid == 0)
        child(config);
    return pid;
}

static _Noreturn void enter_child(const struct imgboot_enter *e) {
    error_fd = e->error_fd;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
    reset_signals();
    int namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
    if (setns(e->leader_pidfd, namespaces | (e->user_namespace ? CLONE_NEWUSER : 0)) < 0)
        fail(IMGBOOT_STEP_ROOT);
    if (e->user_namespace)
        become_namespace_root(e->parent_pidfd);
    close(e->leader_pidfd);
    if (e->cgroup_fd >= 0)
        close(e->cgroup_fd);
    if (chdir("/") < 0)
        fail(IMGBOOT_STEP_ROOT);
    exec_init(e->console_fd, e->console_streams, e->init_fd, e->argv, e->envp, e->keep_capabilities,
              e->seccomp_filter, e->seccomp_length);
}

pid_t imgboot_enter_start(const struct imgboot_enter *config, int *pidfd) {
    pid_t pid = clone_into(0, config->cgroup_fd, pidfd);
    if (pid == 0)
        enter_child(config);
    return pid;
}

int imgboot_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int imgboot_sigrtmin(void) { return SIGRTMIN; }

int imgboot_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int imgboot_unshare(int flags) { return unshare(flags); }

int imgboot_setns(int fd, int nstype) { return setns(fd, nstype); }
