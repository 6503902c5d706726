// CLinux: the few Linux interfaces Swift's Glibc module does not expose.
//
// Convention for every function in this file: returns 0 (or a non-negative value) on
// success, and -1 with errno set on failure, like the system calls they wrap.
//
// <linux/fs.h>, <linux/loop.h> and <linux/mount.h> stay out of this header: fs.h and mount.h
// clash with Glibc's MS_*, and loop.h drags in kernel types Swift need not see.

#ifndef IMGBOOT_CLINUX_H
#define IMGBOOT_CLINUX_H

#include <stdint.h>
#include <sys/types.h>

#include "CLinuxFS.h"
#include "CLinuxContainer.h"
#include "CLinuxTerminal.h"

/// The size in bytes of the block device open at `fd` (BLKGETSIZE64).
int imgboot_block_device_size(int fd, uint64_t *size);

/// The logical sector size of the block device open at `fd` (BLKSSZGET).
int imgboot_block_device_sector_size(int fd, uint32_t *size);

/// The disk sequence number of the block device open at `fd` (BLKGETDISKSEQ, Linux 5.15+):
/// it changes every time a loop device is attached or detached, so it tells one attachment
/// of /dev/loopN from the next. 0, or -1 with errno.
int imgboot_block_device_disk_sequence(int fd, uint64_t *sequence);

/// The major and minor numbers of a device number (st_dev, st_rdev): major(3), minor(3).
unsigned imgboot_major(uint64_t device);
unsigned imgboot_minor(uint64_t device);

/// mknodat(2) of a block device node `name` in `dirfd` for device `major_number`:`minor_number`
/// with permission bits `mode` (the umask applies). 0, or -1 with errno.
int imgboot_mknod_block(int dirfd, const char *name, unsigned mode, unsigned major_number, unsigned minor_number);

// MARK: Loop devices (loop.c). <linux/loop.h> stays out of this header; the status is
// copied into this struct so that Swift sees no kernel types.

/// What LOOP_GET_STATUS64 reports about a bound loop device.
struct imgboot_loop_status {
    /// st_dev and st_ino of the backing file, as the kernel encodes them (comparable with
    /// fstat's st_dev and st_ino).
    uint64_t backing_device;
    uint64_t backing_inode;
    uint64_t offset;
    /// 0 means "up to the end of the backing file".
    uint64_t size_limit;
    /// The N of /dev/loopN.
    uint32_t number;
    /// 1 when LO_FLAGS_READ_ONLY is set, else 0.
    int read_only;
    /// 1 when LO_FLAGS_AUTOCLEAR is set, else 0.
    int autoclear;
};

/// LOOP_CTL_GET_FREE on `control_fd` (an open /dev/loop-control): the number N of a free
/// /dev/loopN, creating one if none is free. N >= 0, or -1 with errno. Another process may
/// take the device before the caller configures it.
int imgboot_loop_get_free(int control_fd);

/// LOOP_CONFIGURE on `loop_fd` (an open /dev/loopN): binds `backing_fd` from byte `offset`
/// for `size_limit` bytes (0: to the end of the file), block size left to the kernel,
/// with LO_FLAGS_AUTOCLEAR, plus LO_FLAGS_READ_ONLY when `read_only` is non-zero. `name`
/// (may be NULL) is recorded as lo_file_name, truncated to 63 bytes. 0, or -1 with errno
/// (EBUSY: the device is already bound, or held exclusively by someone else).
int imgboot_loop_configure(int loop_fd, int backing_fd, uint64_t offset, uint64_t size_limit,
                           int read_only, const char *name);

/// LOOP_GET_STATUS64 on `loop_fd`, copied into `status`. 0, or -1 with errno (ENXIO: the
/// device is not bound).
int imgboot_loop_get_status(int loop_fd, struct imgboot_loop_status *status);

// MARK: Processes (spawn.c)

/// Starts `path` with `argv` and `envp` in a session of its own, working directory /, every
/// signal's disposition the default and none blocked: a program meant to outlive the caller.
/// Its stdin is `in`, its stdout `out`, its stderr /dev/null; `keep[0]`…`keep[count - 1]` (at
/// most 64) become its descriptors 3, 4, …; every other descriptor is closed. The PID (the
/// child is the caller's to reap or leave), or -1 with errno.
pid_t imgboot_spawn_detached(const char *path, char *const argv[], char *const envp[], int in, int out,
                             const int *keep, int count);

// MARK: Locks (lock.c)

/// An open file description lock (fcntl F_OFD_SETLK, never waiting) on the whole file open at
/// `fd`: `kind` 1 shared (F_RDLCK), 2 exclusive (F_WRLCK), 0 unlock. Such a lock belongs to the
/// open file description, like flock's, but the two kinds never conflict with each other:
/// systemd-nspawn's image lock files take this kind. 0, or -1 with errno (EAGAIN: someone else
/// holds a conflicting lock).
int imgboot_ofd_lock(int fd, int kind);

#endif
