import Dissect
import Mount
import Support

/// What to run, and how: everything `imgboot run` and `imgboot boot` take from the command line.
public struct ContainerSpec: Sendable {
    public enum Console: String, Sendable, CaseIterable {
        /// The container's console on this terminal, in raw mode, input and output.
        case interactive
        /// Output only; input is not read.
        case readOnly = "read-only"
        /// Nothing relayed (output is read and dropped, so the container never blocks on it).
        case passive
        /// Input and output relayed without a terminal (for pipes and files).
        case pipe
    }

    public var image: DissectedImage
    public var plan: MountPlan
    /// The machine's name (cgroup, messages, default hostname).
    public var machine: String
    /// The user chose the name: a name in use is an error. Otherwise a taken name gets a
    /// suffix (`basic-2`), so that many containers of one image run at once.
    public var machineNameIsExplicit: Bool
    /// The hostname; nil for the machine's name.
    public var hostname: String?
    /// `run`: the command and its arguments. `boot`: the arguments for the init.
    public var arguments: [String]
    /// Boot the image's init as PID 1 instead of running a command.
    public var boot: Bool
    /// `--setenv` entries, `VAR=VALUE`.
    public var environment: [String]
    public var binds: [Bind]
    /// `--tmpfs`, in the order given.
    public var temporaryFilesystems: [TemporaryFilesystem] = []
    /// `--overlay`, `--overlay-ro`.
    public var overlays: [Overlay] = []
    /// `--set-credential` and `--load-credential`, in the order given (a later one of the same
    /// ID wins).
    public var credentials: [Credential] = []

    /// A systemd credential for the container (nspawn's): a file named `id` in
    /// `/run/host/credentials`, which `$CREDENTIALS_DIRECTORY` names.
    public struct Credential: Sendable, Equatable {
        public var id: String
        public var value: [UInt8]

        public init(id: String, value: [UInt8]) {
            self.id = id
            self.value = value
        }

        /// Where the container finds its credentials.
        public static let directory = "/run/host/credentials"
        /// The largest credential (systemd's CREDENTIAL_SIZE_MAX).
        public static let maxSize = 1 << 20

