#define _GNU_SOURCE
#include "CLinuxTerminal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/// Fills `sa` from "/path" or "@abstract"; returns the address length, or -1 with EINVAL.
static int socket_address(const char *address, struct sockaddr_un *sa) {
    size_t n = strlen(address);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (address[0] == '/' && n < sizeof sa->sun_path) {
        memcpy(sa->sun_path, address, n + 1);
        return (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    // Abstract: a NUL, then the name, with no NUL after it (the length says where it ends).
    if (address[0] == '@' && n > 1 && n <= sizeof sa->sun_path) {
        memcpy(sa->sun_path + 1, address + 1, n - 1);
        return (int)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    errno = EINVAL;
    return -1;
}

int imgboot_notify_send(const char *address, const void *data, unsigned long length) {
    struct sockaddr_un sa;
    int size = socket_address(address, &sa);
    if (size < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t sent = sendto(fd, data, length, MSG_NOSIGNAL, (struct sockaddr *)&sa, (socklen_t)size);
    int saved = errno;
    close(fd);
    if (sent < 0) {
        errno = saved;
        return -1;
    }
    return 0;
}

int imgboot_notify_listen(const char *address) {
    struct sockaddr_un sa;
    int size = socket_address(address, &sa);
    if (size < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0 ||
        bind(fd, (struct sockaddr *)&sa, (socklen_t)size) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

long imgboot_notify_receive(int fd, void *buffer, unsigned long size, int *sender) {
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
    } control;
    struct iovec iov = {.iov_base = buffer, .iov_len = size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0)
        return -1;
    *sender = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            *sender = cred.pid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            // sd_notify may pass descriptors (FDSTORE=1); none is wanted here.
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int passed;
                memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
                close(passed);
            }
        }
    }
    if ((size_t)n > size || (msg.msg_flags & MSG_TRUNC)) {
        errno = EMSGSIZE;
        return -1;
    }
    return (long)n;
}
