import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// Image file names that no terminal should take literally, and too long for a hostname: an
/// 80-character name holding a bidi override (U+202E), ESC [31m, a C1 CSI (U+009B) and a
/// newline. Every command still works on it — inspect, run twice at once (the second machine
/// gets the `-2` suffix), list, smoke — and none of them lets one of those characters reach
/// stdout or stderr raw: each is shown escaped (`\u{202e}`, `\x1b`, `\u{9b}`, `\x0a`), JSON
/// carries it as `\uXXXX`, JUnit as a character reference (or escaped, where XML 1.0 cannot
/// hold it). Afterwards nothing of any machine is left.
struct HostileNameTests {
    /// The hostile part of the name, as imgboot shows it.
    static let escaped = #"\u{202e}evil\x1b[31mred\u{9b}2J\x0aline-"#

    /// The --machine of more than 64 characters is refused before anything runs (no root
    /// needed): it could not be a hostname.
    @Test func explicitMachineNameOver64IsRefused() throws {
        let image = try HostileCopy()
        let name = String(repeating: "m", count: 65)
        let out = try Harness.imgboot(["run", "--machine=\(name)", image.path, "--", "true"])
        #expect(out.status == 125)
        #expect(out.stderr.contains("--machine=\(name): a machine name has 1 to 64 letters"), "\(out.stderr)")
        let fits = try Harness.imgboot(["run", "--dry-run", "--machine=\(name.dropLast())", image.path, "--", "true"])
        #expect(fits.status == 0, "\(fits.stderr)")
    }

