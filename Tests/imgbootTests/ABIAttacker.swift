import Foundation
import Testing

/// The system call ABIs an x86-64 kernel runs besides its own, and the attacker that makes its
/// system calls through each: `fixtures/abi-attacker.c`, built statically — with `-m32` for
/// i386 (its deeds go through `int $0x80`), and for x86-64 for x32 (its deeds go through
/// `syscall` with the x32 bit in the number) — and cached beside the fixture images with the
/// source it was built from, as `Attacker` is.
enum OtherABI: String, Sendable {
    case i386, x32

    /// The attacker built for this ABI.
    var binary: Swift.Result<String, HarnessError> {
        switch self {
        case .i386: Self.i386Binary
        case .x32: Self.x32Binary
        }
    }

    private static let i386Binary = build(.i386)
    private static let x32Binary = build(.x32)

    private var compilerFlags: [String] { self == .i386 ? ["-m32"] : [] }

    private static let compilers = ["/usr/bin/cc", "/opt/swift/usr/bin/clang"]

    private static func build(_ abi: OtherABI) -> Swift.Result<String, HarnessError> {
        let dir: String
        switch Harness.fixtures {
        case .success(let fixtures): dir = fixtures
        case .failure(let error): return .failure(error)
        }
        let sourcePath = Harness.packageRoot + "/fixtures/abi-attacker.c"
        guard let source = try? String(contentsOfFile: sourcePath, encoding: .utf8) else {
            return .failure(HarnessError("cannot read \(sourcePath)"))
        }
        let binary = dir + "/abi-attacker-\(abi.rawValue)", cachedSource = binary + ".c"
        if (try? String(contentsOfFile: cachedSource, encoding: .utf8)) == source,
           FileManager.default.isExecutableFile(atPath: binary) {
            return .success(binary)
        }
        let building = binary + ".\(getpid())"
        var errors: [String] = []
        for compiler in compilers where FileManager.default.isExecutableFile(atPath: compiler) {
            let out = Harness.run([compiler] + abi.compilerFlags + ["-static", "-O1", "-o", building, sourcePath])
            if out.status == 0 {
                // Binary first: a source that matches always has its binary.
                guard rename(building, binary) == 0,
                      (try? source.write(toFile: cachedSource, atomically: true, encoding: .utf8)) != nil else { break }
                return .success(binary)
            }
            errors.append("\(compiler): \(out.stderr)")
        }
        unlink(building)
        return .failure(HarnessError("cannot compile fixtures/abi-attacker.c for \(abi.rawValue): \(errors)"))
    }

    /// Whether a static 32-bit program can be built here at all (`cc -m32 -static`: gcc-multilib
    /// and libc6-dev-i386). Without it the i386 attacks are skipped, and say why; with it, an
    /// attacker that does not build is a failure.
    static let hasToolchain32: Bool = {
        guard let scratch = try? ScratchDirectory("imgboot-m32") else { return false }
        let source = scratch.path + "/empty.c"
        guard (try? "int main(void) { return 0; }\n".write(toFile: source, atomically: false, encoding: .utf8)) != nil else {
            return false
        }
        return compilers.contains { compiler in
            FileManager.default.isExecutableFile(atPath: compiler)
                && Harness.run([compiler, "-m32", "-static", "-o", scratch.path + "/empty", source]).status == 0
        }
    }()

    /// Whether this kernel runs the ABI: getpid through it answers, on the host (the control
    /// of every attack through it). A kernel without the ABI answers ENOSYS (x32: built without
    /// CONFIG_X86_X32_ABI, or `syscall.x32=n`) or does not run the program (i386: no
    /// CONFIG_IA32_EMULATION, or `ia32_emulation=0`). An attacker that cannot be built counts as
    /// running, so that the tests fail and say why instead of being skipped.
    var runsHere: Bool {
        guard case .success(let path) = binary else { return true }
        return Harness.run([path, "abi"]).stdout == "getpid (\(rawValue)): ok\n"
    }

    /// The attacker's path, and the `--bind-ro` that puts it at /tmp/abi-attacker in a container.
    func bind() throws -> (path: String, option: String) {
        let path = try binary.get()
        return (path, "--bind-ro=\(path):/tmp/abi-attacker")
    }
}
