#ifndef IMGBOOT_CBLKID_SHIM_H
#define IMGBOOT_CBLKID_SHIM_H
#include <blkid/blkid.h>
#endif
