#define _GNU_SOURCE
#include "CLinuxTerminal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int imgboot_open_pty(int *master, int *slave, char *name, unsigned long size) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (m < 0)
        return -1;
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, size) != 0)
        goto fail;
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        goto fail;
    *master = m;
    *slave = s;
    return 0;
fail:;
    int saved = errno;
    close(m);
    errno = saved;
    return -1;
}

int imgboot_copy_window_size(int from, int to) {
    struct winsize ws;
    if (ioctl(from, TIOCGWINSZ, &ws) < 0)
        return -1;
    return ioctl(to, TIOCSWINSZ, &ws);
}

int imgboot_set_window_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize ws = {.ws_row = rows, .ws_col = columns};
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int imgboot_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
        return -1;
    *rows = ws.ws_row;
    *columns = ws.ws_col;
    return 0;
}

int imgboot_ignore_sigpipe(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &action, NULL);
}

int imgboot_signalfd(const int *signals) {
    sigset_t set;
    sigemptyset(&set);
    for (const int *s = signals; *s; s++)
        sigaddset(&set, *s);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int imgboot_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    if (n != (ssize_t)sizeof info) {
        errno = EIO;
        return -1;
    }
    return (int)info.ssi_signo;
}

int imgboot_unblock_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

int imgboot_pidfd_wait(int pidfd, int nohang, int *code, int *killed) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | (nohang ? WNOHANG : 0)) < 0)
        return -1;
    if (info.si_pid == 0)
        return 0;
    *killed = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
    *code = info.si_status;
    return 1;
}

int imgboot_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int imgboot_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int imgboot_random(void *buffer, unsigned long length) {
    return getrandom(buffer, length, 0) == (ssize_t)length ? 0 : -1;
}

struct watch {
    int pidfd;
    int signal;
    int error;  // the thread's unshare(CLONE_FS): 0 or its errno
    sem_t started;
};

static void *watch(void *argument) {
    struct watch *w = argument;
    int pidfd = w->pidfd, signal = w->signal;
    int error = unshare(CLONE_FS) < 0 ? errno : 0;
    w->error = error;
    sem_post(&w->started);  // *w is gone from here on
    if (error)
        return NULL;
    struct pollfd ended = { .fd = pidfd, .events = POLLIN };
    int n;
    do
        n = poll(&ended, 1, -1);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        kill(getpid(), signal);
    return NULL;
}

int imgboot_signal_when_ends(int pidfd, int signal) {
    struct watch w = { .pidfd = pidfd, .signal = signal };
    if (sem_init(&w.started, 0, 0) < 0)
        return -1;
    // The thread starts with every signal blocked (it inherits this thread's mask).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attributes, watch, &w);
    pthread_attr_destroy(&attributes);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) {
        while (sem_wait(&w.started) < 0 && errno == EINTR) {
        }
    }
    sem_destroy(&w.started);
    if (rc != 0 || w.error != 0) {
        errno = rc != 0 ? rc : w.error;
        return -1;
    }
    return 0;
}
