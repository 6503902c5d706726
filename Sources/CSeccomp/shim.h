#ifndef IMGBOOT_CSECCOMP_SHIM_H
#define IMGBOOT_CSECCOMP_SHIM_H
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

/// socket() allowed for every family and protocol but socket(AF_NETLINK, *, NETLINK_AUDIT),
/// which fails with EAFNOSUPPORT, as under nspawn: audit does not work in containers, and that
/// error is how its userspace learns that audit is off. (An unconditional allow rule for socket
/// would win over the refusal: libseccomp keeps the rule without arguments. So the allow rules
/// are conditional too, their union all but the refused case.) Returns 0 or -errno.
static inline int imgboot_scmp_socket_rules(scmp_filter_ctx ctx, int family, int protocol, int error) {
    int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)family));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A2(SCMP_CMP_NE, (scmp_datum_t)protocol));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(error), SCMP_SYS(socket), 2,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)family), SCMP_A2(SCMP_CMP_EQ, (scmp_datum_t)protocol));
    return r;
}
#endif
