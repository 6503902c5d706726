import ArgumentParser
import Boot
import Dissect
import Mount
import Support
#if canImport(Glibc)
import Glibc
#endif

/// The options `run`, `boot` and `smoke` share, named as systemd-nspawn names them. (What
/// only `run` and `boot` take is in `MachineOptions`: smoke names its machines itself.)
struct BootOptions: ParsableArguments {
    @OptionGroup var layering: LayeringOptions

    @Option(help: ArgumentHelp("The container's hostname (default: the machine's name).", valueName: "name"))
    var hostname: String?

    @Option(name: [.customLong("setenv"), .customShort("E", allowingJoined: true)],
            help: ArgumentHelp("Set an environment variable in the container (repeatable).", valueName: "VAR=VALUE"))
    var environment: [String] = []

    @Option(name: .customLong("bind"),
            help: ArgumentHelp("Bind-mount a host path into the container (repeatable; OPTIONS: ro, rw, idmap, noidmap).",
                               valueName: "SRC[:DST[:OPTIONS]]"),
            completion: .file())
    var binds: [String] = []

    @Option(name: .customLong("bind-ro"), help: ArgumentHelp("Bind-mount a host path read-only (repeatable).", valueName: "SRC[:DST[:OPTIONS]]"),
            completion: .file())
    var readOnlyBinds: [String] = []

    @Option(name: .customLong("tmpfs"),
            help: ArgumentHelp("Mount a fresh tmpfs on PATH in the container (repeatable; default mode 0755; \\: is a colon of PATH).",
                               valueName: "PATH[:OPTIONS]"))
    var temporaryFilesystems: [String] = []

    @Option(name: .customLong("overlay"),
            help: ArgumentHelp(
                "Mount host directories (+PATH: the image's) stacked at DST, changes going to UPPER (empty: a tmpfs) (repeatable).",
                valueName: "LOWER…:UPPER:DST"),
            completion: .file())
    var overlays: [String] = []

    @Option(name: .customLong("overlay-ro"),
            help: ArgumentHelp("As --overlay, read-only: UPPER is the top layer (repeatable).", valueName: "LOWER…:UPPER:DST"),
            completion: .file())
    var readOnlyOverlays: [String] = []

    @Option(name: .customLong("set-credential"),
            help: ArgumentHelp("Give the container a systemd credential ID with this value (repeatable; nspawn's).", valueName: "ID:VALUE"))
    var setCredentials: [String] = []

    @Option(name: .customLong("load-credential"),
            help: ArgumentHelp("Give the container a systemd credential ID read from the host's file PATH (repeatable).", valueName: "ID:PATH"),
            completion: .file())
    var loadCredentials: [String] = []

    @Option(help: ArgumentHelp(
        "What the container's /etc/resolv.conf becomes (nspawn's modes): also copy-, replace- and bind-static, -uplink and -stub.",
        valueName: "mode"))
    var resolvConf: ContainerSpec.ResolvConf = .auto

    @Option(help: ArgumentHelp("What the container's /etc/localtime becomes (nspawn's modes).", valueName: "mode"))
    var timezone: ContainerSpec.Timezone = .auto

    @Flag(help: "Give the container its own network with only lo (up).")
    var privateNetwork = false

    @Option(help: ArgumentHelp(
        "The container's users (default: pick); also UID[:COUNT], that range of host IDs:",
        valueName: "mode"))
    var privateUsers: PrivateUsers?

    @Flag(name: .customShort("U"), help: "Short for --private-users=pick.")
    var pickUsers = false

