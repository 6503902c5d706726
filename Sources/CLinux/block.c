#include "CLinux.h"

#include <stddef.h>

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

int imgboot_block_device_size(int fd, uint64_t *size) {
    return ioctl(fd, BLKGETSIZE64, size);
}

int imgboot_block_device_sector_size(int fd, uint32_t *size) {
    int value = 0;
    if (ioctl(fd, BLKSSZGET, &value) < 0)
        return -1;
    *size = (uint32_t)value;
    return 0;
}

int imgboot_block_device_disk_sequence(int fd, uint64_t *sequence) {
    return ioctl(fd, BLKGETDISKSEQ, sequence);
}

unsigned imgboot_major(uint64_t device) { return major((dev_t)device); }

unsigned imgboot_minor(uint64_t device) { return minor((dev_t)device); }

int imgboot_mknod_block(int dirfd, const char *name, unsigned mode, unsigned major_number, unsigned minor_number) {
    return mknodat(dirfd, name, S_IFBLK | (mode & 07777), makedev(major_number, minor_number));
}