        /// Splits `ID:VALUE` (`--set-credential`) or `ID:PATH` (`--load-credential`, `load`).
        /// An ID is a file name (no `/`, not `.` or `..`, no control character, at most 255
        /// bytes); VALUE is taken as it is; PATH must be absolute.
        public static func parse(_ text: String, load: Bool) -> Result<(id: String, value: String), OptionSyntaxError> {
            let option = load ? "--load-credential" : "--set-credential"
            guard let colon = text.firstIndex(of: ":") else {
                return .failure(OptionSyntaxError(option: option, text: text, reason: load ? "expected ID:PATH" : "expected ID:VALUE"))
            }
            let id = String(text[..<colon]), rest = String(text[text.index(after: colon)...])
            guard !id.isEmpty, id != ".", id != "..", !id.contains("/"), id.utf8.count <= 255,
                  !id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                return .failure(OptionSyntaxError(option: option, text: text, reason: "the ID must be a file name"))
            }
            if load && !rest.hasPrefix("/") {
                return .failure(OptionSyntaxError(option: option, text: text, reason: "the path must be absolute"))
            }
            if !load && rest.utf8.count > maxSize {
                return .failure(OptionSyntaxError(option: option, text: String(text.prefix(64)) + "…", reason: "larger than 1 MiB"))
            }
            return .success((id, rest))
        }
    }

    /// `--resolv-conf`: what the container's /etc/resolv.conf becomes.
    public var resolvConf: ResolvConf = .auto
    /// `--timezone`: what the container's /etc/localtime becomes.
    public var timezone: Timezone = .auto

    /// systemd-nspawn's `--resolv-conf=` modes: a copy of a host file written into the tree
    /// (`copy-`: unless the tree has a link there; `replace-`: whatever it has), bound read-only
    /// over the tree's file (`bind-`: imgboot binds a copy taken at start, never the host's
    /// file itself), `delete`d, left alone (`off`), or `auto`: with `--private-network` off;
    /// else replace-host where the tree is volatile (overlay, yes), bind-host otherwise.
    public enum ResolvConf: String, Sendable, CaseIterable {
        case auto, off, delete
        case copyHost = "copy-host", copyStatic = "copy-static", copyUplink = "copy-uplink", copyStub = "copy-stub"
        case replaceHost = "replace-host", replaceStatic = "replace-static", replaceUplink = "replace-uplink", replaceStub = "replace-stub"
        case bindHost = "bind-host", bindStatic = "bind-static", bindUplink = "bind-uplink", bindStub = "bind-stub"

        /// How a mode puts the host's file in place (nil for auto, off and delete).
        public enum Handling: Sendable { case copy, replace, bind }

        public var handling: Handling? {
            switch self {
            case .copyHost, .copyStatic, .copyUplink, .copyStub: .copy
            case .replaceHost, .replaceStatic, .replaceUplink, .replaceStub: .replace
            case .bindHost, .bindStatic, .bindUplink, .bindStub: .bind
            case .auto, .off, .delete: nil
            }
        }

        /// The host's file the mode takes (nil for auto, off, delete): the host's own, systemd's
        /// static one (127.0.0.53 only), or systemd-resolved's uplink or stub file.
        public var source: String? {
            switch self {
            case .copyHost, .replaceHost, .bindHost: "/etc/resolv.conf"
            case .copyStatic, .replaceStatic, .bindStatic: "/usr/lib/systemd/resolv.conf"
            case .copyUplink, .replaceUplink, .bindUplink: "/run/systemd/resolve/resolv.conf"
            case .copyStub, .replaceStub, .bindStub: "/run/systemd/resolve/stub-resolv.conf"
            case .auto, .off, .delete: nil
            }
        }
    }

    /// systemd-nspawn's `--timezone=` modes for /etc/localtime: `copy` (the host's, unless the
    /// tree has a link there), `bind` (a read-only copy over the tree's file), `symlink` (to the
    /// host's zone in the tree's own zoneinfo, when it has it), `delete`, `off`, or `auto`: a
    /// copy where the tree is volatile, bind otherwise.
    public enum Timezone: String, Sendable, CaseIterable {
        case auto, off, copy, bind, symlink, delete
    }
    public var privateNetwork: Bool
    /// `--private-users`: the container's user namespace, if any.
    public var privateUsers: PrivateUsers
    /// `boot`: how the console is relayed. `run` uses a terminal when stdin and stdout are
    /// terminals, else passes the standard streams through untouched.
    public var console: Console?
    /// `boot`: the signal that asks the init to stop when imgboot is asked to (`--kill-signal`;
    /// SIGRTMIN+3, systemd's halt, by default).
    public var killSignal: Int32?
    /// `boot`: how long the init has, from that signal, to end before it is killed
    /// (`--stop-timeout`).
    public var stopTimeout: Double
    /// `-q`: no notices of imgboot's own on stderr (the start hint, the ready line); errors
    /// are still reported.
    public var quiet: Bool

    /// The default of `stopTimeout`: as long as a systemd needs to halt with a slow unit or two,
    /// short enough that an init that ignores the signal does not keep a user or a CI job waiting
    /// for long.
    public static let defaultStopTimeout = 30.0

    /// `run --user`: the user the command runs as (a name in the image's passwd, or a UID),
    /// found by imgboot-init inside the container.
    public var user: String?
    /// `run --chdir`: where the command runs (an absolute path in the container).
    public var workingDirectory: String?

    /// A name `--user` takes: what useradd accepts in practice (letters, digits, `.`, `_`,
    /// `-`, not starting with `-` or `.`), or a UID; at most 64 bytes. It reaches
    /// imgboot-init in its argv[0], where a blank would end it.
    public static func isValidUserName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 64, first != UInt8(ascii: "-"), first != UInt8(ascii: ".") else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
        }
    }

    /// `boot`: which of the image's inits may be booted.
    public var initSelection: InitSelection = .auto
    /// Where to say that the container is up, forward its init's notifications, and report
    /// imgboot's own failure (`$NOTIFY_SOCKET`), if anywhere.
    public var notifySocket: NotifySocket?
    /// `boot --notify-ready=yes`: `READY=1` goes to `notifySocket` when the init reports it,
    /// rather than as soon as the init has been executed.
    public var notifyReady = false

    /// `boot --init`: which inits are booted.
    public enum InitSelection: String, Sendable, CaseIterable {
        /// The first of `Container.initPaths`: systemd, or else /sbin/init.
        case auto
        /// systemd only (`/usr/lib/systemd/systemd`, `/lib/systemd/systemd`); an image without
        /// it is refused (`BootError.Code.noInit`) rather than booted with /sbin/init.
        case systemd
    }

    public init(
        image: DissectedImage, plan: MountPlan, machine: String, machineNameIsExplicit: Bool = false,
        hostname: String?, arguments: [String], boot: Bool, environment: [String] = [], binds: [Bind] = [],
        privateNetwork: Bool = false, privateUsers: PrivateUsers = .no, console: Console? = nil,
        killSignal: Int32? = nil, stopTimeout: Double = ContainerSpec.defaultStopTimeout, quiet: Bool = false
    ) {
        self.image = image
        self.plan = plan
        self.machine = machine
        self.machineNameIsExplicit = machineNameIsExplicit
        self.hostname = hostname
        self.arguments = arguments
        self.boot = boot
        self.environment = environment
        self.binds = binds
        self.privateNetwork = privateNetwork
        self.privateUsers = privateUsers
        self.console = console
        self.killSignal = killSignal
        self.stopTimeout = stopTimeout
        self.quiet = quiet
    }

    /// A fresh tmpfs in the container: `--tmpfs=PATH[:OPTIONS]` (nspawn's).
    public struct TemporaryFilesystem: Sendable, Equatable {
        public var path: String
        /// tmpfs's mount options, as given; nil: none given (mode 0755, nspawn's default).
        public var options: String?

        public init(path: String, options: String?) {
            self.path = path
            self.options = options
        }

        /// Parses nspawn's syntax: PATH, then optionally `:` and the mount options; `\:` is a
        /// colon of the path, `\\` a backslash. PATH must be absolute, without `..`.
        public static func parse(_ text: String) -> Result<TemporaryFilesystem, OptionSyntaxError> {
            var path = "", rest: Substring? = nil
            var i = text.startIndex
            while i < text.endIndex {
                let c = text[i]
                if c == "\\", text.index(after: i) < text.endIndex, ":\\".contains(text[text.index(after: i)]) {
                    i = text.index(after: i)
                    path.append(text[i])
                } else if c == ":" {
                    rest = text[text.index(after: i)...]
                    break
                } else {
                    path.append(c)
                }
                i = text.index(after: i)
            }
            func failure(_ reason: String) -> Result<TemporaryFilesystem, OptionSyntaxError> {
                .failure(OptionSyntaxError(option: "--tmpfs", text: text, reason: reason))
            }
            guard path.hasPrefix("/"), path != "/" else { return failure("the path must be absolute, and not /") }
            guard !path.split(separator: "/").contains("..") else { return failure("the path may not contain \"..\"") }
            if let rest {
                guard !rest.isEmpty, !rest.split(separator: ",", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
                    return failure("expected PATH[:OPTIONS], OPTIONS a comma-separated list")
                }
            }
            return .success(TemporaryFilesystem(path: path, options: rest.map(String.init)))
        }
    }

    /// Directories stacked into one overlay in the container: `--overlay=`, `--overlay-ro=`
    /// (nspawn's).
    public struct Overlay: Sendable, Equatable {
        /// Bottom first; the top one is `upper` for a writable overlay.
        public var lower: [MountPlan.OverlayLayer]
        /// The host directory that takes the changes; nil: a tmpfs of imgboot's (an empty upper
        /// path given). Always nil for a read-only overlay, whose given upper is its top layer.
        public var upper: String?
        public var target: String
        public var readOnly: Bool

        public init(lower: [MountPlan.OverlayLayer], upper: String?, target: String, readOnly: Bool) {
            self.lower = lower
            self.upper = upper
            self.target = target
            self.readOnly = readOnly
        }

        /// Parses nspawn's syntax: `LOWER…:UPPER:DST`, colon-separated (`\:` is a colon of a
        /// path, `\\` a backslash). With only two paths, `LOWER:UPPER`, UPPER is also where the
        /// container sees the overlay. Each source is a host directory, or the tree's with a
        /// `+`; an empty UPPER (of `--overlay` only) keeps the changes in a tmpfs. UPPER must be
        /// the host's: its work directory is made beside it.
        public static func parse(_ text: String, readOnly: Bool) -> Result<Overlay, OptionSyntaxError> {
            let option = readOnly ? "--overlay-ro" : "--overlay"
            func failure(_ reason: String) -> Result<Overlay, OptionSyntaxError> {
                .failure(OptionSyntaxError(option: option, text: text, reason: reason))
            }
            var parts = splitEscaped(text)
            guard parts.count >= 2 else { return failure("expected LOWER…:UPPER:DST, or LOWER:UPPER") }
            let target: String
            if parts.count == 2 {
                guard !parts[1].isEmpty else { return failure("with two paths, UPPER is also the container's path and cannot be empty") }
                target = parts[1].hasPrefix("+") ? String(parts[1].dropFirst()) : parts[1]
            } else {
                target = parts.removeLast()
            }
            guard target.hasPrefix("/"), !target.split(separator: "/").contains("..") else {
                return failure("the container's path must be absolute, without \"..\"")
            }
            let upperText = parts.removeLast()
            var lower: [MountPlan.OverlayLayer] = []
            for source in parts + (readOnly ? [upperText] : []) {
                let inTree = source.hasPrefix("+")
                let path = inTree ? String(source.dropFirst()) : source
                guard path.hasPrefix("/") else {
                    return failure(source.isEmpty && readOnly ? "an empty UPPER (a tmpfs for the changes) is only for --overlay"
                                                             : "\"\(source)\": sources are absolute host paths, or +PATH for the image's")
                }
                guard !path.split(separator: "/").contains("..") else { return failure("\"\(source)\": a path may not contain \"..\"") }
                lower.append(inTree ? .tree(path) : .host(path))
            }
            var upper: String? = nil
            if !readOnly && !upperText.isEmpty {
                guard upperText.hasPrefix("/") else {
                    return failure(upperText.hasPrefix("+")
                        ? "UPPER must be a host directory (its work directory is made beside it), or empty for a tmpfs"
                        : "\"\(upperText)\": UPPER must be an absolute host path")
                }
                guard upperText != "/" else { return failure("UPPER cannot be /: its work directory is made beside it") }
                upper = upperText
            }
            return .success(Overlay(lower: lower, upper: upper, target: target, readOnly: readOnly))
        }

        /// Splits at colons, `\:` a colon and `\\` a backslash of a part.
        static func splitEscaped(_ text: String) -> [String] {
            var parts = [""]
            var i = text.startIndex
            while i < text.endIndex {
                let c = text[i]
                if c == "\\", text.index(after: i) < text.endIndex, ":\\".contains(text[text.index(after: i)]) {
                    i = text.index(after: i)
                    parts[parts.count - 1].append(text[i])
                } else if c == ":" {
                    parts.append("")
                } else {
                    parts[parts.count - 1].append(c)
                }
                i = text.index(after: i)
            }
            return parts
        }

        /// The work directory of a host `upper`: beside it, named for it and this run (nspawn's
        /// `.#` prefix of a temporary file), made by imgboot and removed when the container ends.
        public static func workDirectory(upper: String, run: String) -> String {
            pathBeside(upper) { ".#\($0).imgboot-work-\(run)" }
        }
    }

    /// A host path mounted into the container: `--bind=SRC[:DST[:ro]]`, `--bind-ro=SRC[:DST]`.
    public struct Bind: Sendable, Equatable {
        public var source: String
        public var target: String
        public var readOnly: Bool
        /// With a user namespace: map the host's owners into the container (the host's root is
        /// the container's root on this bind), as nspawn's `idmap` option — the default here,
        /// where user namespaces are: a directory given to the container works as it did
        /// without one. `noidmap` (false): files of the host's users show as owned by nobody in
        /// the container, and root inside writes only where anyone may. Nil: the default.
        public var idmap: Bool?

        public init(source: String, target: String, readOnly: Bool, idmap: Bool? = nil) {
            self.source = source
            self.target = target
            self.readOnly = readOnly
            self.idmap = idmap
        }

        /// Parses nspawn's syntax: `SRC[:DST[:OPTIONS]]`, OPTIONS a comma-separated list of `ro`,
        /// `rw`, `idmap`, `noidmap`; DST defaults to SRC. Both must be absolute. Nil with a
        /// reason when malformed.
        public static func parse(_ text: String, readOnly: Bool) -> Result<Bind, OptionSyntaxError> {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            func failure(_ reason: String) -> Result<Bind, OptionSyntaxError> {
                .failure(OptionSyntaxError(option: readOnly ? "--bind-ro" : "--bind", text: text, reason: reason))
            }
            guard (1...3).contains(parts.count), let source = parts.first, !source.isEmpty else {
                return failure("expected SRC[:DST[:OPTIONS]]")
            }
            let target = parts.count > 1 && !parts[1].isEmpty ? parts[1] : source
            var ro = readOnly, idmap: Bool? = nil
            if parts.count == 3 {
                for option in parts[2].split(separator: ",", omittingEmptySubsequences: false) {
                    switch option {
                    case "ro": ro = true
                    case "rw": ro = false
                    case "idmap": idmap = true
                    case "noidmap": idmap = false
                    default:
                        return failure("unknown option \"\(option)\" (ro, rw, idmap or noidmap)")
                    }
                }
            }
            guard source.hasPrefix("/"), target.hasPrefix("/") else {
                return failure("paths must be absolute")
            }
            guard !target.split(separator: "/").contains("..") else {
                return failure("the container path may not contain \"..\"")
            }
            return .success(Bind(source: source, target: target, readOnly: ro, idmap: idmap))
        }
    }

    /// A malformed `--bind`, `--bind-ro`, `--tmpfs` or credential: a usage error
    /// (swift-argument-parser prints it with the usage), not one of imgboot's own.
    public struct OptionSyntaxError: Error, CustomStringConvertible {
        public let option: String
        public let text: String
        public let reason: String
        public var description: String { "\(option)=\(text): \(reason)" }
    }

    /// The longest machine name: the kernel's limit on a hostname (HOST_NAME_MAX), which a
    /// machine's name is by default.
    public static let maxMachineNameLength = 64

    /// What a default name leaves free for the suffix that tells machines of one image apart:
    /// `-999`, the registry's last (`MachineRegistry.register`).
    public static let machineSuffixRoom = 4

    /// The machine name nspawn would give an image: its file name without directories and
    /// without a `.raw` (or `.img`) suffix, reduced to what a hostname may hold, and cut so that
    /// `reserving` more characters still fit in a hostname (by default, the registry's `-999`).
    public static func defaultMachineName(image path: String, reserving room: Int = machineSuffixRoom) -> String {
        var name = String(path.split(separator: "/").last ?? "image")
        for suffix in [".raw", ".img"] where name.hasSuffix(suffix) && name.count > suffix.count {
            name.removeLast(suffix.count)
        }
        let allowed = name.unicodeScalars.map { c -> Character in
            (("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "_" || c == ".")
                ? Character(c) : "-"
        }
        let cleaned = String(allowed.prefix(max(1, maxMachineNameLength - room))).trimmingCharacters(in: "-.")
        return cleaned.isEmpty ? "image" : cleaned
    }

    /// Whether `name` may name a machine (and be its hostname).
    public static func isValidMachineName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= maxMachineNameLength && !name.hasPrefix("-") && !name.hasPrefix(".") && name != ".." &&
            name.unicodeScalars.allSatisfy { c in
                ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "_" || c == "."
            }
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}
