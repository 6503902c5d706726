import Foundation
import Testing

/// `tools/install`, as someone installs imgboot: into a prefix of their choosing, a binary that
/// works without a Swift runtime, manual pages that man(1) renders, and completions that the
/// shells load and that complete. It builds imgboot for release, once for the suite (tools/test
/// builds it before the tests; minutes the first time otherwise).
@Suite(.serialized)
struct InstallTests {
    static let script = Harness.packageRoot + "/tools/install"

    /// One installation for the suite, into a temporary prefix (removed when the tests end).
    static let installation: Swift.Result<Installation, HarnessError> = {
        do {
            let prefix = try ScratchDirectory("imgboot-install")
            // `swift test` holds the package's SwiftPM lock while the tests run.
            let out = Harness.run([script, "--ignore-lock", "--prefix", prefix.path])
            guard out.status == 0 else { return .failure(HarnessError("tools/install failed (\(out.status)): \(out.stderr)")) }
            return .success(Installation(prefix: prefix, output: out))
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    final class Installation: @unchecked Sendable {
        let prefix: ScratchDirectory
        let output: Harness.Output
        init(prefix: ScratchDirectory, output: Harness.Output) {
            self.prefix = prefix
            self.output = output
        }
        var path: String { prefix.path }
        var binary: String { path + "/bin/imgboot" }
        var man1: String { path + "/share/man/man1" }
        var bash: String { path + "/share/bash-completion/completions/imgboot" }
        var zsh: String { path + "/share/zsh/site-functions/_imgboot" }
        var fish: String { path + "/share/fish/vendor_completions.d/imgboot.fish" }
    }

    @Test func helpExplainsAndBadArgumentsAreRefused() {
        let help = Harness.run([Self.script, "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.hasPrefix("Usage: tools/install [--prefix DIR]\n"))
        for line in ["DIR/bin/imgboot", "share/man/man1", "share/bash-completion/completions/imgboot",
                     "share/zsh/site-functions/_imgboot", "share/fish/vendor_completions.d/imgboot.fish", "default /usr/local"] {
            #expect(help.stdout.contains(line), "\(line)")
        }
        let bad = Harness.run([Self.script, "--prefx", "/tmp/x"])
        #expect(bad.status == 2)
        #expect(bad.stderr == "tools/install: unknown argument: --prefx (see tools/install --help)\n")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/x/bin/imgboot"))
        let empty = Harness.run([Self.script, "--prefix="])
        #expect(empty.status == 2 && empty.stderr == "tools/install: --prefix needs a directory\n")
    }

    /// The installed binary runs, without the Swift runtime's shared libraries, and inspects an
    /// image as the built one does.
    @Test func binaryWorks() throws {
        let installed = try Self.installation.get()
        #expect(Harness.run([installed.binary, "--version"]).stdout == "0.1.0\n")
        let libraries = Harness.run(["/usr/bin/ldd", installed.binary]).stdout
        #expect(!libraries.contains("libswiftCore"), "\(libraries)")
        let image = try Harness.fixture("basic")
        let inspect = Harness.run([installed.binary, "inspect", "--json", image])
        #expect(inspect.status == 0)
        #expect(inspect.stdout == (try Harness.imgboot(["inspect", "--json", image])).stdout)
    }

    /// A page per command (imgboot-run.1, …; none for `help`), each rendered by man without a
    /// warning, with its examples and options; man finds them by name under the prefix.
    @Test func manualPagesRender() throws {
        let installed = try Self.installation.get()
        let pages = try FileManager.default.contentsOfDirectory(atPath: installed.man1).sorted()
        #expect(pages == ["imgboot-archive.1", "imgboot-boot.1", "imgboot-copy-from.1", "imgboot-copy-to.1", "imgboot-enter.1",
                          "imgboot-inspect.1", "imgboot-list.1", "imgboot-ls.1", "imgboot-mount.1", "imgboot-run.1",
                          "imgboot-smoke.1", "imgboot-stop.1", "imgboot-umount.1", "imgboot.1"])
        for page in pages {
            let out = Harness.run(["/usr/bin/env", "MANWIDTH=80", "/usr/bin/man", "-l", installed.man1 + "/" + page])
            #expect(out.status == 0 && out.stderr.isEmpty, "\(page): \(out.stderr)")
            #expect(out.stdout.contains("EXAMPLES:"), "\(page)")
            #expect(out.stdout.contains("SYNOPSIS"), "\(page)")
        }
        let run = Harness.run(["/usr/bin/env", "MANWIDTH=80", "MANPATH=\(installed.path)/share/man", "/usr/bin/man", "imgboot-run"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("imgboot run disk.raw ls -l /etc"))
        #expect(run.stdout.contains("-M, --machine name") || run.stdout.contains("-M, --machine\u{2009}name") || run.stdout.contains("--machine name"),
                "\(run.stdout)")
        let root = Harness.run(["/usr/bin/env", "MANWIDTH=80", "/usr/bin/man", "-l", installed.man1 + "/imgboot.1"]).stdout
        #expect(root.contains("imgboot-run(1)"), "SEE ALSO names the pages as installed: \(root)")
        #expect(!root.contains("imgboot-help") && !root.contains("imgboot.run"))
    }

    /// bash: the script loads (no output, no error) and completes a command, image files (and
    /// directories), and, for enter and stop, the names of running machines — or, for a user
    /// who cannot read them, nothing, silently.
    @Test func bashCompletes() throws {
        let installed = try Self.installation.get()
        let dir = try ScratchDirectory("imgboot-complete")
        for name in ["a.raw", "b.img", "notes.txt"] { _ = FileManager.default.createFile(atPath: dir.path + "/" + name, contents: nil) }
        try FileManager.default.createDirectory(atPath: dir.path + "/sub", withIntermediateDirectories: false)
        chmod(dir.path, 0o755)

        /// COMPREPLY for the command line `words` (the last one is completed), one per line.
        func complete(_ words: [String], as user: [String] = []) -> Harness.Output {
            let script = """
                source "$1"
                shift
                COMP_WORDS=("$@")
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                COMP_LINE="${COMP_WORDS[*]}"
                COMP_POINT=${#COMP_LINE}
                _imgboot "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\\n' "${COMPREPLY[@]}" | sort
                """
            return Harness.run(user + ["/bin/bash", "-c", script, "bash", installed.bash, installed.binary] + words)
        }
        let load = Harness.run(["/bin/bash", "-c", "source \"$1\" && complete -p imgboot", "bash", installed.bash])
        #expect(load.status == 0 && load.stderr.isEmpty, "\(load.stderr)")
        #expect(load.stdout == "complete -o filenames -F _imgboot imgboot\n")

        #expect(complete(["ins"]).stdout == "inspect\n")
        #expect(complete(["s"]).stdout == "smoke\nstop\n")
        #expect(complete(["run", "--mach"]).stdout == "--machine\n")
        #expect(complete(["run", "--volatile", "o"]).stdout == "overlay\n")
        let images = complete(["run", dir.path + "/"])
        #expect(images.stdout == ["a.raw", "b.img", "sub"].map { dir.path + "/" + $0 + "\n" }.joined(), "\(images.stdout)")
        #expect(complete(["boot", "-q", dir.path + "/a"]).stdout == dir.path + "/a.raw\n")

        // Machine names as this user may read them: root sees the store's; nobody cannot read
        // it, and gets nothing — no message in the middle of the command line.
        // Other suites start and end machines meanwhile, so what is offered is checked for its
        // shape (a machine name, never the store's own files), not against a listing.
        let asRoot = complete(["enter", ""])
        #expect(asRoot.stderr.isEmpty, "\(asRoot.stderr)")
        for name in asRoot.stdout.split(separator: "\n") {
            #expect(!name.hasPrefix(".") && !name.contains("/") && name.count <= 64, "offered \(name)")
        }
        let asNobody = complete(["stop", ""], as: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        #expect(asNobody.stdout == "\n" && asNobody.stderr.isEmpty, "\(asNobody.stdout) \(asNobody.stderr)")
    }

    /// A running machine's name is offered for enter and stop.
    @Test(.enabled(if: Harness.isRoot, "needs root: a running machine"))
    func bashCompletesRunningMachines() throws {
        let installed = try Self.installation.get()
        let image = try ImageCopy("basic")
        let running = try BackgroundProcess([Harness.binary, "run", image.path, "sleep", "1000"])
        defer { running.kill() }
        _ = try MachinesTests.waitUntilListed(image.machine, running)
        for command in ["enter", "stop"] {
            let script = """
                source "$1"
                COMP_WORDS=("$2" "$3" "$4")
                COMP_CWORD=2
                COMP_LINE="${COMP_WORDS[*]}"
                COMP_POINT=${#COMP_LINE}
                _imgboot "$2" "$4" "$3"
                printf '%s\\n' "${COMPREPLY[@]}"
                """
            let out = Harness.run(["/bin/bash", "-c", script, "bash", installed.bash, installed.binary, command,
                                   String(image.machine.prefix(12))])
            #expect(out.stdout.split(separator: "\n").contains { $0 == image.machine }, "\(command): \(out.stdout) \(out.stderr)")
        }
        running.signal(SIGTERM)
        #expect(running.exitStatus(within: MachinesTests.limit) != nil)
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// fish completes the same (complete -C asks it as a TAB would); zsh loads the function
    /// through its fpath without a complaint.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/fish") && FileManager.default.isExecutableFile(atPath: "/usr/bin/zsh"),
                   "fish and zsh are not installed (tools/test installs them)"))
    func fishAndZshLoad() throws {
        let installed = try Self.installation.get()
        let fish = Harness.run(["/usr/bin/fish", "--no-config", "-c", "source $argv[1]; complete -C 'imgboot ins'; complete -C 'imgboot run --vol'",
                                installed.fish])
        #expect(fish.status == 0 && fish.stderr.isEmpty, "\(fish.stderr)")
        let lines = fish.stdout.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
        #expect(lines == ["inspect", "--volatile"], "\(fish.stdout)")

        let zsh = Harness.run(["/usr/bin/zsh", "-f", "-c", """
            fpath=("$1" $fpath)
            autoload -Uz compinit && compinit -u -D
            autoload -Uz +X _imgboot && print -r -- ${+functions[_imgboot]} ${_comps[imgboot]}
            """, "zsh", installed.path + "/share/zsh/site-functions"])
        #expect(zsh.status == 0 && zsh.stderr.isEmpty, "\(zsh.stderr)")
        #expect(zsh.stdout == "1 _imgboot\n", "\(zsh.stdout)")
    }
}
