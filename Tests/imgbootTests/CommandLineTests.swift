import Foundation
import Testing

/// The command line as a user meets it (issue 13): help with examples, each option listed once
/// and only where it is accepted, a suggestion for a mistyped command, one-line refusals with
/// status 125. None of this needs root: what would need it is refused as nobody, after the
/// parsing it is about.
struct CommandLineTests {
    static let commands = ["inspect", "mount", "umount", "run", "boot", "smoke", "list", "enter", "stop",
                           "ls", "copy-from", "copy-to", "archive"]

    /// `imgboot COMMAND --help` (or `imgboot --help` for ""), which must succeed.
    static func help(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let out = try Harness.imgboot((command.isEmpty ? [] : [command]) + ["--help"])
        #expect(out.status == 0, "\(out.stderr)", sourceLocation: sourceLocation)
        return out.stdout
    }

    /// The options each command offers, as swift-argument-parser describes them
    /// (`--experimental-dump-help`, what the manual pages are made from): names with their
    /// dashes, and whether each takes a value.
    static func offeredOptions(_ command: String) throws -> [(names: [String], takesValue: Bool)] {
        let out = try Harness.imgboot(["--experimental-dump-help"])
        let root = try #require(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        let tool = try #require(root["command"] as? [String: Any])
        let subcommands = try #require(tool["subcommands"] as? [[String: Any]])
        let info = try #require(subcommands.first { $0["commandName"] as? String == command })
        return (info["arguments"] as? [[String: Any]] ?? []).compactMap { argument in
            guard let kind = argument["kind"] as? String, kind != "positional" else { return nil }
            let names = (argument["names"] as? [[String: String]] ?? []).compactMap { name -> String? in
                guard let n = name["name"] else { return nil }
                return name["kind"] == "short" ? "-" + n : "--" + n
            }
            return (names, kind == "option")
        }
    }

    // MARK: - Help

    /// Every command's help has EXAMPLES, and they are examples of that command.
    @Test(arguments: [""] + commands)
    func helpHasExamples(_ command: String) throws {
        let help = try Self.help(command)
        let examples = try #require(help.range(of: "\nEXAMPLES:\n"), "no EXAMPLES in: \(help)")
        let lines = help[examples.upperBound...].split(separator: "\n", omittingEmptySubsequences: false)
            .prefix { $0.hasPrefix("  ") }
        #expect(lines.count >= 1)
        for line in lines {
            let start = "  imgboot " + command
            #expect(line.hasPrefix(command.isEmpty ? start : start + " ") || line == start, "\(line)")
            // Fits a terminal, and the manual page (indented by 5) without wrapping.
            #expect(line.count <= 72, "too long: \(line)")
        }
    }

