#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Mount
import Support

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
    /// Which of the container's standard streams are the pty (bit 0 stdin, 1 stdout, 2 stderr).
    let streams: Int32
    /// Where the console's output goes here.
    let outputFD: Int32

    private init(mode: ContainerSpec.Console?, master: Int32, slave: Int32, terminalType: String, streams: Int32, outputFD: Int32) {
        self.mode = mode
        self.master = master
        self.slave = slave
        self.terminalType = terminalType
        self.streams = streams
        self.outputFD = outputFD
    }

    deinit {
        restore()
        closeSlave()
        if master >= 0 { close(master) }
    }

    /// `boot`: a pty in every mode, as the init's console and standard streams. `run`, `enter`:
    /// a pty for exactly those standard streams that are terminals here (input relayed in raw
    /// mode when stdin is one); pipes and files pass through untouched. A terminal of the host
    /// itself is never handed to the container, where TIOCSTI could type into it.
    static func open(boot: Bool, requested: ContainerSpec.Console?, subject image: String) throws(BootError) -> Console {
        let ttys: [Bool] = [isatty(0) == 1, isatty(1) == 1, isatty(2) == 1]
        let hostTerm = getenv("TERM").map { String(cString: $0) } ?? "vt220"
        let mode: ContainerSpec.Console?
        let streams: Int32
        let outputFD: Int32
        if boot {
            mode = requested ?? (ttys[0] && ttys[1] ? .interactive : .readOnly)
            streams = 7
            outputFD = 1
        } else {
            streams = (ttys[0] ? 1 : 0) | (ttys[1] ? 2 : 0) | (ttys[2] ? 4 : 0)
            mode = streams == 0 ? nil : (ttys[0] ? .interactive : .readOnly)
            outputFD = ttys[1] ? 1 : 2
        }
        try refuseDirectoryStreams(passed: boot ? 0 : 7 & ~streams, subject: image)
        guard let mode else {
            return Console(mode: nil, master: -1, slave: -1, terminalType: "dumb", streams: 0, outputFD: 1)
        }

        var master: Int32 = -1, slave: Int32 = -1
        var name = [CChar](repeating: 0, count: 128)
        guard imgboot_open_pty(&master, &slave, &name, UInt(name.count)) == 0 else {
            throw BootError(image: image, "open a pseudo-terminal", errno: errno)
        }
        let relayedToTerminal = isatty(outputFD) == 1 && mode != .passive
        let console = Console(mode: mode, master: master, slave: slave,
                              terminalType: relayedToTerminal ? hostTerm : "vt220", streams: streams, outputFD: outputFD)
        console.slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        console.forwardWindowSize()
        if mode == .interactive && ttys[0] { console.makeRaw() }
        return console
    }

    /// The standard streams a container gets as they are (`passed`, a bit per stream) must not
    /// be directories: through one (`/proc/self/fd/0/..`) the container would walk the host's
    /// whole filesystem, past its root. (A file, a pipe, a socket or a device leads nowhere but
    /// to itself.)
    static func refuseDirectoryStreams(passed: Int32, subject: String) throws(BootError) {
        for fd: Int32 in 0...2 where passed & (1 << fd) != 0 {
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
            let path = n > 0 ? " (\(printable(bytes: buffer[0..<n].map { UInt8(bitPattern: $0) })))" : ""
            let stream = ["standard input", "standard output", "standard error"][Int(fd)]
            throw BootError(image: subject, "\(stream) is a directory of the host\(path): the container would reach the host's files through it; give it a file, a pipe or a terminal")
        }
    }

    /// Makes the pty the container's: owned by its root and its `tty` group (5), as the host
    /// numbers them in `users` — otherwise, in a user namespace, /dev/console would belong to
    /// nobody and root inside could not open it.
    func giveSlave(to users: UserRange, subject: String) throws(BootError) {
        guard slave >= 0 else { return }
        guard fchown(slave, users.host(0), users.host(5)) == 0 else {
            throw BootError(image: subject, "give the console \(slavePath) to the container's root", errno: errno)
        }
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

    /// The terminal's size, or 80x24 when the console goes to a pipe or file (`boot` under
    /// smoke or CI): a pty is born 0x0, and programs in the container would then wrap their
    /// lines at odd places or draw for a screen of no size.
    func forwardWindowSize() {
        guard master >= 0 else { return }
        for fd in [outputFD, 0] where isatty(fd) == 1 {
            _ = imgboot_copy_window_size(fd, master)
            return
        }
        _ = imgboot_set_window_size(master, Self.defaultRows, Self.defaultColumns)
    }

    static let defaultRows: UInt16 = 24
    static let defaultColumns: UInt16 = 80
}
