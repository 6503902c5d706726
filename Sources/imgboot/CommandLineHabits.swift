import ArgumentParser
import Dissect
import Support

/// The command line as systemd-nspawn's users type it, turned into the one swift-argument-parser
/// reads: before it is parsed, imgboot
///
/// - refuses an unknown command with the nearest one (`imgboot inspec` → did you mean "inspect"?);
/// - reads `run -b` as `boot` (nspawn's `-b`);
/// - takes a command without `--` as nspawn does: after IMAGE (or NAME), imgboot's options may
///   follow until the first word that is not one; that word and everything after it is the
///   command (`imgboot run disk.raw ls -l`), and a `--` is put before it;
/// - reads a bare `--volatile` as `--volatile=yes` (a mode must be given with `=`, as getopt's
///   optional arguments are), and inspect's bare `--json` as `--json=short`.
///
/// Options are only recognised where they are imgboot's: before `--` and before the command.
struct NormalizedCommandLine: Equatable {
    var arguments: [String]
    /// Lines for stderr once the command line has parsed (unless -q): what the user may not
    /// have meant.
    var notes: [String] = []
    /// -q was among imgboot's options.
    var quiet = false
}

enum CommandLineHabits {
    /// What the scan needs to know of a command whose last argument is a command (or the init's
    /// arguments). `CommandLineTests` checks these against the commands' own definitions.
    struct Shape {
        /// The positional arguments before the command: IMAGE, or NAME.
        var positionals: Int
        /// The options that take the next word as their value when not given with `=` (long),
        /// or not joined (short).
        var valued: Set<String>
        /// imgboot's long options that, found after a command given without `--`, earn a note:
        /// all but those any program may have (--help, --version, --quiet).
        var noted: Set<String>
    }

    static let shapes: [String: Shape] = {
        let container: Set = ["--log-level", "--hostname", "--setenv", "-E", "--bind", "--bind-ro", "--tmpfs", "--resolv-conf", "--timezone", "--set-credential", "--load-credential", "--private-users",
                              "--machine", "-M"]
        let containerFlags: Set = ["--volatile", "--read-only", "--private-network", "--dry-run", "--pipe"]
        let longs = { (valued: Set<String>) in valued.filter { $0.hasPrefix("--") } }
        return [
            "run": Shape(positionals: 1, valued: container.union(["--user", "-u", "--chdir"]),
                         noted: longs(container).union(containerFlags).union(["--boot", "--user", "--chdir"])),
            "boot": Shape(positionals: 1, valued: container.union(["--console", "--kill-signal", "--stop-timeout", "--notify-ready", "--init"]),
                          noted: longs(container).union(containerFlags).union(["--console", "--kill-signal", "--stop-timeout", "--notify-ready", "--init"])),
            "enter": Shape(positionals: 1, valued: ["--log-level", "--setenv", "-E"], noted: ["--log-level", "--setenv"]),
        ]
    }()

    /// The subcommands' names, and swift-argument-parser's own `help`.
    static var commandNames: [String] {
        IMGBoot.configuration.subcommands.compactMap { $0.configuration.commandName } + ["help"]
    }

    /// Other tools' words for imgboot's commands (machinectl's, systemd-dissect's), for the
    /// suggestion when one is typed.
    static let synonyms = [
        "shell": "enter", "login": "enter", "ls": "list", "ps": "list", "poweroff": "stop", "terminate": "stop",
        "kill": "stop", "dissect": "inspect", "start": "boot", "unmount": "umount",
    ]

