#define _GNU_SOURCE
#include "CLinuxFS.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stddef.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdio.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

int imgboot_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    // Scoped to a root, a lookup through ".." fails with EAGAIN whenever any mount or rename
    // happened anywhere on the system meanwhile: the kernel cannot prove ".." stayed inside, and
    // asks the caller to retry (openat2(2)). On a busy host (containers starting, other imgboots
    // mounting) an image's `/var/run -> ../run` would otherwise fail now and then.
    int fd = -1;
    for (int attempt = 0; attempt < 128; attempt++) {
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0 || errno != EAGAIN || !(resolve & (RESOLVE_IN_ROOT | RESOLVE_BENEATH)))
            break;
    }
    return fd;
}

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

int imgboot_mount_id(int dirfd, const char *path, uint64_t *id, uint64_t *unique) {
    int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (path[0] == '\0' ? AT_EMPTY_PATH : 0);
    struct statx st;
    // Two calls: both IDs come back in the one field stx_mnt_id, the mask saying which.
    if (statx(dirfd, path, flags, STATX_MNT_ID, &st) < 0)
        return -1;
    if (!(st.stx_mask & STATX_MNT_ID)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    *id = st.stx_mnt_id;
    *unique = 0;
    if (statx(dirfd, path, flags, STATX_MNT_ID_UNIQUE, &st) == 0 && (st.stx_mask & STATX_MNT_ID_UNIQUE))
        *unique = st.stx_mnt_id;
    return 0;
}

int imgboot_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int imgboot_attach_detached(int mnt, int userns_fd, uint64_t attributes, int target_fd) {
    int saved;
    if (userns_fd >= 0 || attributes) {
        struct mount_attr attr = { .attr_set = attributes, .userns_fd = userns_fd < 0 ? 0 : (uint64_t)userns_fd };
        if (userns_fd >= 0)
            attr.attr_set |= MOUNT_ATTR_IDMAP;
        if (syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
            goto fail;
    }
    if (syscall(SYS_move_mount, mnt, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        goto fail;
    close(mnt);
    return 0;
fail:
    saved = errno;
    close(mnt);
    errno = saved;
    return -1;
}

int imgboot_mount_detached(const char *source, const char *fstype, const char *options) {
    int fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int saved;
    uint64_t attributes = 0;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", source, 0) < 0)
        goto fail;
    // options: "ro,nodev,norecovery,rescue=nologreplay": mount attributes, superblock flags and
    // key=value options, as mount(8) would sort them.
    char option[256];
    for (const char *p = options ? options : ""; *p;) {
        size_t n = 0;
        while (p[n] && p[n] != ',')
            n++;
        if (n >= sizeof option) {
            errno = EINVAL;
            goto fail;
        }
        memcpy(option, p, n);
        option[n] = '\0';
        p += n + (p[n] == ',');
        char *equals = strchr(option, '=');
        long r = 0;
        if (n == 0 || strcmp(option, "rw") == 0)
            continue;
        else if (strcmp(option, "nodev") == 0)
            attributes |= MOUNT_ATTR_NODEV;
        else if (strcmp(option, "nosuid") == 0)
            attributes |= MOUNT_ATTR_NOSUID;
        else if (strcmp(option, "noexec") == 0)
            attributes |= MOUNT_ATTR_NOEXEC;
        else if (strcmp(option, "ro") == 0) {
            attributes |= MOUNT_ATTR_RDONLY;
            r = syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "ro", NULL, 0);
        } else if (equals) {
            *equals = '\0';
            r = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, option, equals + 1, 0);
        } else {
            r = syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, option, NULL, 0);
        }
        if (r < 0)
            goto fail;
    }
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        goto fail;
    int mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, attributes);
    if (mnt < 0)
        goto fail;
    close(fs);
    return mnt;
fail:
    saved = errno;
    close(fs);
    errno = saved;
    return -1;
}

int imgboot_bind_idmapped(int source_fd, int userns_fd, int read_only, int target_fd) {
    int mnt = (int)syscall(SYS_open_tree, source_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (mnt < 0)
        return -1;
    return imgboot_attach_detached(mnt, userns_fd, read_only ? MOUNT_ATTR_RDONLY : 0, target_fd);
}

int imgboot_mount_in_userns(int userns_fd, const char *fstype, unsigned long flags, const char *data, int target_fd) {
    char target[64];
    snprintf(target, sizeof target, "/proc/self/fd/%d", target_fd);
    // Only system calls between fork and _exit (the parent has threads). A user namespace can
    // only be joined by a process of one thread, hence the child.
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (setns(userns_fd, CLONE_NEWUSER) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
            _exit(errno);
        if (syscall(SYS_mount, fstype, target, fstype, flags, data) < 0)
            _exit(errno);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, __WALL) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (!WIFEXITED(status)) {
        errno = EINTR;
        return -1;
    }
    if (WEXITSTATUS(status) != 0) {
        errno = WEXITSTATUS(status);
        return -1;
    }
    return 0;
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

int imgboot_sealed_executable(const char *name, const void *bytes, unsigned long length) {
    // MFD_EXEC (Linux 6.3+) says so explicitly, where vm.memfd_noexec would make memfds
    // non-executable by default; older kernels do not know the flag, and make them executable.
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    const unsigned char *p = bytes;
    unsigned long done = 0;
    while (done < length) {
        ssize_t n = write(fd, p + done, length - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        done += (unsigned long)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail;
    return fd;
fail:;
    int saved = errno == 0 ? EIO : errno;
    close(fd);
    errno = saved;
    return -1;
}

uint64_t imgboot_makedev(unsigned major, unsigned minor) { return makedev(major, minor); }

int imgboot_is_cgroup2(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) < 0)
        return -1;
    return fs.f_type == CGROUP2_SUPER_MAGIC;
}

int imgboot_setfsuid(uint32_t uid) { return setfsuid(uid); }

int imgboot_setfsgid(uint32_t gid) { return setfsgid(gid); }

int imgboot_syncfs(int fd) { return syncfs(fd); }