    func validate() throws {
        try layering.validate()
        if let hostname, !ContainerSpec.isValidMachineName(hostname) {
            throw ValidationError("--hostname=\(hostname): a hostname has 1 to 64 letters, digits, '-', '_' or '.'")
        }
        for entry in environment {
            let name = entry.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            guard entry.contains("="), !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "\0" }) else {
                throw ValidationError("--setenv=\(entry): expected VAR=VALUE")
            }
        }
        _ = try parsedBinds()
        _ = try parsedTemporaryFilesystems()
        _ = try parsedOverlays()
        _ = try parsedCredentials()
        if pickUsers, let privateUsers, privateUsers != .pick {
            throw ValidationError("-U with --private-users=\(privateUsers): -U means --private-users=pick")
        }
    }

    /// `--private-users`, `-U`, or the default: a user namespace with a range of its own.
    var users: PrivateUsers { privateUsers ?? .pick }

    func parsedBinds() throws -> [ContainerSpec.Bind] {
        try (binds.map { ($0, false) } + readOnlyBinds.map { ($0, true) }).map { text, readOnly in
            switch ContainerSpec.Bind.parse(text, readOnly: readOnly) {
            case .success(let bind): return bind
            case .failure(let error): throw ValidationError("\(error)")
            }
        }
    }

    /// The credentials, `--load-credential`'s files read only when `read` (at the start of a
    /// run, not while validating the command line).
    func parsedCredentials(read: Bool = false) throws -> [ContainerSpec.Credential] {
        try (setCredentials.map { ($0, false) } + loadCredentials.map { ($0, true) }).map { text, load in
            switch ContainerSpec.Credential.parse(text, load: load) {
            case .success(let (id, value)):
                guard load else { return ContainerSpec.Credential(id: id, value: Array(value.utf8)) }
                return ContainerSpec.Credential(id: id, value: read ? try Self.readCredential(value, option: text) : [])
            case .failure(let error): throw ValidationError("\(error)")
            }
        }
    }

    /// A `--load-credential` file of the host's: a regular file of at most 1 MiB.
    static func readCredential(_ path: String, option: String) throws -> [UInt8] {
        let subject = "--load-credential=\(option)"
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw CommandError(subject, "cannot open it", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw CommandError(subject, "not a regular file") }
        guard st.st_size <= ContainerSpec.Credential.maxSize else { throw CommandError(subject, "larger than 1 MiB") }
        do {
            return try readAll(fd, limit: ContainerSpec.Credential.maxSize)
        } catch {
            throw CommandError(subject, "cannot read it", errno: error.code)
        }
    }

    func parsedTemporaryFilesystems() throws -> [ContainerSpec.TemporaryFilesystem] {
        try temporaryFilesystems.map { text in
            switch ContainerSpec.TemporaryFilesystem.parse(text) {
            case .success(let t): return t
            case .failure(let error): throw ValidationError("\(error)")
            }
        }
    }

    func parsedOverlays() throws -> [ContainerSpec.Overlay] {
        try (overlays.map { ($0, false) } + readOnlyOverlays.map { ($0, true) }).map { text, readOnly in
            switch ContainerSpec.Overlay.parse(text, readOnly: readOnly) {
            case .success(let overlay): return overlay
            case .failure(let error): throw ValidationError("\(error)")
            }
        }
    }

    /// The overlays with each UPPER as the host resolves it (its work directory goes beside the
    /// real directory, and is removed from there).
    func resolvedOverlays() throws -> [ContainerSpec.Overlay] {
        try parsedOverlays().map { overlay in
            guard let upper = overlay.upper else { return overlay }
            guard let real = realpath(upper, nil) else {
                throw CommandError("--overlay upper directory \(upper)", "cannot resolve it", errno: errno)
            }
            defer { free(real) }
            var resolved = overlay
            resolved.upper = String(cString: real)
            guard resolved.upper != "/" else { throw CommandError("--overlay upper directory \(upper)", "cannot be /: its work directory is made beside it") }
            return resolved
        }
    }

    /// These options as a command line, for the `boot`/`run` processes `smoke` starts.
    func passthroughArguments() -> [String] {
        var args: [String] = []
        if let volatile = layering.volatile { args.append("--volatile=\(volatile.rawValue)") }
        if layering.readOnly { args.append("--read-only") }
        if let hostname { args.append("--hostname=\(hostname)") }
        args += environment.map { "--setenv=\($0)" }
        args += binds.map { "--bind=\($0)" }
        args += readOnlyBinds.map { "--bind-ro=\($0)" }
        args += temporaryFilesystems.map { "--tmpfs=\($0)" }
        args += overlays.map { "--overlay=\($0)" }
        args += readOnlyOverlays.map { "--overlay-ro=\($0)" }
        args += setCredentials.map { "--set-credential=\($0)" }
        args += loadCredentials.map { "--load-credential=\($0)" }
        if resolvConf != .auto { args.append("--resolv-conf=\(resolvConf.rawValue)") }
        if timezone != .auto { args.append("--timezone=\(timezone.rawValue)") }
        if privateNetwork { args.append("--private-network") }
        args.append("--private-users=\(users)")
        return args
    }

    /// Dissects the image and makes the container's spec (default mode: overlay).
    func spec(image: String, machine options: MachineOptions, arguments: [String], boot: Bool,
              console: ContainerSpec.Console?, logger: Logger) throws -> ContainerSpec {
        let machine = options.machine
        let start = monotonicSeconds()
        let dissected = try DissectedImage.dissect(path: image, logger: logger)
        logger.debug("\(stageLine("dissect", since: start))")
        for warning in dissected.tableWarnings { logger.warning("\(image): \(warning)") }
        let plan = try MountPlan.make(for: dissected, options: layering.options(default: .overlay))
        var spec = ContainerSpec(
            image: dissected, plan: plan, machine: machine ?? ContainerSpec.defaultMachineName(image: image),
            machineNameIsExplicit: machine != nil, hostname: hostname, arguments: arguments,
            boot: boot, environment: environment, binds: try parsedBinds(), privateNetwork: privateNetwork,
            privateUsers: users, console: console, quiet: options.quiet)
        spec.temporaryFilesystems = try parsedTemporaryFilesystems()
        spec.overlays = try resolvedOverlays()
        spec.credentials = try parsedCredentials(read: true)
        spec.resolvConf = resolvConf
        spec.timezone = timezone
        return spec
    }
}

