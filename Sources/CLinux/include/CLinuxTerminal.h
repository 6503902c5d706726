// CLinux, terminal and process part. Functions return a non-negative value on success and -1
// with errno on failure.

#ifndef IMGBOOT_CLINUX_TERMINAL_H
#define IMGBOOT_CLINUX_TERMINAL_H

#include <signal.h>

/// A new pseudo-terminal pair: the master (O_RDWR|O_NOCTTY|O_CLOEXEC|O_NONBLOCK) and its slave
/// (O_RDWR|O_NOCTTY|O_CLOEXEC), whose path is written to `name` (`size` bytes).
int imgboot_open_pty(int *master, int *slave, char *name, unsigned long size);

/// Copies the window size of terminal `from` to terminal `to` (TIOCGWINSZ, TIOCSWINSZ).
int imgboot_copy_window_size(int from, int to);

/// A signalfd(2) (non-blocking, close-on-exec) for the signals in `signals` (0-terminated),
/// after blocking them.
int imgboot_signalfd(const int *signals);

/// Ignores SIGPIPE: a write to a pipe nobody reads fails with EPIPE instead of killing the
/// process. (Children that exec reset it: see reset_signals in container.c.)
int imgboot_ignore_sigpipe(void);

/// Reads one signal from a signalfd: returns its number, 0 when none is pending.
int imgboot_signalfd_read(int fd);

/// Unblocks every signal (the mask is inherited across exec).
int imgboot_unblock_signals(void);

/// waitid(P_PIDFD): 0 when the process is not done yet (with WNOHANG), 1 when it is, with
/// `*code` its exit status or the number of the signal that killed it, `*killed` which.
int imgboot_pidfd_wait(int pidfd, int nohang, int *code, int *killed);

/// pipe2(2) with O_CLOEXEC.
int imgboot_pipe_cloexec(int fds[2]);

/// eventfd(2), counting from 0: non-blocking and close-on-exec.
int imgboot_eventfd(void);

/// getrandom(2): fills `buffer` with `length` random bytes.
int imgboot_random(void *buffer, unsigned long length);

/// Sends `signal` to the calling process when the process of `pidfd` ends (how smoke's children
/// end with smoke: see Smoke's EndWithSmoke.swift). A thread of its own waits for it: one that
/// blocks every signal, so that they still go where the process expects them (a signalfd), and
/// that has filesystem attributes of its own (unshare(CLONE_FS)), so that the process can still
/// join a mount namespace — setns(CLONE_NEWNS) refuses a process whose threads share them.
/// The thread keeps `pidfd`. Returns 0 once it waits.
int imgboot_signal_when_ends(int pidfd, int signal);

/// Sets the window size of terminal `fd` (TIOCSWINSZ): `rows` lines of `columns` characters.
int imgboot_set_window_size(int fd, unsigned short rows, unsigned short columns);

/// The window size of terminal `fd` (TIOCGWINSZ). -1 with errno (ENOTTY) when it is none.
int imgboot_window_size(int fd, unsigned short *rows, unsigned short *columns);

// MARK: The notify protocol (notify.c), as sd_notify(3) speaks it: datagrams of
// newline-separated KEY=VALUE fields on an AF_UNIX socket named by an absolute path, or by
// "@NAME" for NAME in the abstract namespace.

/// Sends `length` bytes of `data` as one datagram to the socket at `address`. EINVAL when
/// `address` is neither an absolute path nor "@NAME", or too long for a socket address.
int imgboot_notify_send(const char *address, const void *data, unsigned long length);

/// A datagram socket bound at `address` (same forms), non-blocking and close-on-exec, that
/// receives its senders' credentials (SO_PASSCRED). Returns the descriptor.
int imgboot_notify_listen(const char *address);

/// Receives one datagram from `fd` (a socket of imgboot_notify_listen) without waiting: its
/// length, with `*sender` the PID the kernel vouches for (0 when it did not say). Descriptors
/// sent along are closed. -1 with errno: EAGAIN when nothing is waiting, EMSGSIZE when the
/// datagram was larger than `size` (it is dropped).
long imgboot_notify_receive(int fd, void *buffer, unsigned long size, int *sender);

#endif
