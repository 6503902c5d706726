// CLinux: the few Linux interfaces Swift's Glibc module does not expose.
//
// Convention for every function in this file: returns 0 (or a non-negative value) on
// success, and -1 with errno set on failure, like the system calls they wrap.
//
// <linux/fs.h> and <linux/mount.h> stay out of this header: they clash with Glibc's MS_*.

#ifndef IMGBOOT_CLINUX_H
#define IMGBOOT_CLINUX_H

#include <stdint.h>

#include "CLinuxFS.h"
#include "CLinuxContainer.h"

/// The size in bytes of the block device open at `fd` (BLKGETSIZE64).
int imgboot_block_device_size(int fd, uint64_t *size);

/// The logical sector size of the block device open at `fd` (BLKSSZGET).
int imgboot_block_device_sector_size(int fd, uint32_t *size);

#endif
