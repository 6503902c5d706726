/// A CPU architecture, as the Discoverable Partitions Specification names them
/// (and `systemd-dissect` prints them).
public enum Architecture: String, Sendable, CaseIterable {
    case alpha
    case arc
    case arm
    case arm64
    case ia64
    case loongarch64
    case mips
    case mips64
    case mipsLE = "mips-le"
    case mips64LE = "mips64-le"
    case parisc
    case ppc
    case ppc64
    case ppc64LE = "ppc64-le"
    case riscv32
    case riscv64
    case s390
    case s390x
    case tilegx
    case x86
    case x86_64 = "x86-64"

    /// The architecture imgboot runs on. Only root and /usr partitions of this architecture
    /// are booted.
    public static var native: Architecture {
        #if arch(x86_64)
        return .x86_64
        #elseif arch(arm64)
        return .arm64
        #elseif arch(i386)
        return .x86
        #elseif arch(arm)
        return .arm
        #elseif arch(powerpc64le)
        return .ppc64LE
        #elseif arch(powerpc64)
        return .ppc64
        #elseif arch(s390x)
        return .s390x
        #elseif arch(riscv64)
        return .riscv64
        #else
        #error("imgboot does not know the DPS name of this architecture")
        #endif
    }
}