    /// inspect's table shows the name on one line, escaped; --json carries it exactly (a
    /// strict parser reads back the same string) without a raw control or bidi character; an
    /// error about it is one escaped line.
    @Test func inspect() throws {
        let image = try HostileCopy()
        let table = try Harness.imgboot(["inspect", image.path])
        #expect(table.status == 0, "\(table.stderr)")
        image.expectSafe(table.stdout, "inspect's table")
        image.expectSafe(table.stderr, "inspect's stderr")
        let header = table.stdout.split(separator: "\n").first.map(String.init)
        #expect(header == "Image:      \(image.directory)/\(image.token)-\(Self.escaped)\(image.filler).raw")

        let json = try Harness.imgboot(["inspect", "--json", image.path])
        #expect(json.status == 0, "\(json.stderr)")
        image.expectSafe(json.stdout, "inspect --json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect((object["image"] as? String).map { Array($0.unicodeScalars) } == Array(image.path.unicodeScalars))

        let missing = try Harness.imgboot(["inspect", image.path + ".gone"])
        #expect(missing.status == 125)
        image.expectSafe(missing.stderr, "the error")
        #expect(missing.stderr == "imgboot: \(image.directory)/\(image.token)-\(Self.escaped)\(image.filler).raw.gone: no such file\n")
    }

    /// Two containers of the image at once under default names: the first is the image's name
    /// cut to leave room for a suffix, the second that name with `-2` — both hostnames, at most
    /// 64 characters. `list` shows both, safely. For the hostile name and for the plain one of
    /// 64 characters that failed at sethostname once it had its `-2`.
    @Test(.enabled(if: Harness.isRoot, "needs root and loop devices"), arguments: [true, false])
    func runTwiceAtOnce(hostile: Bool) throws {
        let image = try HostileCopy(hostile: hostile)
        let machine = image.defaultMachine
        #expect(machine.count <= 60 && machine.hasPrefix(image.token), "\(machine)")
        let first = try BackgroundProcess([
            Harness.binary, "run", "--bind=\(image.control):/ctl", image.path, "--",
            "sh", "-c", "hostname > /ctl/hostname; while [ ! -e /ctl/done ]; do sleep 0.1; done",
        ])
        defer { first.kill() }
        let hostnameFile = image.control + "/hostname"
        try #require(first.wait(upTo: 60) { ((try? String(contentsOfFile: hostnameFile, encoding: .utf8)) ?? "").hasSuffix("\n") },
                     "the first container did not start: \(first.stderr)")
        #expect(try String(contentsOfFile: hostnameFile, encoding: .utf8) == machine + "\n")

        let table = try Harness.imgboot(["list"])
        #expect(table.status == 0, "\(table.stderr)")
        image.expectSafe(table.stdout, "list")
        let row = table.stdout.split(separator: "\n").first { $0.hasPrefix(machine + " ") }
        #expect(row != nil, "\(table.stdout)")
        if hostile {
            // Only up to the newline: the registry stores the image's path on a line of its own.
            #expect(row?.contains(#"\u{202e}evil\x1b[31mred\u{9b}2J"#) == true, "\(row ?? "")")
        }
        let json = try Harness.imgboot(["list", "--json"])
        image.expectSafe(json.stdout, "list --json")
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(listed.contains { $0["name"] as? String == machine })

        let second = try Harness.imgboot(["run", image.path, "--", "hostname"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout == machine + "-2\n")
        image.expectSafe(second.stderr, "the second run's stderr")

        #expect(FileManager.default.createFile(atPath: image.control + "/done", contents: nil))
        #expect(first.exitStatus(within: 60) == 0, "\(first.stderr)")
        image.expectSafe(first.stderr, "the first run's stderr")
        image.expectNothingLeft()
    }

    /// smoke takes the name as it is (its machines: the default name cut for its suffixes): it
    /// passes; the plain lines show the name escaped, on one line; --json has the exact path;
    /// the JUnit file parses, holds nothing raw, and its suite is named by the path (ESC,
    /// which XML 1.0 cannot hold, shown as `\x1b`).
    @Test(.enabled(if: Harness.isRoot, "needs root and loop devices"))
    func smoke() throws {
        let image = try HostileCopy()
        let plain = try Smoke.run(["--check", "true", image.path])
        #expect(plain.status == 0, "\(plain.stderr)")
        image.expectSafe(plain.stderr, "smoke's lines")
        #expect(plain.stderr.contains("\(image.directory)/\(image.token)-\(Self.escaped)\(image.filler).raw: passed\n"), "\(plain.stderr)")
        image.expectNothingLeft()

        let junit = image.control + "/smoke.xml"
        let out = try Smoke.run(["--check", "true", "--check", "hostname", "--json", "--junit", junit, image.path])
        #expect(out.status == 0, "\(out.stderr)")
        image.expectSafe(out.stdout, "smoke --json")
        image.expectSafe(out.stderr, "smoke's lines")
        let result = try #require(try out.report().results.first)
        #expect(Array(result.image.unicodeScalars) == Array(image.path.unicodeScalars))
        #expect(result.passed && result.error == nil)
        #expect(result.machine.hasPrefix(image.token) && result.machine.count + "-2".count <= 64, "\(result.machine)")
        #expect(result.checks.map(\.output) == ["", result.machine + "-2\n"])

        let xml = try String(contentsOfFile: junit, encoding: .utf8)
        image.expectSafe(xml, "the JUnit file")
        let suite = try #require(try JUnit.parse(file: junit).first)
        let name = image.path.replacingOccurrences(of: "\u{1b}", with: #"\x1b"#)
        #expect(suite.attributes["name"].map { Array($0.unicodeScalars) } == Array(name.unicodeScalars), "\(suite.attributes)")
        #expect(suite.testcases.count == 3 && suite.testcases.allSatisfy { $0.first("failure") == nil })
        image.expectNothingLeft()
    }
}

/// A copy of the basic fixture named `TOKEN-` and, when hostile, the characters above, filled
/// to 80 characters with `.raw`; otherwise `TOKEN-aaa…` of 64 characters and `.raw`. The token
/// (ASCII, unique) starts every machine's name and imgboot's command line, so that what is
/// left of any machine is found; `control` is a directory beside it for a container to bind.
final class HostileCopy {
    let token: String
    let filler: String
    let path: String
    let hostile: Bool
    private let scratch: ScratchDirectory
    let leftovers: Leftovers

    init(hostile: Bool = true) throws {
        scratch = try ScratchDirectory("imgboot-names")
        self.hostile = hostile
        token = "hn" + UUID().uuidString.prefix(8).lowercased()
        let head = token + "-" + (hostile ? "\u{202e}evil\u{1b}[31mred\u{9b}2J\nline-" : "")
        let total = hostile ? 80 : 64 + ".raw".count
        // Unique too (the end of the name): tests run side by side.
        let tail = "tail" + token.dropFirst(2)
        filler = tail + String(repeating: "a", count: total - head.unicodeScalars.count - ".raw".count - tail.count)
        path = scratch.path + "/" + head + filler + ".raw"
        try FileManager.default.createDirectory(atPath: scratch.path + "/ctl", withIntermediateDirectories: true)
        let copy = Harness.run(["/bin/cp", "--sparse=always", try Harness.fixture("basic"), path])
        guard copy.status == 0 else { throw HarnessError("cannot copy basic: \(copy.stderr)") }
        leftovers = Leftovers(image: path, machine: Self.defaultMachine(path), marker: token)
        #expect((path.split(separator: "/").last?.unicodeScalars.count ?? 0) == (hostile ? 80 : 68))
    }

    var directory: String { scratch.path }
    var control: String { scratch.path + "/ctl" }

    /// The name `run` gives a machine of this image (README: the file name without .raw, each
    /// character a hostname cannot hold a '-', cut to 60 characters, no '-' or '.' at the ends).
    var defaultMachine: String { Self.defaultMachine(path) }

    static func defaultMachine(_ path: String) -> String {
        let name = (path.split(separator: "/").last.map(String.init) ?? "").dropLast(".raw".count)
        let cleaned = String(name.unicodeScalars.map { c -> Character in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "-_.".unicodeScalars.contains(c)) ? Character(c) : "-"
        }.prefix(60))
        return String(cleaned.reversed().drop { $0 == "-" || $0 == "." }.reversed())
    }

    /// Expects that `text` holds no control character but newline, no format character (bidi
    /// controls, zero-width ones), and no line that holds the end of the name without its start:
    /// no newline of the name's reached it raw.
    func expectSafe(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let raw = text.unicodeScalars.filter { c in
            (c.properties.generalCategory == .control && c != "\n") || c.properties.generalCategory == .format
        }
        #expect(raw.isEmpty, "\(what): raw \(raw.map { "U+" + String($0.value, radix: 16) })", sourceLocation: sourceLocation)
        for line in text.split(separator: "\n") where line.contains(filler) {
            #expect(line.contains(token), "\(what): the name is split over lines: \(line)", sourceLocation: sourceLocation)
        }
    }

    /// Nothing left of any machine of this copy: what `Leftovers` checks (no loop device, mount
    /// or process; the image unchanged), and no registry entry, tree directory or cgroup whose
    /// name starts with the token.
    func expectNothingLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        leftovers.expectNone(imageUnchanged: true, sourceLocation: sourceLocation)
        let directories = ["/run/imgboot/machines", "/run/imgboot/roots", "/sys/fs/cgroup/unified/imgboot",
                           "/sys/fs/cgroup/imgboot", "/sys/fs/cgroup/devices/imgboot"]
        let traces = directories.flatMap { dir in
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(token) }.map { "\(dir)/\($0)" }
        }
        #expect(traces.isEmpty, "left of the machines: \(traces)", sourceLocation: sourceLocation)
    }
}
