// The container's device policy as a BPF_PROG_TYPE_CGROUP_DEVICE program on its cgroup2
// directory, built from the table the caller gives (Sources/Boot/ContainerDevices.swift): the
// character devices listed may be created, read and written; nothing else.

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
#define JNE(dst, value, skip) INSN(BPF_JMP | BPF_JNE | BPF_K, dst, 0, skip, value)
#define MOV(dst, value) INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, value)
#define EXIT INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

enum { MAX_DEVICES = 64, MAX_INSNS = 8 + 4 * MAX_DEVICES };

/// The program: r2 = device type, r3 = major, r4 = minor; then for each entry "if type, major
/// (and minor) match, allow"; at the end, deny. Each entry is self-contained (its jumps skip to
/// the next entry), so the program is a list, not a hand-counted web of offsets.
static size_t build(struct bpf_insn *p, const uint32_t *majors, const int32_t *minors, size_t count) {
    size_t n = 0;
    p[n++] = LOAD32(2, 1, offsetof(struct bpf_cgroup_dev_ctx, access_type));
    p[n++] = AND32(2, 0xFFFF);  // the device type
    p[n++] = LOAD32(3, 1, offsetof(struct bpf_cgroup_dev_ctx, major));
    p[n++] = LOAD32(4, 1, offsetof(struct bpf_cgroup_dev_ctx, minor));
    for (size_t i = 0; i < count; i++) {
        int any_minor = minors[i] < 0;
        // The entry's length; a test at position k skips the rest of the entry: length - k - 1.
        short length = any_minor ? 4 : 5;
        p[n++] = JNE(2, BPF_DEVCG_DEV_CHAR, length - 1);
        p[n++] = JNE(3, (int32_t)majors[i], length - 2);
        if (!any_minor)
            p[n++] = JNE(4, minors[i], length - 3);
        p[n++] = MOV(0, 1);
        p[n++] = EXIT;
    }
    p[n++] = MOV(0, 0);
    p[n++] = EXIT;
    return n;
}

int imgboot_attach_device_filter(int cgroup_fd, const uint32_t *majors, const int32_t *minors, size_t count) {
    if (count > MAX_DEVICES) {
        errno = E2BIG;
        return -1;
    }
    struct bpf_insn program[MAX_INSNS];
    size_t length = build(program, majors, minors, count);
    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = (uint32_t)length;
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
