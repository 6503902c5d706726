import Foundation
import Testing

/// The attacker of the containment tests: `fixtures/attacker.c`, a static program that performs,
/// inside a container, the attacks of issue 10 (ptrace of PID 1, /proc/1/map_files, file handles,
/// BPF, keyrings, a process that joins the container…), plus the host-side helpers to set them
/// up. Built with the system's C compiler against glibc's static libc (libc6-dev), cached beside
/// the fixture images with the source it was built from: rebuilt only when the source changes.
enum Attacker {
    static let binary: Swift.Result<String, HarnessError> = {
        let dir: String
        switch Harness.fixtures {
        case .success(let fixtures): dir = fixtures
        case .failure(let error): return .failure(error)
        }
        let sourcePath = Harness.packageRoot + "/fixtures/attacker.c"
        guard let source = try? String(contentsOfFile: sourcePath, encoding: .utf8) else {
            return .failure(HarnessError("cannot read \(sourcePath)"))
        }
        let cachedSource = dir + "/attacker.c", binary = dir + "/attacker"
        if (try? String(contentsOfFile: cachedSource, encoding: .utf8)) == source,
           FileManager.default.isExecutableFile(atPath: binary) {
            return .success(binary)
        }
        let building = binary + ".\(getpid())"
        var errors: [String] = []
        for compiler in ["/usr/bin/cc", "/opt/swift/usr/bin/clang"] where FileManager.default.isExecutableFile(atPath: compiler) {
            let out = Harness.run([compiler, "-static", "-O1", "-o", building, sourcePath])
            if out.status == 0 {
                // Binary first: a source that matches always has its binary.
                guard rename(building, binary) == 0,
                      (try? source.write(toFile: cachedSource, atomically: true, encoding: .utf8)) != nil else { break }
                return .success(binary)
            }
            errors.append("\(compiler): \(out.stderr)")
        }
        unlink(building)
        return .failure(HarnessError("cannot compile fixtures/attacker.c (needs cc or clang, and libc6-dev): \(errors)"))
    }()

    /// The attacker's path, and the `--bind-ro` that puts it at /tmp/attacker in a container.
    static func bind() throws -> (path: String, option: String) {
        let path = try binary.get()
        return (path, "--bind-ro=\(path):/tmp/attacker")
    }

    /// The host's audit trail: the kernel's log, where audit messages go when no audit daemon
    /// takes them (AUDIT_USER_AVC even with auditing off), and the audit daemon's log.
    static func hostAuditTrail() -> String {
        Harness.run(["/bin/dmesg"]).stdout + ((try? String(contentsOfFile: "/var/log/audit/audit.log", encoding: .utf8)) ?? "")
    }

    /// Runs `audit MARKER` of an attacker on the host — the control of the audit attacks — and
    /// says whether the host's audit trail took its message through socket().
    static func auditControl(_ attacker: String, _ marker: String) -> (out: Harness.Output, logged: Bool) {
        let out = Harness.run([attacker, "audit", marker])
        return (out, Harness.waitUntil(upTo: 2) { hostAuditTrail().contains("'\(marker) through socket'") })
    }

    /// The lines the attacker printed that start with `prefix`.
    static func lines(_ output: String, _ prefix: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }
    }
}
