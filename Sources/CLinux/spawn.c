// A program started to outlive imgboot (see CLinux.h for the contract).

#define _GNU_SOURCE
#include "CLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

pid_t imgboot_spawn_detached(const char *path, char *const argv[], char *const envp[], int in, int out,
                             const int *keep, int count) {
    if (count < 0 || count > 64) {
        errno = EINVAL;
        return -1;
    }
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    // Only async-signal-safe calls from here on.
    if (setsid() < 0 || chdir("/") < 0)
        _exit(127);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (int s = 1; s < NSIG; s++)
        (void)sigaction(s, &dfl, NULL);  // SIGKILL, SIGSTOP and glibc's own refuse: fine
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    // Every descriptor to keep first goes above everything it could collide with, then to
    // its place from 3 on; what is left above them is closed (the caller's sockets and pipes
    // must not stay open for as long as this program lives).
    int high[64];
    int floor = 3 + count;
    if (floor < in + 1) floor = in + 1;
    if (floor < out + 1) floor = out + 1;
    for (int i = 0; i < count; i++) {
        if (keep[i] >= floor) floor = keep[i] + 1;
    }
    for (int i = 0; i < count; i++) {
        high[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, floor);
        if (high[i] < 0)
            _exit(127);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        _exit(127);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0)
        _exit(127);
    for (int i = 0; i < count; i++) {
        if (dup2(high[i], 3 + i) < 0)
            _exit(127);
    }
    syscall(SYS_close_range, (unsigned)(3 + count), ~0U, 0);
    execve(path, argv, envp);
    _exit(127);
}
