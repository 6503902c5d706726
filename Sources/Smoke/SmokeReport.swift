import Dissect
import Support

/// The reports of a smoke run: JSON for programs, JUnit XML for CI servers, a table for people.
public struct SmokeReport {
    public let results: [SmokeResult]

    public init(results: [SmokeResult]) { self.results = results }

    public var passed: Bool { results.allSatisfy(\.passed) }

    /// `{"passed": …, "results": [{"image", "machine", "passed", "readySeconds", "checks", "failedUnits", "error"}]}`
    public var json: JSON {
        .object([
            ("passed", .bool(passed)),
            ("results", .array(results.map { r in
                .object([
                    ("image", .string(r.image)),
                    ("machine", .string(r.machine)),
                    ("passed", .bool(r.passed)),
                    ("readySeconds", r.readySeconds.map { .double(rounded($0)) } ?? .null),
                    ("checks", .array(r.checks.map { c in
                        .object([
                            ("command", .string(c.command)),
                            ("exitCode", c.exitCode.map { .int(Int64($0)) } ?? .null),
                            ("passed", .bool(c.passed)),
                            ("output", .string(c.output)),
                            ("seconds", .double(rounded(c.seconds))),
                        ])
                    })),
                    ("failedUnits", .array(r.failedUnits.map(JSON.string))),
                    ("error", .string(r.error)),
                ])
            })),
        ])
    }

    /// JUnit XML as Jenkins and GitLab read it: a testsuite per image; a testcase for the boot
    /// (or start), one per check, and for booted images one for failed units and one for the
    /// poweroff. The names are the same in every run of the same images (the class is the
    /// image's file name, never its random machine name), so that a CI server tracks each case
    /// from one build to the next. An image imgboot could not start at all is an `<error>` (the
    /// test could not run); what ran and did not hold is a `<failure>`.
    public var junit: String {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        let all = results.map(cases)
        let total = all.map(\.count).reduce(0, +)
        let failures = all.map { $0.filter { $0.failure != nil }.count }.reduce(0, +)
        let errors = all.map { $0.filter { $0.error != nil }.count }.reduce(0, +)
        let time = results.map(\.seconds).reduce(0, +)
        xml += "<testsuites name=\"imgboot smoke\" tests=\"\(total)\" failures=\"\(failures)\" errors=\"\(errors)\" time=\"\(seconds(time))\">\n"
        let classes = Self.classNames(results.map(\.image))
        for (r, (list, className)) in zip(results, zip(all, classes)) {
            xml += "  <testsuite name=\"\(escape(r.image))\" tests=\"\(list.count)\" failures=\"\(list.filter { $0.failure != nil }.count)\" "
                + "errors=\"\(list.filter { $0.error != nil }.count)\" time=\"\(seconds(r.seconds))\">\n"
            for c in list {
                xml += "    <testcase classname=\"\(escape(className))\" name=\"\(escape(c.name))\" time=\"\(seconds(c.seconds))\""
                if c.failure == nil && c.error == nil && c.systemOut.isEmpty {
                    xml += "/>\n"
                    continue
                }
                xml += ">\n"
                if let failure = c.failure {
                    xml += "      <failure message=\"\(escape(failure))\">\(escape(c.details, attribute: false))</failure>\n"
                }
                if let error = c.error {
                    xml += "      <error message=\"\(escape(error))\">\(escape(c.details, attribute: false))</error>\n"
                }
                if !c.systemOut.isEmpty {
                    xml += "      <system-out>\(escape(c.systemOut, attribute: false))</system-out>\n"
                }
                xml += "    </testcase>\n"
            }
            xml += "  </testsuite>\n"
        }
        return xml + "</testsuites>\n"
    }

    struct Case {
        var name: String
        var seconds: Double
        /// It ran and did not hold.
        var failure: String? = nil
        /// It could not run.
        var error: String? = nil
        /// The body of the failure or error.
        var details = ""
        var systemOut = ""
    }

