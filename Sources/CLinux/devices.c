// The container's device policy as a BPF_PROG_TYPE_CGROUP_DEVICE program on its cgroup2
// directory: character devices 1:3,5,7,8,9 (null, zero, full, random, urandom), 5:0,1,2 (tty,
// console, ptmx) and 136:* (pty slaves) may be created, read and written; nothing else.

#include "CLinuxFS.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define LOAD32(dst, src, offset) INSN(BPF_LDX | BPF_MEM | BPF_W, dst, src, offset, 0)
#define AND32(dst, value) INSN(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, value)
#define JEQ(dst, value, skip) INSN(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, skip, value)
#define JNE(dst, value, skip) INSN(BPF_JMP | BPF_JNE | BPF_K, dst, 0, skip, value)
#define JUMP(skip) INSN(BPF_JMP | BPF_JA, 0, 0, skip, 0)
#define MOV(dst, value) INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, value)
#define EXIT INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

// Jump offsets count from the next instruction; the labels are the indexes in comments.
static const struct bpf_insn program[] = {
    /* 0 */ LOAD32(2, 1, offsetof(struct bpf_cgroup_dev_ctx, access_type)),
    /* 1 */ AND32(2, 0xFFFF),  // the device type
    /* 2 */ LOAD32(3, 1, offsetof(struct bpf_cgroup_dev_ctx, major)),
    /* 3 */ LOAD32(4, 1, offsetof(struct bpf_cgroup_dev_ctx, minor)),
    /* 4 */ JNE(2, BPF_DEVCG_DEV_CHAR, 14),  // → 19 deny
    /* 5 */ JEQ(3, 136, 15),                 // → 21 allow
    /* 6 */ JEQ(3, 1, 2),                    // → 9
    /* 7 */ JEQ(3, 5, 7),                    // → 15
    /* 8 */ JUMP(10),                        // → 19 deny
    /* 9 */ JEQ(4, 3, 11),                   // → 21 allow
    /* 10 */ JEQ(4, 5, 10),
    /* 11 */ JEQ(4, 7, 9),
    /* 12 */ JEQ(4, 8, 8),
    /* 13 */ JEQ(4, 9, 7),
    /* 14 */ JUMP(4),                        // → 19 deny
    /* 15 */ JEQ(4, 0, 5),                   // → 21 allow
    /* 16 */ JEQ(4, 1, 4),
    /* 17 */ JEQ(4, 2, 3),
    /* 18 */ JUMP(0),                        // → 19 deny
    /* 19 */ MOV(0, 0),
    /* 20 */ EXIT,
    /* 21 */ MOV(0, 1),
    /* 22 */ EXIT,
};

int imgboot_attach_device_filter(int cgroup_fd) {
    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = sizeof program / sizeof program[0];
    load.license = (uint64_t)(uintptr_t)"GPL";
    memcpy(load.prog_name, "imgboot_devices", sizeof "imgboot_devices");
    int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
    if (prog < 0)
        return -1;

    union bpf_attr attach;
    memset(&attach, 0, sizeof attach);
    attach.target_fd = (uint32_t)cgroup_fd;
    attach.attach_bpf_fd = (uint32_t)prog;
    attach.attach_type = BPF_CGROUP_DEVICE;
    // Descendants (systemd inside sets up its own device policies) may add programs, which all
    // have to allow an access; none can loosen this one.
    attach.attach_flags = BPF_F_ALLOW_MULTI;
    int rc = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof attach);
    int saved = errno;
    close(prog);  // the attachment holds the program
    errno = saved;
    return rc;
}
