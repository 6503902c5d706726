// imgboot-init: PID 1 of `imgboot run`, and the waiter of `imgboot enter`.
//
// It forks the command, makes it the leader of a session of its own (with the container's
// terminal as its controlling terminal, if one of the standard streams is a terminal),
// passes the signals its parent (imgboot) sends on to the command's process group, reaps
// every child that comes its way, and leaves with the command's status (128+N when the
// command was killed by signal N).
//
// Why a program of its own, built freestanding (no libc, raw system calls) and executed from
// a sealed memfd: the container may look at PID 1 — /proc/1/exe, /proc/1/map_files,
// /proc/1/mem — and, holding CAP_SYS_PTRACE as under systemd-nspawn, attach to it. A fork of
// imgboot would show it imgboot's binary, the host's shared libraries and imgboot's memory
// (the host's environment, the command line). This program maps nothing but itself, in a file
// that exists nowhere on the host's filesystems and cannot be written (the memfd is sealed);
// it holds no descriptor once the command runs; and it was executed with the container's
// capability set, so attaching to it gains nothing.
//
// Protocol, set up by imgboot (Sources/CLinux/container.c):
//   argv:   imgboot-init COMMAND [ARG...]   — COMMAND looked up in PATH when it has no '/'
//           argv[0] may carry `run`'s --user and --chdir: "imgboot-init --user=NAME --chdir=DIR"
//           (each optional, in that order; NAME has no blank, DIR is the rest of the string).
//           The command then runs as NAME — a name in the container's /etc/passwd, or a UID —
//           with its groups from /etc/group, HOME, USER, LOGNAME and SHELL from its entry
//           (where envp has none of them), in DIR. These files are the container's, read by
//           the command's process before it executes anything: nothing of the host's.
//   envp:   the command's environment (PATH is read from it)
//   fd 0-2: the command's standard streams (a terminal of the container's, or the caller's)
//   fd 3:   the write end of imgboot's error pipe: if the command cannot be executed, an
//           {IMGBOOT_STEP_EXEC, errno} record is written there and the status is 127 (not
//           found) or 126 (not executable), as shells do. It closes when the command runs.
//   signals: whatever imgboot forwards is passed on; SIGKILL ends everything (the command
//           has PR_SET_PDEATHSIG).
//
// Built by the EmbedContainerInit plugin (Plugins/EmbedContainerInit) and embedded in imgboot
// as bytes; nothing of it is installed as a file.

#include <stddef.h>
#include <stdint.h>

// MARK: System calls

#if defined(__x86_64__)
enum {
    NR_read = 0, NR_write = 1, NR_ioctl = 16, NR_rt_sigprocmask = 14,
    NR_clone = 56, NR_execve = 59, NR_exit_group = 231, NR_wait4 = 61, NR_kill = 62, NR_setsid = 112,
    NR_prctl = 157, NR_rt_sigtimedwait = 128, NR_close_range = 436,
    NR_openat = 257, NR_close = 3, NR_chdir = 80, NR_setgroups = 116, NR_setresuid = 117, NR_setresgid = 119,
};

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start\n"
        "  hlt\n");
#elif defined(__aarch64__)
enum {
    NR_read = 63, NR_write = 64, NR_ioctl = 29, NR_rt_sigprocmask = 135,
    NR_clone = 220, NR_execve = 221, NR_exit_group = 94, NR_wait4 = 260, NR_kill = 129, NR_setsid = 157,
    NR_prctl = 167, NR_rt_sigtimedwait = 137, NR_close_range = 436,
    NR_openat = 56, NR_close = 57, NR_chdir = 49, NR_setgroups = 159, NR_setresuid = 147, NR_setresgid = 149,
};

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  and x1, x0, #-16\n"
        "  mov sp, x1\n"
        "  bl start\n"
        "  brk #0\n");
#else
#error "imgboot-init: no system call glue for this architecture"
#endif