/// What only `run` and `boot` take: a machine of one's own naming, a quiet start, a dry run.
struct MachineOptions: ParsableArguments {
    @Option(name: [.customLong("machine"), .customShort("M", allowingJoined: true)],
            help: ArgumentHelp("The machine's name (default: the image's file name without .raw).", valueName: "name"))
    var machine: String?

    @Flag(name: .shortAndLong,
          help: "No notices of imgboot's own (the Ctrl-] hint, the ready line, warnings); errors still.")
    var quiet = false

    @Flag(help: "Print the mount plan and do nothing.")
    var dryRun = false

    func validate() throws {
        if let machine, !ContainerSpec.isValidMachineName(machine) {
            throw ValidationError("--machine=\(machine): a machine name has 1 to 64 letters, digits, '-', '_' or '.'")
        }
    }
}

import Logging

extension PrivateUsers: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
    public static var allValueStrings: [String] { ["pick", "no", "identity"] }
    public static var allValueDescriptions: [String: String] {
        [
            "pick": "a free range of 65536 host UIDs and GIDs: root inside is nobody outside",
            "no": "no user namespace: root inside is root outside",
            "identity": "the host's IDs, with capabilities over the container's own namespaces only",
        ]
    }
}

extension ContainerSpec.Console: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [
            "interactive": "input and output on this terminal, in raw mode (default with a terminal)",
            "read-only": "the output; input is not read (default otherwise)",
            "passive": "nothing",
            "pipe": "input and output, without a terminal",
        ]
    }
}

extension ContainerSpec.InitSelection: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [
            "auto": "systemd, else /sbin/init (default)",
            "systemd": "only systemd; an image without it is an error (X_IMGBOOT_ERROR=no-init)",
        ]
    }
}

/// Runs `body`; when imgboot itself fails (its one-line errors, status 125), says so on the
/// notify socket too, so that whoever started imgboot learns why without reading stderr.
func reportingFailure(to notify: NotifySocket?, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as IMGBootError {
        notify?.sendFailure(error)
        throw error
    }
}

/// nspawn's booleans: `yes`, `no` (and `true`/`false`, `on`/`off`, `1`/`0`).
enum YesNo: String, ExpressibleByArgument, Sendable {
    case yes, no

    init?(argument: String) {
        switch argument {
        case "yes", "true", "on", "1": self = .yes
        case "no", "false", "off", "0": self = .no
        default: return nil
        }
    }

    static var allValueStrings: [String] { ["yes", "no"] }
    static var allValueDescriptions: [String: String] {
        ["yes": "when the init reports READY=1", "no": "as soon as the init runs (default)"]
    }
}

extension ContainerSpec.ResolvConf: ExpressibleByArgument {
    /// The modes listed in the help: the host's and delete, off, auto; the others named in the
    /// option's own line.
    public static var allValueDescriptions: [String: String] {
        [
            "auto": "off with --private-network; else replace-host where the tree is volatile, bind-host otherwise",
            "off": "the image's own, untouched",
            "copy-host": "a copy of the host's, unless the image has a link there",
            "replace-host": "a copy of the host's, whatever the image has there",
            "bind-host": "a read-only copy of the host's bound over the image's file",
            "delete": "removed (from the overlay, or the image with --volatile=no)",
        ]
    }

    public static var allValueStrings: [String] { ["auto", "off", "copy-host", "replace-host", "bind-host", "delete"] }
}

extension ContainerSpec.Timezone: ExpressibleByArgument {
    public static var allValueDescriptions: [String: String] {
        [
            "auto": "copy where the tree is volatile, bind otherwise",
            "off": "the image's own, untouched",
            "copy": "a copy of the host's /etc/localtime, unless the image has a link there",
            "bind": "a read-only copy of the host's bound over the image's file",
            "symlink": "a link to the host's zone in the image's /usr/share/zoneinfo, if it has it",
            "delete": "removed",
        ]
    }
}
