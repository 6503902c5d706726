#ifndef IMGBOOT_CSECCOMP_SHIM_H
#define IMGBOOT_CSECCOMP_SHIM_H
#include <stddef.h>
#include <seccomp.h>

// libseccomp's actions and architecture tokens are macros Swift cannot import (they take
// arguments, or expand to expressions).
static inline uint32_t imgboot_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t imgboot_scmp_act_errno(int error) { return SCMP_ACT_ERRNO(error); }
static inline uint32_t imgboot_scmp_arch_native(void) { return SCMP_ARCH_NATIVE; }
static inline uint32_t imgboot_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }
static inline uint32_t imgboot_scmp_arch_x86(void) { return SCMP_ARCH_X86; }
static inline uint32_t imgboot_scmp_arch_x32(void) { return SCMP_ARCH_X32; }
static inline uint32_t imgboot_scmp_arch_aarch64(void) { return SCMP_ARCH_AARCH64; }
static inline uint32_t imgboot_scmp_arch_arm(void) { return SCMP_ARCH_ARM; }

/// Rules with `action` for `syscall` whenever the low 32 bits of argument `arg` are not `value`,
/// whatever its upper 32 bits hold, and `also` holds (if not NULL). For an `int` argument: the
/// kernel reads it from the low half of the register alone, so a comparison of all 64 bits
/// (SCMP_CMP_NE) would take 0x1_0000_0010 for another value than 16, where the kernel sees 16.
/// libseccomp has no masked "not equal": one masked comparison per bit instead, each matching
/// the values that agree with `value` above that bit and differ in it. Returns 0 or -errno.
static inline int imgboot_scmp_rules_low32_ne(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned arg, uint32_t value,
                                              const struct scmp_arg_cmp *also) {
    for (unsigned bit = 0; bit < 32; bit++) {
        uint32_t mask = 0xffffffffu << bit;
        struct scmp_arg_cmp comparisons[2] = {
            { arg, SCMP_CMP_MASKED_EQ, mask, (value & mask) ^ (1u << bit) },
        };
        if (also)
            comparisons[1] = *also;
        int r = seccomp_rule_add_array(ctx, action, syscall, also ? 2 : 1, comparisons);
        if (r < 0)
            return r;
    }
    return 0;
}

/// socket() allowed for every family and protocol but socket(AF_NETLINK, *, NETLINK_AUDIT),
/// which fails with EAFNOSUPPORT, as under nspawn: audit does not work in containers, and that
/// error is how its userspace learns that audit is off. (An unconditional allow rule for socket
/// would win over the refusal: libseccomp keeps the rule without arguments. So the allow rules
/// are conditional too, their union all but the refused case: any other family; the family with
/// any other protocol — nested so: as two siblings, "any other family" and "any other protocol",
/// libseccomp 2.5 merged away the refusal on the 32-bit ABIs, where i386's and x32's audit socket
/// fell through to ENOSYS.) Family and protocol are compared as the kernel reads them, by their
/// low 32 bits: a comparison of all 64 let a 64-bit program through with the upper half set.
/// Returns 0 or -errno.
static inline int imgboot_scmp_socket_rules(scmp_filter_ctx ctx, int family, int protocol, int error) {
    struct scmp_arg_cmp is_family = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffff, (uint32_t)family);
    struct scmp_arg_cmp is_protocol = SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffff, (uint32_t)protocol);
    int r = imgboot_scmp_rules_low32_ne(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 0, (uint32_t)family, NULL);
    if (r == 0)
        r = imgboot_scmp_rules_low32_ne(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, (uint32_t)protocol, &is_family);
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(error), SCMP_SYS(socket), 2, is_family, is_protocol);
    return r;
}
#endif