    func cases(_ r: SmokeResult) -> [Case] {
        var list: [Case] = []
        let ready = r.readySeconds
        if r.couldNotStart {
            list.append(Case(name: r.booted ? "boot" : "start", seconds: 0, error: r.error ?? "could not start", details: r.bootLog))
        } else {
            let bootFailed = r.booted && ready == nil
            list.append(Case(name: r.booted ? "boot" : "start", seconds: ready ?? 0,
                             failure: bootFailed ? (r.error ?? "not ready") : nil, details: bootFailed ? r.bootLog : ""))
        }
        for (i, c) in r.checks.enumerated() {
            let failure = c.passed ? nil
                : c.exitCode.map { "exit status \($0)" } ?? "did not end in time (killed)"
            list.append(Case(name: "check \(i + 1): \(c.command)", seconds: c.seconds, failure: failure,
                             details: failure == nil ? "" : c.output, systemOut: failure == nil ? c.output : ""))
        }
        if r.booted && ready != nil {
            // The failure names the units; why they failed (their status, the journal) is the
            // case's output, where CI servers show it next to the failure.
            list.append(Case(name: "no failed units", seconds: 0,
                             failure: r.failedUnits.isEmpty ? nil : "failed units: " + r.failedUnits.joined(separator: ", "),
                             details: r.failedUnits.joined(separator: "\n"), systemOut: r.unitDiagnostics))
            list.append(Case(name: "poweroff", seconds: 0,
                             failure: r.poweredOff == false ? (r.error ?? "did not power off cleanly") : nil,
                             details: r.poweredOff == false ? r.bootLog : ""))
        }
        return list
    }

    /// Each image's JUnit class: `imgboot.smoke.` and its file name without `.raw`/`.img`,
    /// with `.` written `_` (CI servers take what follows the last dot for the class). When two
    /// images share a file name, their paths as given tell them apart.
    static func classNames(_ images: [String]) -> [String] {
        func fileName(_ path: String) -> String { String(path.split(separator: "/").last ?? Substring(path)) }
        var counts: [String: Int] = [:]
        for image in images { counts[fileName(image), default: 0] += 1 }
        return images.map { image in
            var name = counts[fileName(image), default: 0] > 1 ? image : fileName(image)
            for suffix in [".raw", ".img"] where name.hasSuffix(suffix) && name.count > suffix.count {
                name.removeLast(suffix.count)
            }
            return "imgboot.smoke." + String(name.map { $0 == "." || $0 == "/" ? "_" : $0 })
        }
    }

    /// A table for the end of a terminal run. Image paths and the details (errors quote what
    /// imgboot and the machine said) are escaped for the terminal.
    public var table: String {
        var rows = [["IMAGE", "MACHINE", "RESULT", "READY", "CHECKS", "DETAILS"]]
        for r in results {
            let passedChecks = r.checks.filter(\.passed).count
            var details: [String] = []
            if let e = r.error { details.append(e) }
            if !r.failedUnits.isEmpty { details.append("failed units: " + r.failedUnits.joined(separator: ", ")) }
            for (i, c) in r.checks.enumerated() where !c.passed {
                details.append("check \(i + 1) (\(c.command)): " + (c.exitCode.map { "exit \($0)" } ?? "timed out"))
            }
            rows.append([printable(r.image), printable(r.machine), r.passed ? "passed" : "FAILED",
                         r.readySeconds.map { formatSeconds($0) + " s" } ?? "-",
                         "\(passedChecks)/\(r.checks.count)", details.isEmpty ? "-" : printable(details.joined(separator: "; "))])
        }
        return textTable(rows)
    }

    private func rounded(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    private func seconds(_ value: Double) -> String { formatSeconds(value) }

    /// XML-escaped text. Characters XML 1.0 cannot hold at all, not even as a reference (C0
    /// controls but tab, newline and carriage return; U+FFFE, U+FFFF), are written as
    /// `printable(_:)` shows them (`\x1b`). The others a terminal would act on — DEL, C1
    /// controls, bidi and invisible characters — are character references (`&#x202e;`): a
    /// parser reads them back as they were, and the file is safe to show raw. A carriage return
    /// is a reference too (parsers would read a newline), and so are tab and newline in an
    /// attribute (parsers would read spaces).
    func escape(_ text: String, attribute: Bool = true) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\t", "\n": out += attribute ? reference(scalar) : String(scalar)
            case "\r": out += reference(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF: out += terminalEscape(scalar)
            case _ where scalar.needsTerminalEscape: out += reference(scalar)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private func reference(_ scalar: Unicode.Scalar) -> String { "&#x" + String(scalar.value, radix: 16) + ";" }
}
