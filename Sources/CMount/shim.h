#ifndef IMGBOOT_CMOUNT_SHIM_H
#define IMGBOOT_CMOUNT_SHIM_H
#include <libmount/libmount.h>
#endif
