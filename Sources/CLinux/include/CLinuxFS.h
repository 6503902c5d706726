// CLinux, filesystem part: path resolution scoped to a directory, and the new mount API.
// Every function returns a non-negative value on success and -1 with errno on failure.

#ifndef IMGBOOT_CLINUX_FS_H
#define IMGBOOT_CLINUX_FS_H

#include <stddef.h>
#include <stdint.h>

// open(2) flags Glibc hides without _GNU_SOURCE.
#define IMGBOOT_O_PATH 010000000
#define IMGBOOT_O_TMPFILE (020000000 | 0200000)

// openat2(2) resolve flags (linux/openat2.h).
#define IMGBOOT_RESOLVE_NO_XDEV 0x01
#define IMGBOOT_RESOLVE_NO_MAGICLINKS 0x02
#define IMGBOOT_RESOLVE_NO_SYMLINKS 0x04
#define IMGBOOT_RESOLVE_BENEATH 0x08
#define IMGBOOT_RESOLVE_IN_ROOT 0x10

/// openat2(2): opens `path` relative to `dirfd` with `flags` (O_*) and `resolve`
/// (IMGBOOT_RESOLVE_*). Returns the new descriptor, or -1 and errno. Retries (a bounded number of
/// times) the EAGAIN a lookup scoped by RESOLVE_IN_ROOT or RESOLVE_BENEATH gets when a mount or
/// rename elsewhere raced with its "..".
int imgboot_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// Mounts `source` (a block device) with filesystem `fstype` and mount(8)-style `options`
/// ("ro,nodev,norecovery") through the new mount API, detached: reach it through the returned
/// descriptor; `imgboot_attach_detached` puts it in place.
int imgboot_mount_detached(const char *source, const char *fstype, const char *options);

/// Attaches the detached mount `mnt` (from `imgboot_mount_detached` or an open_tree clone) on
/// the directory or file open at `target_fd` (O_PATH will do), first idmapped through the user
/// namespace `userns_fd` unless it is -1 (the filesystem's UID 0 becomes that namespace's root)
/// and given the MOUNT_ATTR_* `attributes`. Closes `mnt`, whatever happens.
int imgboot_attach_detached(int mnt, int userns_fd, uint64_t attributes, int target_fd);

/// Binds what is open at `source_fd` on what is open at `target_fd` (O_PATH will do for both),
/// idmapped through `userns_fd` (unless -1), read-only when `read_only`: a clone of the mount
/// (open_tree, not recursive), changed before it is attached.
int imgboot_bind_idmapped(int source_fd, int userns_fd, int read_only, int target_fd);

/// Mounts `fstype` with `data` on the directory `target_fd` as the root of the user namespace
/// `userns_fd` (its UID and GID 0, its capabilities), from a child process that joins it: the
/// filesystem's creator is then the container's root, as an overlay on idmapped layers needs
/// (the host's root has no ID there). The calling thread's mount namespace is the one mounted
/// in; it must belong to that user namespace. 0, or -1 with errno the mount's.
int imgboot_mount_in_userns(int userns_fd, const char *fstype, unsigned long flags, const char *data, int target_fd);

/// setfsuid(2) and setfsgid(2) (in <sys/fsuid.h>, which Swift's Glibc module leaves out):
/// the previous ID.
int imgboot_setfsuid(uint32_t uid);
int imgboot_setfsgid(uint32_t gid);

/// statx(2) of `path` relative to `dirfd` (of `dirfd` itself when `path` is ""), never following
/// a final symlink: the ID of the mount the file lies on as /proc/self/mountinfo numbers it
/// (reused once that mount is gone) in `*id`, and the 64-bit ID the kernel never reuses
/// (STATX_MNT_ID_UNIQUE, Linux 6.8+) in `*unique`, or 0 where the kernel has none.
int imgboot_mount_id(int dirfd, const char *path, uint64_t *id, uint64_t *unique);

/// syncfs(2) (declared by Glibc only under _GNU_SOURCE): writes back the filesystem that `fd`
/// lies on, and reports a failure to (0, or -1 and errno).
int imgboot_syncfs(int fd);

/// makedev(3), which is a macro.
uint64_t imgboot_makedev(unsigned major, unsigned minor);

/// memfd_create(2) with MFD_CLOEXEC: an anonymous file in RAM, gone with its last descriptor.
/// `name` only shows in /proc/self/fd. Returns the new descriptor. (Glibc declares memfd_create
/// only under _GNU_SOURCE, which Swift's Glibc module does not see.)
int imgboot_memfd_create(const char *name);

/// A close-on-exec memfd holding `length` bytes of `bytes`, executable, and sealed against any
/// change (write, shrink, grow, further seals): a program that can be executed with
/// execveat(fd, "", …, AT_EMPTY_PATH) and that no one — not a container that finds it as
/// /proc/1/exe — can alter. Returns the descriptor.
int imgboot_sealed_executable(const char *name, const void *bytes, unsigned long length);

/// 1 when `path` is the root of a cgroup2 filesystem, 0 when not, -1 with errno on failure.
int imgboot_is_cgroup2(const char *path);

/// Attaches imgboot's device policy to the cgroup2 directory `cgroup_fd`: a BPF cgroup-device
/// program allowing the `count` character devices `majors[i]`:`minors[i]` (a minor of -1: any)
/// and nothing else.
int imgboot_attach_device_filter(int cgroup_fd, const uint32_t *majors, const int32_t *minors, size_t count);

#endif