    /// --log-level's values appear once, in swift-argument-parser's own list; the other options
    /// with a fixed set of values list each value once, with what it means, and no second list.
    @Test(arguments: commands)
    func valuesAreListedOnce(_ command: String) throws {
        let full = try Self.help(command)
        let options = try #require(full.range(of: "\nOPTIONS:\n"), "no OPTIONS in: \(full)")
        let help = String(full[options.upperBound...])
        #expect(help.components(separatedBy: "--log-level <level>").count == 2, "\(help)")
        #expect(help.components(separatedBy: "critical").count == 2, "log levels listed more than once: \(help)")
        #expect(help.components(separatedBy: "(values: ").count == 2, "a second list of values: \(help)")
        for (option, value) in [("--volatile <mode>", "overlay"), ("--private-users <mode>", "identity"), ("--console <mode>", "passive"),
                               ("--json <format>", "pretty")]
        where help.contains(option) {
            let listed = help.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix(value + " ") }
            #expect(listed.count == 1 && listed[0].contains(" - "), "\(option): \(listed)")
        }
    }

    /// What smoke refuses, it does not offer: a machine name of one's own, a dry run. Given
    /// anyway, they are unknown options (125, the usage).
    @Test func smokeOffersNoMachineNameOrDryRun() throws {
        let help = try Self.help("smoke")
        for option in ["--machine", "-M", "--dry-run", "--quiet", "-q"] {
            #expect(!help.contains(option + " ") && !help.contains(option + ","), "smoke's help offers \(option)")
        }
        for option in ["--machine=mine", "--dry-run"] {
            let out = try Harness.imgboot(["smoke", option, "basic.raw"])
            #expect(out.status == 125)
            #expect(out.stderr.hasPrefix("Error: Unknown option '\(option.split(separator: "=")[0])'\n"), "\(out.stderr)")
        }
    }

    /// Every option a command offers, it accepts: given with a valid value (as a separate word,
    /// which also checks that imgboot knows it takes one), the command line parses, and the
    /// command fails only for what nobody lacks (root) or the image that is not there.
    @Test(arguments: ["run", "boot", "smoke", "enter", "stop", "mount", "inspect", "ls", "copy-from", "copy-to", "archive"])
    func everyOfferedOptionIsAccepted(_ command: String) throws {
        let values = [
            "--log-level": "error", "--hostname": "h", "--setenv": "A=1", "-E": "A=1", "--bind": "/tmp", "--bind-ro": "/tmp",
            "--private-users": "pick", "--machine": "m", "-M": "m", "--console": "passive", "--check": "true",
            "--timeout": "5", "--jobs": "1", "--junit": "/nonexistent/junit.xml",
            "--ready-timeout": "5", "--check-timeout": "5", "--kill-signal": "SIGRTMIN+3", "--stop-timeout": "5",
            "--notify-ready": "yes", "--init": "auto", "--user": "alice", "-u": "alice", "--chdir": "/tmp", "--tmpfs": "/mnt", "--overlay": "/tmp::/mnt", "--overlay-ro": "/tmp:/var/tmp:/mnt", "--resolv-conf": "off", "--timezone": "off", "--set-credential": "a:b", "--load-credential": "a:/etc/hostname", "--shard": "1/2",
        ]
        let positionals = ["run": ["/nonexistent.raw"], "boot": ["/nonexistent.raw"], "smoke": ["/nonexistent.raw"],
                           "enter": ["m"], "stop": ["m"], "mount": ["/nonexistent.raw", "/mnt"], "inspect": ["/nonexistent.raw"],
                           "ls": ["/nonexistent.raw"], "copy-from": ["/nonexistent.raw", "/etc/os-release", "/tmp/x"],
                           "copy-to": ["/nonexistent.raw", "/etc/motd"], "archive": ["/nonexistent.raw", "/tmp/x.tar"]]
        for option in try Self.offeredOptions(command) {
            for name in option.names where !["--help", "-h", "--version"].contains(name) {
                var words = [name]
                if name == "--volatile" || (command == "inspect" && name == "--json") {
                    words = [name == "--json" ? "--json=pretty" : "--volatile=state"]  // a mode is given with =
                } else if option.takesValue {
                    words.append(try #require(values[name], "no value known for \(command) \(name)"))
                }
                let out = Store.asNobody([Harness.binary, command] + words + (positionals[command] ?? []))
                #expect(out.status == 125, "\(command) \(words): \(out.status)")
                #expect(!out.stderr.contains("Error:") && !out.stderr.contains("Usage:"), "\(command) \(words): \(out.stderr)")
                #expect(out.stderr.contains("needs root") || out.stderr.contains("/nonexistent.raw: no such file"),
                        "\(command) \(words): \(out.stderr)")
            }
        }
    }

    // MARK: - Mistakes

    struct Typo: Sendable, CustomTestStringConvertible {
        var typed: String
        var message: String
        var testDescription: String { typed }
    }

    static let typos: [Typo] = [
        .init(typed: "inspec", message: #"imgboot: unknown command "inspec"; did you mean "inspect"?"#),
        .init(typed: "mout", message: #"imgboot: unknown command "mout"; did you mean "mount"?"#),
        .init(typed: "sotp", message: #"imgboot: unknown command "sotp"; did you mean "stop"?"#),
        .init(typed: "sm", message: #"imgboot: unknown command "sm"; did you mean "smoke"?"#),
        .init(typed: "shell", message: #"imgboot: unknown command "shell"; did you mean "enter"?"#),
        .init(typed: "unmount", message: #"imgboot: unknown command "unmount"; did you mean "umount"?"#),
        .init(typed: "frobnicate", message: #"imgboot: unknown command "frobnicate" (commands: inspect, mount, umount, run, boot, smoke, list, enter, stop, ls, copy-from, copy-to, archive; see imgboot --help)"#),
        .init(typed: "disk\u{1b}[2J.raw", message: #"imgboot: unknown command "disk\x1b[2J.raw" (commands: inspect, mount, umount, run, boot, smoke, list, enter, stop, ls, copy-from, copy-to, archive; see imgboot --help)"#),
    ]

    /// A mistyped command: one line, the nearest command (or the list), 125, nothing on stdout.
    @Test(arguments: typos)
    func unknownCommand(_ typo: Typo) throws {
        for arguments in [[typo.typed, "disk.raw"], ["help", typo.typed]] {
            let out = try Harness.imgboot(arguments)
            #expect(out.status == 125)
            #expect(out.stderr == typo.message + "\n")
            #expect(out.stdout.isEmpty)
        }
    }

    /// A timeout that is not a positive number of seconds, negative ones included (not taken for
    /// an option): one reason, with the usage, 125.
    @Test(arguments: [["stop", "--timeout", "-1", "m"], ["stop", "--timeout=0", "m"], ["smoke", "--timeout", "-5", "a.raw"],
                      ["smoke", "--timeout", "nan", "a.raw"], ["smoke", "--timeout", "inf", "a.raw"]])
    func timeoutMustBePositive(_ arguments: [String]) throws {
        let out = try Harness.imgboot(arguments)
        #expect(out.status == 125)
        let value = arguments.last { $0 != "m" && $0 != "a.raw" }.map { $0.replacingOccurrences(of: "--timeout=", with: "") } ?? ""
        let shown = Double(value).map { "\($0)" } ?? value
        #expect(out.stderr.hasPrefix("Error: --timeout \(shown): must be a positive number of seconds\n"), "\(out.stderr)")
        #expect(out.stderr.contains("Usage: imgboot \(arguments[0])"))
        #expect(out.stdout.isEmpty)
    }

    /// Without root, each command says what it needs root for: containers need loop devices,
    /// mounts and namespaces; enter, stop and list only a machine's and imgboot's state.
    @Test(arguments: [
        (["enter", "m"], "imgboot: m: entering a machine needs root (the machine's namespaces, and imgboot's state)"),
        (["stop", "m"], "imgboot: m: stopping a machine needs root (the machine's processes, and imgboot's state)"),
        (["list"], "imgboot: /run/imgboot: listing machines needs root (imgboot's state there is root's alone)"),
        (["smoke", "a.raw"], "imgboot: a.raw: smoke-testing needs root (loop devices, mounts and namespaces)"),
    ])
    func nonRootMessageFitsTheCommand(_ arguments: [String], _ message: String) throws {
        let out = Store.asNobody([Harness.binary] + arguments)
        #expect(out.status == 125)
        #expect(out.stderr == message + "\n")
    }

    /// imgboot's own options after a command given without `--` go to the command, and a note
    /// says so; not with `--` (the user said where the command starts), not with -q.
    @Test func optionsAfterACommandGetANote() throws {
        let image = try Harness.fixture("basic")
        let note = "imgboot: note: --machine=x follows the command ls and is passed to it: imgboot's options go before the command (and -- before the command says where it starts)\n"
        let noted = try Harness.imgboot(["run", "--dry-run", image, "ls", "--machine=x"])
        #expect(noted.status == 0, "\(noted.stderr)")
        #expect(noted.stderr == note)
        #expect(noted.stdout.contains("attach partition 1"))
        for arguments in [["run", "--dry-run", image, "--", "ls", "--machine=x"], ["run", "-q", "--dry-run", image, "ls", "--machine=x"],
                          ["run", "--dry-run", image, "ls", "--color=never", "--help"]] {
            let out = try Harness.imgboot(arguments)
            #expect(out.status == 0 && out.stderr.isEmpty, "\(arguments): \(out.stderr)")
        }
    }

    /// -P and --console say the same thing or are refused together; -U and --private-users too.
    @Test func conflictingShortAndLongForms() throws {
        let out = try Harness.imgboot(["boot", "-P", "--console=passive", "/nonexistent.raw"])
        #expect(out.status == 125)
        #expect(out.stderr.hasPrefix("Error: -P with --console=passive: -P means --console=pipe\n"), "\(out.stderr)")
        let same = Store.asNobody([Harness.binary, "boot", "-P", "--console=pipe", "/nonexistent.raw"])
        #expect(same.stderr == "imgboot: /nonexistent.raw: no such file\n", "\(same.stderr)")
    }
}

/// The same, with containers: nspawn's habits (issue 13) do what nspawn's users expect.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and namespaces"))
struct CommandLineContainerTests {
    /// `imgboot run IMAGE ls -l /` runs `ls -l /`: the same output and status as the `--` form.
    /// imgboot's options still come before or after IMAGE; after the command they are its.
    @Test func commandWithoutDashDash() throws {
        let image = try ImageCopy("basic")
        let plain = try Harness.imgboot(["run", image.path, "ls", "-l", "/etc"])
        image.leftovers.expectNone(imageUnchanged: true)
        let dashed = try Harness.imgboot(["run", image.path, "--", "ls", "-l", "/etc"])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(plain.status == 0 && dashed.status == 0, "\(plain.stderr) \(dashed.stderr)")
        #expect(plain.stdout == dashed.stdout)
        #expect(plain.stdout.contains(" imgboot-fixture\n"), "\(plain.stdout)")

        let out = try Harness.imgboot(["run", "--hostname=before", image.path, "--setenv=V=after", "sh", "-c",
                                       #"echo "$(hostname) $V:" "$@""#, "sh", "-x", "--hostname=mine", "--", "-M", "z"])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "before after: -x --hostname=mine -- -M z\n")
        #expect(out.stderr.hasPrefix("imgboot: note: --hostname=mine follows the command sh"), "\(out.stderr)")
    }

    /// -M NAME is --machine=NAME (joined too: -MNAME), -E VAR=VALUE is --setenv: the machine's
    /// name is its hostname, the variable is in the command's environment.
    @Test func shortFormsAreTheLongOnes() throws {
        let image = try ImageCopy("basic")
        let script = ["sh", "-c", "echo $(hostname) $A $B"]
        var outputs: [String] = []
        for options in [["-M", image.machine + "-m", "-E", "A=1", "-EB=2"],
                        ["-M\(image.machine)-m", "-E", "A=1", "--setenv", "B=2"],
                        ["--machine=\(image.machine)-m", "--setenv=A=1", "--setenv=B=2"]] {
            let out = try Harness.imgboot(["run"] + options + [image.path] + script)
            image.leftovers.expectNone(imageUnchanged: true)
            #expect(out.status == 0, "\(options): \(out.stderr)")
            outputs.append(out.stdout)
        }
        #expect(outputs == Array(repeating: "\(image.machine)-m 1 2\n", count: 3))
    }

    /// `run -b` boots, as `boot`: the same refusal for an image without an init, word for word;
    /// and with an init (busybox's), -P is --console=pipe: what is piped in reaches its shell.
    @Test func runDashBIsBootAndDashPIsPipe() throws {
        let image = try ImageCopy("basic")
        for options in [["boot", "-P"], ["boot", "--console=pipe"], ["run", "-b", "-P"], ["run", "-bP"]] {
            // busybox's init without an inittab: rcS (missing), then a shell on the console
            // once Enter is pressed; `poweroff -f` ends the container as a poweroff (0).
            let out = try Harness.imgboot(options + [image.path], stdin: "\necho piped-$((6*7))\npoweroff -f\n")
            image.leftovers.expectNone(imageUnchanged: true)
            #expect(out.status == 0, "\(options): \(out.status) \(out.stderr)")
            #expect(out.stdout.contains("\npiped-42"), "\(options): \(out.stdout)")
        }

        try Hardening.debugfs(image.path, ["rm /usr/sbin/init"])
        let hash = Harness.sha256(image.path)
        let boot = try Harness.imgboot(["boot", image.path])
        let run = try Harness.imgboot(["run", "-b", image.path])
        #expect(boot.status == 125 && run.status == 125)
        #expect(boot.stderr == "imgboot: \(image.path): no init to boot: none of /usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init is in the image (use `imgboot run` to run a command)\n")
        #expect(run.stderr == boot.stderr)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// A container without a command runs root's login shell from the image's /etc/passwd,
    /// split into words; /bin/sh when passwd, root's entry or the program it names is missing.
    /// `enter` takes the same from the running machine.
    @Test(arguments: [
        ("root:x:0:0:root:/root:/bin/ash\n", "/bin/ash"),
        ("root:x:0:0:root:/root:/usr/bin/busybox sh\n", "sh"),
        ("root:x:0:0:root:/root:/bin/bash\n", "/bin/sh"),
        ("root:x:0:0:root:/root:\n", "/bin/sh"),
        ("nobody:x:65534:65534::/:/bin/ash\n", "/bin/sh"),
        ("", "/bin/sh"),
    ])
    func defaultShellIsRootsLoginShell(_ passwd: String, _ zeroth: String) throws {
        let image = try ImageCopy("basic")
        if passwd.isEmpty {
            try Hardening.debugfs(image.path, ["rm /etc/passwd"])
        } else {
            let file = image.directory + "/passwd"
            try passwd.write(toFile: file, atomically: false, encoding: .utf8)
            try Hardening.debugfs(image.path, ["cd /etc", "rm passwd", "write \(file) passwd", "sif passwd mode 0100644"])
        }
        let hash = Harness.sha256(image.path)
        // The shell reads its commands from stdin (not a terminal): $0 is how it was started.
        let out = try Harness.imgboot(["run", image.path], stdin: "echo \"$0\"; readlink /proc/$$/exe\n")
        image.leftovers.expectNone(imageUnchanged: false)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "\(zeroth)\n/usr/bin/busybox\n", "\(out.stderr)")

        let running = try BackgroundProcess([Harness.binary, "run", image.path, "sleep", "1000"])
        defer { running.kill() }
        _ = try MachinesTests.waitUntilListed(image.machine, running)
        let entered = try Harness.imgboot(["enter", image.machine], stdin: "echo \"$0\"\n")
        #expect(entered.status == 0, "\(entered.stderr)")
        #expect(entered.stdout == "\(zeroth)\n")
        let dashE = try Harness.imgboot(["enter", "-E", "V=entered", image.machine, "sh", "-c", "echo $V"])
        #expect(dashE.stdout == "entered\n", "\(dashE.stderr)")
        running.signal(SIGTERM)
        #expect(running.exitStatus(within: MachinesTests.limit) != nil)
        image.leftovers.expectNone(imageUnchanged: false)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// On an interactive console, before anything of the container's, nspawn's hint about
    /// Ctrl-] (under script(1): a terminal); not with -q, not without a terminal.
    @Test(.enabled(if: Hardening.hasScript, "script(1) (Debian package bsdutils) is not installed"))
    func ctrlBracketHint() throws {
        let image = try ImageCopy("basic")
        let hint = "Press Ctrl-] three times within 1s to kill container."
        func underScript(_ options: String) -> Harness.Output {
            Harness.run(["/usr/bin/script", "-qec", "\(Harness.binary) run \(options) \(image.path) echo container-says-hi", "/dev/null"], stdin: "")
        }
        let shown = underScript("")
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(shown.status == 0, "\(shown.stdout)")
        let at = try #require(shown.stdout.range(of: hint + "\r\n"), "no hint: \(shown.stdout.debugDescription)")
        let said = try #require(shown.stdout.range(of: "container-says-hi"), "\(shown.stdout.debugDescription)")
        #expect(at.upperBound <= said.lowerBound)

        let quiet = underScript("-q")
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(quiet.stdout.contains("container-says-hi") && !quiet.stdout.contains("Ctrl-]"), "\(quiet.stdout.debugDescription)")

        let plain = try Harness.imgboot(["run", image.path, "echo", "container-says-hi"])
        image.leftovers.expectNone(imageUnchanged: true)
        #expect(plain.stdout == "container-says-hi\n" && plain.stderr.isEmpty, "\(plain.stderr)")

        // enter: Ctrl-] ends the session, and the hint says so (machinectl's words).
        let running = try BackgroundProcess([Harness.binary, "run", image.path, "sleep", "1000"])
        defer { running.kill() }
        _ = try MachinesTests.waitUntilListed(image.machine, running)
        let entered = Harness.run(["/usr/bin/script", "-qec", "\(Harness.binary) enter \(image.machine) echo entered-says-hi", "/dev/null"], stdin: "")
        #expect(entered.stdout.hasPrefix("Press Ctrl-] three times within 1s to exit session.\r\n"), "\(entered.stdout.debugDescription)")
        #expect(entered.stdout.contains("entered-says-hi"))
        running.signal(SIGTERM)
        #expect(running.exitStatus(within: MachinesTests.limit) != nil)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// -q on boot: no ready line (the machine is ready all the same: enter finds systemd
    /// running); without it, the line is there. `run -b` boots as `boot` does.
    @Test func quietBoot() throws {
        let debian = try ImageCopy(path: try Harness.debianImage(), name: "debian")
        for options in [["boot", "-q"], ["run", "-b"]] {
            let machine = debian.machine + (options[0] == "run" ? "-b" : "-q")
            let boot = try BackgroundProcess([Harness.binary] + options + ["--console=passive", "-M", machine, debian.path])
            defer { boot.kill() }
            _ = try MachinesTests.waitUntilListed(machine, boot)
            // Listed once its init runs; systemctl answers once systemd's manager is up.
            var state = Harness.Output(status: -1, stdout: "", stderr: "")
            _ = boot.wait(upTo: MachinesTests.bootLimit) {
                state = (try? Harness.imgboot(["enter", machine, "systemctl", "is-system-running", "--wait"])) ?? state
                return ["running\n", "degraded\n"].contains(state.stdout)
            }
            #expect(["running\n", "degraded\n"].contains(state.stdout), "\(state.stdout) \(state.stderr)")
            if options[0] == "boot" {
                #expect(!boot.stderr.contains("is ready"), "\(boot.stderr)")
            } else {
                #expect(boot.wait(upTo: MachinesTests.limit) { boot.stderr.contains("imgboot: \(machine) is ready (after ") }, "\(boot.stderr)")
            }
            let stop = try Harness.imgboot(["stop", machine])
            #expect(stop.status == 0, "\(stop.stderr)")
            #expect(boot.exitStatus(within: MachinesTests.limit) == 0)
            if options[0] == "boot" { #expect(boot.stderr.isEmpty, "\(boot.stderr)") }
        }
        debian.leftovers.expectNone(imageUnchanged: true)
    }
}
