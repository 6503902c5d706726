#include "CLinux.h"

#include <stddef.h>

#include <linux/fs.h>
#include <sys/ioctl.h>

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
