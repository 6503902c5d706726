// Open file description locks (see CLinux.h for the contract): the kind systemd-nspawn takes on
// its image lock files. Every function returns 0 on success and -1 with errno on failure.

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int imgboot_ofd_lock(int fd, int kind) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = kind == 2 ? F_WRLCK : kind == 1 ? F_RDLCK : F_UNLCK;
    lock.l_whence = SEEK_SET;  // l_start 0 and l_len 0: the whole file, as nspawn locks it
    if (fcntl(fd, F_OFD_SETLK, &lock) == 0)
        return 0;
    // fcntl(2) allows EACCES for a conflicting lock; Linux says EAGAIN. One answer for both.
    if (errno == EACCES)
        errno = EAGAIN;
    return -1;
}
