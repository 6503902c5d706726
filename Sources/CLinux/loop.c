// Loop device ioctls (see CLinux.h for each function's contract). Every function returns
// 0 (or a non-negative value) on success and -1 with errno set on failure.

#include "CLinux.h"

#include <string.h>

#include <linux/loop.h>
#include <sys/ioctl.h>

int imgboot_loop_get_free(int control_fd) {
    return ioctl(control_fd, LOOP_CTL_GET_FREE);
}

int imgboot_loop_configure(int loop_fd, int backing_fd, uint64_t offset, uint64_t size_limit,
                           int read_only, const char *name) {
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (__u32)backing_fd;
    config.block_size = 0;
    config.info.lo_offset = offset;
    config.info.lo_sizelimit = size_limit;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
    if (name != NULL)
        // The kernel shows lo_file_name only where sysfs is missing; a truncated name is fine.
        strncpy((char *)config.info.lo_file_name, name, LO_NAME_SIZE - 1);
    return ioctl(loop_fd, LOOP_CONFIGURE, &config);
}

int imgboot_loop_get_status(int loop_fd, struct imgboot_loop_status *status) {
    struct loop_info64 info;
    memset(&info, 0, sizeof info);
    if (ioctl(loop_fd, LOOP_GET_STATUS64, &info) < 0)
        return -1;
    status->backing_device = info.lo_device;
    status->backing_inode = info.lo_inode;
    status->offset = info.lo_offset;
    status->size_limit = info.lo_sizelimit;
    status->number = info.lo_number;
    status->read_only = (info.lo_flags & LO_FLAGS_READ_ONLY) != 0;
    status->autoclear = (info.lo_flags & LO_FLAGS_AUTOCLEAR) != 0;
    return 0;
}