static long sys(long n, long a, long b, long c) { return sys6(n, a, b, c, 0, 0, 0); }

// The compiler may emit calls to these for structure copies and zeroing. (volatile: so that it
// does not recognise the loops as memset and memcpy and call them.)
void *memset(void *dst, int c, size_t n) {
    volatile unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
    volatile unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

// MARK: Constants (from the kernel's UAPI; no headers in a freestanding build)

enum {
    SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGKILL = 9, SIGUSR1 = 10, SIGUSR2 = 12, SIGTERM = 15,
    SIGCHLD = 17, SIGCONT = 18, SIGWINCH = 28,
    SIG_BLOCK = 0, SIG_SETMASK = 2,
    PR_SET_PDEATHSIG = 1,
    TIOCSCTTY = 0x540E,
    WNOHANG = 1,
    EINTR = 4, ENOENT = 2, ENOTDIR = 20, EACCES = 13, EINVAL = 22, E2BIG = 7, ERANGE = 34, EFBIG = 27,
    AT_FDCWD = -100, O_RDONLY = 0, O_NOCTTY = 0400, O_NONBLOCK = 04000, O_CLOEXEC = 02000000,
    // Sources/CLinux/include/CLinuxContainer.h, enum imgboot_step (and what `index` says).
    STEP_EXEC = 11, STEP_USER = 16, STEP_CHDIR = 17,
    USER_LOOKUP = 0, USER_GROUPS = 1, USER_GID = 2, USER_UID = 3,
    ERROR_FD = 3,
};

typedef uint64_t sigset64;

static sigset64 bit(int signal) { return (sigset64)1 << (signal - 1); }

static _Noreturn void leave(int status) {
    for (;;)
        sys(NR_exit_group, status, 0, 0);
}

// MARK: The command

static size_t length(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int has_slash(const char *s) {
    for (; *s; s++)
        if (*s == '/')
            return 1;
    return 0;
}

/// The value of NAME in `envp`, or NULL.
static const char *lookup(char **envp, const char *name) {
    size_t n = length(name);
    for (; *envp; envp++) {
        const char *e = *envp;
        size_t i = 0;
        while (i < n && e[i] == name[i])
            i++;
        if (i == n && e[i] == '=')
            return e + n + 1;
    }
    return NULL;
}

/// execvp: a name without '/' is looked up in PATH, as a shell does. Returns the errno to
/// report: the first "not executable" wins over "not found".
static long execute(char **argv, char **envp) {
    if (has_slash(argv[0]))
        return -sys(NR_execve, (long)argv[0], (long)argv, (long)envp);
    const char *path = lookup(envp, "PATH");
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    size_t name_length = length(argv[0]);
    long error = ENOENT;
    char candidate[4096];
    for (const char *p = path;; p++) {
        const char *end = p;
        while (*end && *end != ':')
            end++;
        size_t dir = (size_t)(end - p);
        if (dir + 1 + name_length + 1 <= sizeof candidate) {
            size_t at = 0;
            for (size_t i = 0; i < dir; i++)
                candidate[at++] = p[i];
            if (dir == 0)
                candidate[at++] = '.';
            candidate[at++] = '/';
            for (size_t i = 0; i <= name_length; i++)
                candidate[at++] = argv[0][i];
            long e = -sys(NR_execve, (long)candidate, (long)argv, (long)envp);
            if (e == EACCES)
                error = EACCES;
            else if (e != ENOENT && e != ENOTDIR && error != EACCES)
                error = e;
        }
        if (!*end)
            break;
        p = end;
    }
    return error;
}

// MARK: --user and --chdir

/// What argv[0] carries beyond this program's name (see the protocol above).
struct options {
    const char *user;
    size_t user_length;
    const char *chdir;
};

static int starts_with(const char *s, const char *prefix) {
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static struct options parse_options(const char *argv0) {
    struct options o = { 0, 0, 0 };
    const char *p = argv0;
    while (*p && *p != ' ')
        p++;
    if (starts_with(p, " --user=")) {
        o.user = p += 8;
        while (*p && *p != ' ')
            p++;
        o.user_length = (size_t)(p - o.user);
    }
    if (starts_with(p, " --chdir="))
        o.chdir = p + 9;
    return o;
}

static _Noreturn void fail_step(int step, long error, int index) {
    int32_t record[3] = { step, (int32_t)error, index };  // struct imgboot_child_error
    sys(NR_write, ERROR_FD, (long)record, sizeof record);
    leave(125);
}

/// The most of /etc/passwd and /etc/group read (and of one line's field).
static char file[256 * 1024];

/// `path` of the container into `file`, NUL-terminated (a NUL inside ends it early): its
/// length, or -errno. Non-blocking: a FIFO there cannot hang the command.
static long read_file(const char *path) {
    long fd = sys6(NR_openat, AT_FDCWD, (long)path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0, 0, 0);
    if (fd < 0)
        return fd;
    size_t done = 0;
    while (done < sizeof file - 1) {
        long n = sys(NR_read, fd, (long)(file + done), (long)(sizeof file - 1 - done));
        if (n == -EINTR)
            continue;
        if (n < 0) {
            sys(NR_close, fd, 0, 0);
            return n;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    sys(NR_close, fd, 0, 0);
    // Full: what is beyond is not read, and a user or group there would go unseen.
    if (done == sizeof file - 1)
        return -EFBIG;
    file[done] = 0;
    return (long)done;
}

/// The `index`th ':'-separated field of the line at `line` (ending at '\n' or NUL): its start,
/// and its length in `*n`; NULL when the line has fewer fields.
static const char *field(const char *line, int index, size_t *n) {
    for (; index > 0; line++) {
        if (*line == 0 || *line == '\n')
            return NULL;
        if (*line == ':')
            index--;
    }
    const char *end = line;
    while (*end && *end != '\n' && *end != ':')
        end++;
    *n = (size_t)(end - line);
    return line;
}

static int equal(const char *a, size_t a_length, const char *b, size_t b_length) {
    if (a_length != b_length)
        return 0;
    for (size_t i = 0; i < a_length; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/// A decimal ID below 2^32 - 1 (which is "no ID"), or -1.
static long parse_id(const char *s, size_t n) {
    if (n == 0 || n > 10)
        return -1;
    long value = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value < 4294967295L ? value : -1;
}

/// "NAME=VALUE" built in `out` (of `size` bytes); NULL when it does not fit.
static char *assignment(char *out, size_t size, const char *name, const char *value, size_t value_length) {
    size_t at = 0, name_length = length(name);
    if (name_length + 1 + value_length + 1 > size)
        return NULL;
    for (size_t i = 0; i < name_length; i++)
        out[at++] = name[i];
    out[at++] = '=';
    for (size_t i = 0; i < value_length; i++)
        out[at++] = value[i];
    out[at] = 0;
    return out;
}

static char home[4096 + 6], user[256 + 6], logname[256 + 9], shell[4096 + 7], user_name[256];
static char *environment[1024 + 5];

/// Becomes `o.user` — its UID, primary GID and the groups /etc/group lists it in — and returns
/// the environment with HOME, USER, LOGNAME and SHELL from its passwd entry where `envp` has
/// none. A name that is not in /etc/passwd is refused (ENOENT); a UID that is not runs with
/// GID = UID, no other group, and HOME=/.
static char **become_user(struct options o, char **envp) {
    long uid = -1, gid = -1;
    const char *dir = "/", *login = "";
    size_t dir_length = 1, login_length = 0;
    const char *name = o.user;
    size_t name_length = o.user_length;
    long numeric = parse_id(o.user, o.user_length);
    long got = read_file("/etc/passwd");
    if (got < 0 && !(got == -ENOENT && numeric >= 0))
        fail_step(STEP_USER, -got, USER_LOOKUP);
    for (const char *line = got > 0 ? file : ""; *line; ) {
        size_t n0, n2, n3, n5, n6;
        const char *f0 = field(line, 0, &n0), *f2 = field(line, 2, &n2), *f3 = field(line, 3, &n3);
        const char *f5 = field(line, 5, &n5), *f6 = field(line, 6, &n6);
        if (f0 && f2 && f3 && f5 && f6 && (equal(f0, n0, o.user, o.user_length) || (numeric >= 0 && parse_id(f2, n2) == numeric))) {
            uid = parse_id(f2, n2);
            gid = parse_id(f3, n3);
            if (uid < 0 || gid < 0)
                fail_step(STEP_USER, EINVAL, USER_LOOKUP);
            name = f0, name_length = n0;
            dir = f5, dir_length = n5;
            login = f6, login_length = n6;
            break;
        }
        while (*line && *line != '\n')
            line++;
        if (*line)
            line++;
    }
    if (uid < 0 && numeric < 0)
        fail_step(STEP_USER, ENOENT, USER_LOOKUP);
    if (uid < 0)
        uid = gid = numeric;

    // The environment first: `file` is read again for the groups.
    size_t count = 0;
    int has_home = 0, has_user = 0, has_logname = 0, has_shell = 0;
    for (char **e = envp; *e; e++) {
        if (count >= 1024)
            fail_step(STEP_USER, E2BIG, USER_LOOKUP);
        has_home |= starts_with(*e, "HOME=");
        has_user |= starts_with(*e, "USER=");
        has_logname |= starts_with(*e, "LOGNAME=");
        has_shell |= starts_with(*e, "SHELL=");
        environment[count++] = *e;
    }
    char *value;
    if (!has_home && (value = assignment(home, sizeof home, "HOME", dir_length ? dir : "/", dir_length ? dir_length : 1)))
        environment[count++] = value;
    if (!has_user && (value = assignment(user, sizeof user, "USER", name, name_length)))
        environment[count++] = value;
    if (!has_logname && (value = assignment(logname, sizeof logname, "LOGNAME", name, name_length)))
        environment[count++] = value;
    if (!has_shell && login_length && (value = assignment(shell, sizeof shell, "SHELL", login, login_length)))
        environment[count++] = value;
    environment[count] = NULL;

    // Its groups: the primary one, and every group whose member list names it. (Its name is
    // copied first: reading /etc/group replaces the passwd text it points into.)
    if (name_length > sizeof user_name)
        name_length = 0;  // no group lists a name that long
    for (size_t i = 0; i < name_length; i++)
        user_name[i] = name[i];
    name = user_name;
    uint32_t groups[256];
    size_t group_count = 0;
    groups[group_count++] = (uint32_t)gid;
    got = name_length ? read_file("/etc/group") : -ENOENT;
    if (got < 0 && got != -ENOENT)
        fail_step(STEP_USER, -got, USER_GROUPS);
    if (got > 0) {
        for (const char *line = file; *line; ) {
            size_t n2, n3;
            const char *f2 = field(line, 2, &n2), *members = field(line, 3, &n3);
            long group = f2 ? parse_id(f2, n2) : -1;
            for (size_t at = 0; members && group >= 0 && at < n3; ) {
                size_t end = at;
                while (end < n3 && members[end] != ',')
                    end++;
                if (equal(members + at, end - at, name, name_length) && group != gid) {
                    if (group_count >= sizeof groups / sizeof groups[0])
                        fail_step(STEP_USER, ERANGE, USER_GROUPS);
                    groups[group_count++] = (uint32_t)group;
                    break;
                }
                at = end + 1;
            }
            while (*line && *line != '\n')
                line++;
            if (*line)
                line++;
        }
    }

    long r;
    if ((r = sys(NR_setgroups, (long)group_count, (long)groups, 0)) < 0)
        fail_step(STEP_USER, -r, USER_GROUPS);
    if ((r = sys(NR_setresgid, gid, gid, gid)) < 0)
        fail_step(STEP_USER, -r, USER_GID);
    if ((r = sys(NR_setresuid, uid, uid, uid)) < 0)
        fail_step(STEP_USER, -r, USER_UID);
    // A change of credentials clears the parent-death signal: put it back.
    sys(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    return environment;
}

static _Noreturn void command(char **argv, char **envp, struct options o) {
    // Whatever ends this process ends the command too.
    sys(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    // Signals as a program started from a shell has them: none blocked. (imgboot blocked the
    // forwarded ones across this program's exec; dispositions are the defaults already.)
    sigset64 none = 0;
    sys6(NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof none, 0, 0);
    sys(NR_setsid, 0, 0, 0);
    // The container's terminal becomes the controlling terminal of the new session. (imgboot
    // never hands the container a terminal of the host's: ENOTTY for anything else.)
    for (int fd = 0; fd < 3; fd++)
        if (sys(NR_ioctl, fd, TIOCSCTTY, 0) == 0)
            break;
    // As nspawn: the user first, then the directory (entered with the user's permissions).
    if (o.user)
        envp = become_user(o, envp);
    long r;
    if (o.chdir && (r = sys(NR_chdir, (long)o.chdir, 0, 0)) < 0)
        fail_step(STEP_CHDIR, -r, 0);
    // Only the standard streams cross exec, and the error pipe until then.
    sys(NR_close_range, ERROR_FD + 1, ~0U, 0);
    sys(NR_close_range, ERROR_FD, ERROR_FD, 4 /* CLOSE_RANGE_CLOEXEC */);
    long error = execute(argv, envp);
    int32_t record[3] = { STEP_EXEC, (int32_t)error, 0 };  // struct imgboot_child_error
    sys(NR_write, ERROR_FD, (long)record, sizeof record);
    leave(error == ENOENT || error == ENOTDIR ? 127 : 126);
}

// MARK: PID 1

void start(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    if (argc < 2)
        leave(125);

    // Signals that arrive before the loop runs wait in the mask; none is lost. (A blocked
    // signal reaches even a PID 1 without handlers: the kernel ignores only unblocked ones.
    // imgboot executes this program with them blocked already, for the same reason.)
    const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
    sigset64 mask = bit(SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        mask |= bit(forwarded[i]);
    sys6(NR_rt_sigprocmask, SIG_BLOCK, (long)&mask, 0, sizeof mask, 0, 0);

    long child = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (child < 0)
        leave(125);
    if (child == 0)
        command(argv + 1, envp, parse_options(argv[0]));

    // Nothing of the caller's stays with this process: not the standard streams, not the
    // error pipe (the command holds it until it runs). It holds no descriptor at all: signals
    // are taken from the mask with rt_sigtimedwait, not through a signalfd.
    sys(NR_close_range, 0, ~0U, 0);
    for (;;) {
        long signal = sys6(NR_rt_sigtimedwait, (long)&mask, 0, 0, sizeof mask, 0, 0);
        if (signal == -EINTR)
            continue;
        if (signal < 0)
            leave(125);
        if (signal != SIGCHLD) {
            // To the command's process group, as a terminal's Ctrl-C goes: a shell's
            // foreground child gets it too. Should the command have left its group, to it alone.
            if (sys(NR_kill, -child, signal, 0) < 0)
                sys(NR_kill, child, signal, 0);
            continue;
        }
        // Reap everything that has ended (orphans of the container come to PID 1).
        for (;;) {
            int status = 0;
            long done = sys6(NR_wait4, -1, (long)&status, WNOHANG, 0, 0, 0);
            if (done <= 0)
                break;  // 0: nothing more has ended; -ECHILD: no child left
            if (done != child)
                continue;
            int killed_by = status & 0x7f;
            leave(killed_by == 0 ? (status >> 8) & 0xff : 128 + killed_by);
        }
    }
}
