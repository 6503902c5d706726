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
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int error_fd = -1;

static _Noreturn void fail(int step) {
    struct imgboot_child_error e = { .step = step, .error = errno };
    if (error_fd >= 0) {
        ssize_t ignored = write(error_fd, &e, sizeof e);
        (void)ignored;
    }
    _exit(125);
}

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

static void mount_in_root(int root, const char *path, const char *source, const char *fstype,
                          unsigned long flags, const char *data, int step) {
    char target[32];
    int fd = open_in_root(root, path, 1);
    if (fd < 0)
        fail(step);
    if (mount(source, fd_path(target, fd), fstype, flags, data) < 0)
        fail(step);
    close(fd);
}

/// Makes `path` (inside the tree) read-only: bind it onto itself, then remount the bind.
static void make_read_only(int root, const char *path, int step) {
    char target[32];
    int fd = open_in_root(root, path, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return;
        fail(step);
    }
    if (mount(fd_path(target, fd), target, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail(step);
    close(fd);
    // The old descriptor is the file *under* the new bind: look it up again.
    fd = open_in_root(root, path, 0);
    if (fd < 0)
        fail(step);
    if (mount(NULL, fd_path(target, fd), NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail(step);
    close(fd);
}

/// Hides `path` (inside the tree) under the container's /dev/null.
static void mask(int root, int dev_null, const char *path) {
    char source[32], target[32];
    int fd = open_in_root(root, path, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return;
        fail(IMGBOOT_STEP_PROC_MASK);
    }
    if (mount(fd_path(source, dev_null), fd_path(target, fd), NULL, MS_BIND, NULL) < 0)
        fail(IMGBOOT_STEP_PROC_MASK);
    close(fd);
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

static void drop_capabilities(uint64_t keep) {
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(IMGBOOT_STEP_CAPABILITIES);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(IMGBOOT_STEP_CAPABILITIES);
    // For root, exec grants inheritable | bounding: keep no dropped capability inheritable.
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) < 0)
        fail(IMGBOOT_STEP_CAPABILITIES);
    data[0].inheritable &= (uint32_t)keep;
    data[1].inheritable &= (uint32_t)(keep >> 32);
    if (syscall(SYS_capset, &header, data) < 0)
        fail(IMGBOOT_STEP_CAPABILITIES);
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

/// Makes the terminal `fd` the standard streams in `streams` (bit 0: stdin, 1: stdout, 2: stderr)
/// and, when `controlling`, the controlling terminal.
static void use_terminal(int fd, int streams, int controlling) {
    if (controlling && ioctl(fd, TIOCSCTTY, 0) < 0)
        fail(IMGBOOT_STEP_SESSION);
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

/// Runs the command: exec, or say why not (127: not found, 126: not executable) as shells do.
static _Noreturn void exec_command(char *const *argv, char *const *envp) {
    environ = (char **)envp;
    execvp(argv[0], argv);
    int saved = errno;
    struct imgboot_child_error e = { .step = IMGBOOT_STEP_EXEC, .error = saved };
    if (error_fd >= 0) {
        ssize_t ignored = write(error_fd, &e, sizeof e);
        (void)ignored;
    }
    _exit(saved == ENOENT || saved == ENOTDIR ? 127 : 126);
}

// The tiny init of `run`: PID 1 reaps every orphan, passes signals on to the command's
// process group, and leaves with the command's status.
static volatile pid_t command_pid = 0;

/// To the command's process group, as a terminal's Ctrl-C goes: a shell's foreground child
/// gets the signal too, not only the shell, which would otherwise wait for the child (bash
/// ignores SIGINT until it ends). The command leads its own group (setsid); should it have
/// left it, the signal goes to the command alone.
static void forward_signal(int sig) {
    int saved = errno;
    if (command_pid > 0 && kill(-command_pid, sig) < 0)
        kill(command_pid, sig);
    errno = saved;
}

/// Field `n` (1-based, as proc(5) numbers them, n ≥ 3) of /proc/self/stat as a number, or 0.
static unsigned long stat_field(const char *line, ssize_t length, int n) {
    ssize_t i = length - 1;
    while (i >= 0 && line[i] != ')')  // the command name may hold spaces and parentheses
        i--;
    int field = 2;
    unsigned long value = 0;
    for (i++; i < length; i++) {
        if (line[i] == ' ') {
            if (field == n)
                return value;
            field++;
            value = 0;
        } else if (line[i] >= '0' && line[i] <= '9') {
            value = value * 10 + (unsigned long)(line[i] - '0');
        }
    }
    return field == n ? value : 0;
}

/// Clears what this copy of imgboot's memory would show the container as /proc/1/cmdline and
/// /proc/1/environ — imgboot's command line (image path, --setenv values) and the host's
/// environment (CI tokens, say) — and names the process imgboot-init.
static void forget_host_memory(void) {
    static const char name[] = "imgboot-init";
    prctl(PR_SET_NAME, name, 0, 0, 0);
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;  // not in this procfs's PID namespace (`enter`'s waiter): nothing shown there
    char line[1024];
    ssize_t n = read(fd, line, sizeof line);
    close(fd);
    if (n <= 0)
        return;
    unsigned long arg_start = stat_field(line, n, 48), arg_end = stat_field(line, n, 49);
    unsigned long env_start = stat_field(line, n, 50), env_end = stat_field(line, n, 51);
    if (env_start && env_end > env_start)
        memset((void *)env_start, 0, env_end - env_start);
    if (arg_start && arg_end > arg_start + sizeof name) {
        memset((void *)arg_start, 0, arg_end - arg_start);
        memcpy((void *)arg_start, name, sizeof name);
        prctl(PR_SET_MM, PR_SET_MM_ARG_END, arg_start + sizeof name, 0, 0);
    }
}

/// Forks the command (with `console_fd` as its terminal, if any; after dropping capabilities
/// to `keep` when `drop` is set) and waits for it: the body of `run`'s PID 1 and of `enter`.
static _Noreturn void run_command(char *const *argv, char *const *envp, int console_fd, int streams, int drop, uint64_t keep) {
    // Signals arriving before the handlers are in place wait in the mask, not lost.
    sigset_t forwarded, previous;
    sigemptyset(&forwarded);
    const int signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        sigaddset(&forwarded, signals[i]);
    sigprocmask(SIG_BLOCK, &forwarded, &previous);

    pid_t pid = fork();
    if (pid < 0)
        fail(IMGBOOT_STEP_FORK);
    if (pid == 0) {
        // Whatever ends the init (or `enter`'s waiter) ends the command too.
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
            fail(IMGBOOT_STEP_SIGNALS);
        sigprocmask(SIG_SETMASK, &previous, NULL);
        if (setsid() < 0)
            fail(IMGBOOT_STEP_SESSION);
        if (console_fd >= 0)
            use_terminal(console_fd, streams, 1);
        if (drop)
            drop_capabilities(keep);
        close_on_exec_from(3);
        exec_command(argv, envp);
    }
    command_pid = pid;
    // The command holds the error pipe until its exec; the parent's end-of-file means it ran.
    // This process keeps no descriptor at all: none of imgboot's, none of the host's streams.
    error_fd = -1;
    if (syscall(SYS_close_range, 0, ~0U, 0) < 0) {
        for (int fd = 0; fd < 1024; fd++)
            close(fd);
    }
    forget_host_memory();

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_signal;
    action.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        sigaction(signals[i], &action, NULL);
    sigprocmask(SIG_SETMASK, &previous, NULL);

    for (;;) {
        int status;
        pid_t done = waitpid(-1, &status, 0);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            _exit(125);  // ECHILD: the command is gone without our noticing; cannot happen
        }
        if (done != pid)
            continue;
        if (WIFEXITED(status))
            _exit(WEXITSTATUS(status));
        if (WIFSIGNALED(status))
            _exit(128 + WTERMSIG(status));
    }
}

static _Noreturn void child(const struct imgboot_container *c) {
    error_fd = c->error_fd;
    // If imgboot dies, so does the container (and with it every mount and loop device).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        fail(IMGBOOT_STEP_SIGNALS);
    char go;
    ssize_t n;
    do {
        n = read(c->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(125);
    close(c->sync_fd);
    reset_signals();

    // Already in the machine's cgroup (CLONE_INTO_CGROUP): root the namespace there.
    if (c->cgroup_fd >= 0) {
        if (unshare(CLONE_NEWCGROUP) < 0)
            fail(IMGBOOT_STEP_CGROUP_NAMESPACE);
        close(c->cgroup_fd);
    }
    if (c->private_network)
        loopback_up();

    int root = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        fail(IMGBOOT_STEP_ROOT);

    // The API filesystems that belong to the new namespaces. Every target is looked up inside
    // the tree and must be a real directory.
    mount_in_root(root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, IMGBOOT_STEP_PROC);
    int dev_null = open_in_root(root, "dev/null", 0);
    if (dev_null < 0)
        fail(IMGBOOT_STEP_PROC_MASK);
    mask(root, dev_null, "proc/kcore");
    mask(root, dev_null, "proc/keys");
    mask(root, dev_null, "proc/timer_list");
    mask(root, dev_null, "proc/kallsyms");
    close(dev_null);
    // A boot ID of the machine's own (the parent wrote it to /run/host/boot_id), not the host's.
    {
        char source[32], target[32];
        int id = open_in_root(root, "run/host/boot_id", 0);
        int node = id >= 0 ? open_in_root(root, "proc/sys/kernel/random/boot_id", 0) : -1;
        if (id >= 0 && node >= 0 && mount(fd_path(source, id), fd_path(target, node), NULL, MS_BIND, NULL) < 0)
            fail(IMGBOOT_STEP_PROC_READ_ONLY);
        if (node >= 0)
            close(node);
        if (id >= 0)
            close(id);
    }
    make_read_only(root, "proc/sys", IMGBOOT_STEP_PROC_READ_ONLY);
    make_read_only(root, "proc/sysrq-trigger", IMGBOOT_STEP_PROC_READ_ONLY);

    mount_in_root(root, "sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, IMGBOOT_STEP_SYS);
    if (c->cgroup_fd >= 0)
        mount_in_root(root, "sys/fs/cgroup", "cgroup2", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, IMGBOOT_STEP_CGROUP);
    mount_in_root(root, "dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, IMGBOOT_STEP_MQUEUE);

    // The console is the pty imgboot relays; without one, /dev/null.
    {
        char source[32], target[32];
        int console = open_in_root(root, "dev/console", 0);
        if (console < 0)
            fail(IMGBOOT_STEP_CONSOLE);
        if (c->console_fd >= 0 && c->console_path) {
            if (mount(c->console_path, fd_path(target, console), NULL, MS_BIND, NULL) < 0)
                fail(IMGBOOT_STEP_CONSOLE);
        } else {
            int null = open_in_root(root, "dev/null", 0);
            if (null < 0)
                fail(IMGBOOT_STEP_CONSOLE);
            if (mount(fd_path(source, null), fd_path(target, console), NULL, MS_BIND, NULL) < 0)
                fail(IMGBOOT_STEP_CONSOLE);
            close(null);
        }
        close(console);
    }

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
    drop_capabilities(c->keep_capabilities);

    if (!c->boot)
        run_command(c->argv, c->envp, c->console_fd, c->console_streams, 0, 0);
    // An init takes /dev/console as its terminal by itself; it only needs the standard streams.
    if (c->console_fd >= 0)
        use_terminal(c->console_fd, c->console_streams, 0);
    close_on_exec_from(3);
    execve(c->argv[0], c->argv, c->envp);
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
    if (setns(e->leader_pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP) < 0)
        fail(IMGBOOT_STEP_ROOT);
    close(e->leader_pidfd);
    if (e->cgroup_fd >= 0)
        close(e->cgroup_fd);
    if (chdir("/") < 0)
        fail(IMGBOOT_STEP_ROOT);
    run_command(e->argv, e->envp, e->console_fd, e->console_streams, 1, e->keep_capabilities);
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