    static func normalize(_ arguments: [String]) throws(CommandError) -> NormalizedCommandLine {
        guard let command = arguments.first else { return NormalizedCommandLine(arguments: arguments) }
        if !command.hasPrefix("-") && !commandNames.contains(command) {
            throw CommandError(nil, unknownCommand(command))
        }
        // `imgboot help inspec` would print the overview, as if nothing were wrong.
        if command == "help", arguments.count > 1, let topic = arguments.dropFirst().first(where: { !$0.hasPrefix("-") }),
           !commandNames.contains(topic) {
            throw CommandError(nil, unknownCommand(topic))
        }
        let args = arguments
        guard let shape = shapes[command] else {
            let end = args.firstIndex(of: "--") ?? args.endIndex
            // inspect's bare `--json`, which once was a flag, means `--json=short`.
            let json = command == "inspect" ? "--json=short" : "--json"
            return NormalizedCommandLine(arguments: args[..<end].map {
                $0 == "--volatile" ? "--volatile=yes" : $0 == "--json" ? json : $0
            } + args[end...])
        }

        var result = NormalizedCommandLine(arguments: [command])
        var boot = false, positionals = 0, i = 1
        scan: while i < args.count {
            let word = args[i]
            i += 1
            if word == "--" {
                result.arguments += args[(i - 1)...]
                break scan
            }
            if word.hasPrefix("--") {
                let name = String(word.prefix { $0 != "=" })
                if command == "run" && word == "--boot" {
                    boot = true
                    continue
                }
                if word == "--quiet" { result.quiet = true }
                result.arguments.append(word == "--volatile" ? "--volatile=yes" : word)
                if name == word && shape.valued.contains(name) && i < args.count {
                    result.arguments.append(args[i])
                    i += 1
                }
                continue
            }
            if word.hasPrefix("-") && word.count > 1 {
                // A cluster of short options ("-qU"); one that takes a value ends it, with the
                // value joined ("-Mname", "-EVAR=VALUE") or as the next word ("-M name"). The
                // value is passed on as a word of its own: swift-argument-parser would read the
                // `=` of a joined "-EVAR=VALUE" as its own.
                var kept = "-"
                var value: String? = nil
                for (offset, letter) in word.dropFirst().enumerated() {
                    if shape.valued.contains("-\(letter)") {
                        kept.append(letter)
                        let joined = word.dropFirst(2 + offset)
                        if !joined.isEmpty {
                            value = String(joined)
                        } else if i < args.count {
                            value = args[i]
                            i += 1
                        }
                        break
                    }
                    if command == "run" && letter == "b" {
                        boot = true
                        continue
                    }
                    if letter == "q" { result.quiet = true }
                    kept.append(letter)
                }
                if kept != "-" { result.arguments.append(kept) }
                if let value { result.arguments.append(value) }
                continue
            }
            if positionals < shape.positionals {
                positionals += 1
                result.arguments.append(word)
                continue
            }
            // The command: this word and everything after it.
            let commandWords = Array(args[(i - 1)...])
            result.arguments += ["--"] + commandWords
            if let ours = commandWords.dropFirst().first(where: { shape.noted.contains(String($0.prefix { $0 != "=" })) }) {
                result.notes.append(
                    "imgboot: note: \(printable(ours)) follows the command \(printable(word)) and is passed to it: imgboot's options go before the command (and -- before the command says where it starts)")
            }
            break scan
        }
        if boot { result.arguments[0] = "boot" }
        return result
    }

    /// `unknown command "inspec"; did you mean "inspect"?`, or the list of commands.
    static func unknownCommand(_ word: String) -> String {
        // The commands a user may type: not `help`, not the hidden keep-locks.
        let names = IMGBoot.configuration.subcommands.filter { $0.configuration.shouldDisplay }
            .compactMap { $0.configuration.commandName }
        // Not escaped here: the whole line is, where it is written.
        let quoted = "\"\(word)\""
        if let suggestion = suggestion(for: word, among: names) {
            return "unknown command \(quoted); did you mean \"\(suggestion)\"?"
        }
        return "unknown command \(quoted) (commands: \(names.joined(separator: ", ")); see imgboot --help)"
    }

    /// The command `word` was most likely meant to be: another tool's name for it, one that
    /// starts with it, or the nearest within two edits (one for short words).
    static func suggestion(for word: String, among names: [String]) -> String? {
        let lower = word.lowercased()
        if let synonym = synonyms[lower] { return synonym }
        if lower.count >= 2, let prefixed = names.first(where: { $0.hasPrefix(lower) }) { return prefixed }
        let limit = lower.count <= 3 ? 1 : 2
        let scored = names.map { (name: $0, distance: editDistance(lower, $0)) }.filter { $0.distance <= limit }
        return scored.min { $0.distance < $1.distance }?.name
    }

    /// Levenshtein distance, with a swap of neighbours counting as one edit (optimal string
    /// alignment): "mountt", "muont" and "moun" are all one edit from "mount".
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        guard !x.isEmpty else { return y.count }
        guard !y.isEmpty else { return x.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in 0...x.count { d[i][0] = i }
        for j in 0...y.count { d[0][j] = j }
        for i in 1...x.count {
            for j in 1...y.count {
                let cost = x[i - 1] == y[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[x.count][y.count]
    }
}
