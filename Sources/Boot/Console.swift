#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// The container's console as imgboot relays it: a pty whose slave is the container's
/// /dev/console (and its standard streams), and whose master imgboot reads and writes — or,
/// for `run` without a terminal, nothing at all: the standard streams pass through untouched.
final class Console {
    /// What is relayed.
    let mode: ContainerSpec.Console?
    /// The pty master, or -1.
    let master: Int32
    /// The pty slave (kept open until the end, so that the master never sees a hang-up while
    /// no one in the container has the console open).
    private(set) var slave: Int32
    /// The slave's path on the host (/dev/pts/N).
    private(set) var slavePath: String = ""
    /// The terminal settings of our stdin to restore, when it was put in raw mode.
    private var saved: termios?
    /// TERM for the container.
    let terminalType: String

    private init(mode: ContainerSpec.Console?, master: Int32, slave: Int32, terminalType: String) {
        self.mode = mode
        self.master = master
        self.slave = slave
        self.terminalType = terminalType
    }

    deinit {
        restore()
        closeSlave()
        if master >= 0 { close(master) }
    }

    static func open(spec: ContainerSpec, image: String) throws(BootError) -> Console {
        try open(boot: spec.boot, requested: spec.console, subject: image)
    }

    /// `boot`: a pty in every mode; otherwise (`run`, `enter`) a pty only for a terminal.
    static func open(boot: Bool, requested: ContainerSpec.Console?, subject image: String) throws(BootError) -> Console {
        let terminal = isatty(0) == 1 && isatty(1) == 1
        let hostTerm = getenv("TERM").map { String(cString: $0) } ?? "vt220"
        let mode: ContainerSpec.Console?
        if boot {
            mode = requested ?? (terminal ? .interactive : .readOnly)
        } else {
            // run: a terminal gets a pty; pipes and files pass through untouched.
            mode = terminal ? .interactive : nil
        }
        guard let mode else { return Console(mode: nil, master: -1, slave: -1, terminalType: terminal ? hostTerm : "dumb") }

        var master: Int32 = -1, slave: Int32 = -1
        var name = [CChar](repeating: 0, count: 128)
        guard imgboot_open_pty(&master, &slave, &name, UInt(name.count)) == 0 else {
            throw BootError(image: image, "open a pseudo-terminal", errno: errno)
        }
        let console = Console(mode: mode, master: master, slave: slave,
                              terminalType: mode == .interactive || (mode == .readOnly && terminal) ? hostTerm : "vt220")
        console.slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if isatty(1) == 1 { _ = imgboot_copy_window_size(1, master) }
        if mode == .interactive && isatty(0) == 1 { console.makeRaw() }
        return console
    }

    func closeSlave() {
        if slave >= 0 { close(slave) }
        slave = -1
    }

    /// Whether stdin is relayed to the container.
    var relaysInput: Bool { mode == .interactive || mode == .pipe }

    /// Whether the container's output is shown.
    var relaysOutput: Bool { mode != nil && mode != .passive }

    private func makeRaw() {
        var settings = termios()
        guard tcgetattr(0, &settings) == 0 else { return }
        saved = settings
        cfmakeraw(&settings)
        _ = tcsetattr(0, TCSANOW, &settings)
    }

    /// Puts our terminal back as it was.
    func restore() {
        guard var settings = saved else { return }
        _ = tcsetattr(0, TCSANOW, &settings)
        saved = nil
    }

    func forwardWindowSize() {
        if master >= 0 && isatty(1) == 1 { _ = imgboot_copy_window_size(1, master) }
    }
}

/// The signals imgboot handles while a container runs, through a signalfd. Blocked before the
/// child is cloned (the child unblocks them for itself).
final class Signals {
    let fd: Int32

    init() {
        let list: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGCHLD, SIGUSR1, SIGUSR2, 0]
        fd = list.withUnsafeBufferPointer { imgboot_signalfd($0.baseAddress) }
    }

    deinit {
        if fd >= 0 { close(fd) }
        _ = imgboot_unblock_signals()
    }

    /// The next pending signal, or nil.
    func next() -> Int32? {
        let s = imgboot_signalfd_read(fd)
        return s > 0 ? s : nil
    }
}
