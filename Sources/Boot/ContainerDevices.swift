/// The devices a container may use, in one table: the nodes its /dev gets (`ContainerPlan`), the
/// BPF device program on its cgroup (CLinux's `imgboot_attach_device_filter`), and the rules of
/// the cgroup v1 devices controller where BPF is unavailable (`DeviceCgroup`) all come from it.
/// As nspawn allows: these character devices, and nothing else — not even `mknod` of a host disk.
enum ContainerDevices {
    struct Device {
        /// The node in the container's /dev, or nil for a device it reaches otherwise (the
        /// console is the pty imgboot binds there; ptmx is a link into devpts).
        var node: String?
        var major: UInt32
        /// nil: any minor (pty slaves).
        var minor: UInt32?
    }

    static let all: [Device] = [
        Device(node: "null", major: 1, minor: 3), Device(node: "zero", major: 1, minor: 5),
        Device(node: "full", major: 1, minor: 7), Device(node: "random", major: 1, minor: 8),
        Device(node: "urandom", major: 1, minor: 9), Device(node: "tty", major: 5, minor: 0),
        Device(node: nil, major: 5, minor: 1),  // /dev/console
        Device(node: nil, major: 5, minor: 2),  // /dev/ptmx
        Device(node: nil, major: 136, minor: nil),  // /dev/pts/N
    ]

    /// The nodes made in the container's /dev.
    static var nodes: [(name: String, major: UInt32, minor: UInt32)] {
        all.compactMap { d in d.node.flatMap { name in d.minor.map { (name, d.major, $0) } } }
    }

    /// The rules for the v1 devices controller's `devices.allow`: "c MAJOR:MINOR rwm".
    static var v1Rules: [String] {
        all.map { "c \($0.major):\($0.minor.map(String.init) ?? "*") rwm" }
    }

    /// The table as CLinux's `imgboot_attach_device_filter` takes it: (major, minor or -1).
    static var filterEntries: [(major: UInt32, minor: Int32)] {
        all.map { ($0.major, $0.minor.map { Int32($0) } ?? -1) }
    }
}
