import Foundation
import Testing

/// What the hardening suites (issue 6: `HardeningMalformedTests`, `HardeningHostileTests`,
/// `HardeningFaultTests`, `HardeningConcurrencyTests`) share, beside `Harness`, `ImageCopy`,
/// `Leftovers` and `BackgroundProcess`.
enum Hardening {
    /// imgboot's own failure as the issue wants it: exit status 125, nothing on stdout, and
    /// exactly one line on stderr, `imgboot: IMAGE: MESSAGE` (`message` is that line's start
    /// after the image, or all of it when `exact`).
    static func expectOwnFailure(
        _ out: Harness.Output, image: String, _ message: String, exact: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(out.status == 125, "exit status \(out.status); stderr: \(out.stderr)", sourceLocation: sourceLocation)
        #expect(out.stdout.isEmpty, "stdout: \(out.stdout)", sourceLocation: sourceLocation)
        let line = "imgboot: \(image): \(message)"
        if exact {
            #expect(out.stderr == line + "\n", sourceLocation: sourceLocation)
        } else {
            #expect(out.stderr.hasPrefix(line), "stderr: \(out.stderr)", sourceLocation: sourceLocation)
            #expect(out.stderr.split(separator: "\n", omittingEmptySubsequences: false).count == 2,
                    "more than one line: \(out.stderr)", sourceLocation: sourceLocation)
        }
    }

    /// Runs a command under `/usr/bin/time` and returns its output and its peak resident set
    /// size in KiB (nil if time could not say).
    static func peakRSS(_ command: [String]) throws -> (Harness.Output, Int?) {
        let scratch = try ScratchDirectory("imgboot-rss")
        let report = scratch.path + "/time"
        let out = Harness.run(["/usr/bin/time", "-f", "%M", "-o", report] + command)
        let kib = (try? String(contentsOfFile: report, encoding: .utf8))?
            .split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return (out, kib)
    }

    /// The byte offset of GPT partition `number` in `image` (as `gpt-patch.py --list` reads it).
    static func partitionOffset(_ image: String, _ number: Int) throws -> UInt64 {
        try partition(image, number).offset
    }

    /// The byte offset and size of GPT partition `number` in `image` (`gpt-patch.py --list`).
    static func partition(_ image: String, _ number: Int) throws -> (offset: UInt64, size: UInt64) {
        let list = Harness.run(["/usr/bin/python3", Harness.packageRoot + "/tools/lib/gpt-patch.py", image, "--list"])
        for line in list.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 2, Int(fields[0]) == number, let offset = UInt64(fields[1]), let size = UInt64(fields[2]) {
                return (offset, size)
            }
        }
        throw HarnessError("no partition \(number) in \(image): \(list.stderr)")
    }

    /// Edits the ext4 of partition `partition` of a private image copy with `debugfs -w`, one
    /// command per element (paths relative to the filesystem's root), then checks it with
    /// `e2fsck -fn`: an image variant made at test time, as fixtures/README.md's `debugfs_part`
    /// makes them at build time.
    static func debugfs(_ image: String, partition: Int = 1, _ commands: [String]) throws {
        let offset = try partitionOffset(image, partition)
        let scratch = try ScratchDirectory("imgboot-debugfs")
        let script = scratch.path + "/commands"
        try (commands.joined(separator: "\n") + "\n").write(toFile: script, atomically: false, encoding: .utf8)
        let device = "\(image)?offset=\(offset)"
        let edit = Harness.run(["/sbin/debugfs", "-w", "-f", script, device])
        let errors = edit.stderr.split(separator: "\n").filter { !$0.hasPrefix("debugfs ") }
        guard edit.status == 0, errors.isEmpty else { throw HarnessError("debugfs \(commands): \(edit.stderr)") }
        let check = Harness.run(["/sbin/e2fsck", "-fn", device])
        guard check.status == 0 else { throw HarnessError("e2fsck after debugfs \(commands): \(check.stdout)\(check.stderr)") }
    }

    /// Runs `script` with `sh -c` in a mount namespace of its own (`unshare -m`, private
    /// propagation): what it mounts there (a tmpfs over /run, /dev/null over /dev/loop-control,
    /// a read-only bind) never reaches the host's mount table. `$0` and `$1`… are `arguments`.
    static func inPrivateMountNamespace(_ script: String, _ arguments: [String] = []) -> Harness.Output {
        Harness.run(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script] + arguments)
    }

    /// Whether the kernel can mount `fs`: it is in /proc/filesystems, or is after `modprobe`
    /// (as tools/build-fixtures decides whether it can build the fixtures that mount it).
    static func kernelHasFilesystem(_ fs: String) -> Bool {
        func listed() -> Bool {
            let text = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").contains { $0.split(whereSeparator: \.isWhitespace).last.map(String.init) == fs }
        }
        if listed() { return true }
        _ = Harness.run(["/sbin/modprobe", "-q", fs])  // its status says less than the list afterwards
        return listed()
    }
    static let hasXFS = kernelHasFilesystem("xfs")
    static let hasBtrfs = kernelHasFilesystem("btrfs")

    /// Whether the tools the suites use beyond `Harness`'s are here (`tools/test` installs them).
    static let hasStrace = FileManager.default.isExecutableFile(atPath: "/usr/bin/strace")
    static let hasTime = FileManager.default.isExecutableFile(atPath: "/usr/bin/time")
    static let hasScript = FileManager.default.isExecutableFile(atPath: "/usr/bin/script")

    /// The host's block device with this major:minor, if it has one (/sys/dev/block).
    static func hostHasBlockDevice(_ major: Int, _ minor: Int) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/dev/block/\(major):\(minor)")
    }

    // MARK: - The payload

    /// A static program for the container to run what busybox cannot: TIOCSTI, the module
    /// syscalls, and opens that report errno exactly. Built with the Swift toolchain's clang (or
    /// cc) against glibc's static libc (libc6-dev), and cached next to the fixture images with
    /// its source: rebuilt only when the source below changes. Each command prints one line
    /// per attempt, "WHAT: ok" or "WHAT: ERRNO-NAME".
    static let payload: Swift.Result<String, HarnessError> = {
        let dir: String
        switch Harness.fixtures {
        case .success(let fixtures): dir = fixtures
        case .failure(let error): return .failure(error)
        }
        let source = dir + "/hardening-payload.c", binary = dir + "/hardening-payload"
        if (try? String(contentsOfFile: source, encoding: .utf8)) == payloadSource,
           FileManager.default.isExecutableFile(atPath: binary) {
            return .success(binary)
        }
        let building = binary + ".\(getpid())"
        do { try payloadSource.write(toFile: source + ".\(getpid())", atomically: false, encoding: .utf8) } catch {
            return .failure(HarnessError("cannot write \(source): \(error)"))
        }
        var errors: [String] = []
        for compiler in ["/opt/swift/usr/bin/clang", "/usr/bin/cc"] where FileManager.default.isExecutableFile(atPath: compiler) {
            let out = Harness.run([compiler, "-static", "-O1", "-x", "c", "-o", building, source + ".\(getpid())"])
            if out.status == 0 {
                // Binary first: a source that matches always has its binary.
                guard rename(building, binary) == 0, rename(source + ".\(getpid())", source) == 0 else { break }
                return .success(binary)
            }
            errors.append("\(compiler): \(out.stderr)")
        }
        unlink(building)
        unlink(source + ".\(getpid())")
        return .failure(HarnessError("cannot compile the payload (needs clang or cc, and libc6-dev): \(errors)"))
    }()

    static let payloadSource = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <fcntl.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/ioctl.h>
        #include <sys/stat.h>
        #include <sys/syscall.h>
        #include <unistd.h>

        static void report(const char *what, int result) {
            if (result < 0)
                printf("%s: %s\n", what, strerrorname_np(errno));
            else
                printf("%s: ok\n", what);
            fflush(stdout);
        }

        /* TIOCSTI: push TEXT into the input queue of the terminal on fd. */
        static int push(int fd, const char *text) {
            for (const char *c = text; *c; c++)
                if (ioctl(fd, TIOCSTI, c) < 0)
                    return -1;
            return 0;
        }

        int main(int argc, char **argv) {
            if (argc == 3 && strcmp(argv[1], "tiocsti-stdin") == 0) {
                /* Only standard input: safe to run on the host, as the test's own control. */
                report("tiocsti fd 0", push(0, argv[2]));
                return 0;
            }
            if (argc == 3 && strcmp(argv[1], "tiocsti") == 0) {
                /* Every terminal the process can reach: its standard streams, its controlling
                   terminal, the console. Never on the host: its /dev/console is the machine's. */
                report("tiocsti fd 0", push(0, argv[2]));
                report("tiocsti fd 1", push(1, argv[2]));
                report("tiocsti fd 2", push(2, argv[2]));
                const char *paths[] = { "/dev/tty", "/dev/console" };
                for (int i = 0; i < 2; i++) {
                    char what[64];
                    snprintf(what, sizeof what, "tiocsti %s", paths[i]);
                    int fd = open(paths[i], O_RDWR | O_NOCTTY);
                    report(what, fd < 0 ? fd : push(fd, argv[2]));
                    if (fd >= 0)
                        close(fd);
                }
                return 0;
            }
            if (argc == 3 && strcmp(argv[1], "modules") == 0) {
                /* Load argv[2] as a kernel module, by both system calls. */
                static char image[1 << 16];
                int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                    report("open module", -1);
                    return 1;
                }
                ssize_t n = read(fd, image, sizeof image);
                report("init_module", syscall(SYS_init_module, image, n > 0 ? (size_t)n : 0, ""));
                report("finit_module", syscall(SYS_finit_module, fd, "", 0));
                close(fd);
                return 0;
            }
            if (argc == 4 && strcmp(argv[1], "open") == 0) {
                /* open PATH r|w|rw, and read a byte when it opened for reading */
                int flags = strcmp(argv[3], "r") == 0 ? O_RDONLY : strcmp(argv[3], "w") == 0 ? O_WRONLY : O_RDWR;
                char what[4200];
                snprintf(what, sizeof what, "open %s %s", argv[2], argv[3]);
                int fd = open(argv[2], flags | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
                report(what, fd);
                if (fd >= 0) {
                    if (flags != O_WRONLY) {
                        char byte;
                        snprintf(what, sizeof what, "read %s", argv[2]);
                        report(what, (int)read(fd, &byte, 1));
                    }
                    close(fd);
                }
                return 0;
            }
            fprintf(stderr, "usage: payload tiocsti[-stdin] TEXT | modules FILE | open PATH r|w|rw\n");
            return 2;
        }
        """#
}
