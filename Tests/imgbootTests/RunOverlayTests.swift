import Foundation
import Testing

/// `--overlay=LOWER…:UPPER:DST` and `--overlay-ro=`, as systemd-nspawn has them: host
/// directories (or the image's, `+PATH`) stacked where the container sees them, the changes in
/// UPPER on the host (or in a tmpfs when UPPER is empty), the lower layers never written, the
/// work directory made beside UPPER and gone afterwards, the image untouched.
@Suite(.enabled(if: Harness.isRoot, "containers need root"))
struct RunOverlayTests {
    /// Host layers in a scratch directory: lower/{a,b,sub/c}, upper/u.
    private static func layers(in directory: String) throws -> (lower: String, upper: String) {
        let lower = directory + "/lower", upper = directory + "/upper"
        try FileManager.default.createDirectory(atPath: lower + "/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        try "lower a\n".write(toFile: lower + "/a", atomically: false, encoding: .utf8)
        try "lower b\n".write(toFile: lower + "/b", atomically: false, encoding: .utf8)
        try "lower c\n".write(toFile: lower + "/sub/c", atomically: false, encoding: .utf8)
        try "upper u\n".write(toFile: upper + "/u", atomically: false, encoding: .utf8)
        return (lower, upper)
    }

    private static func contents(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    private static func owner(_ path: String) -> (uid: UInt32, gid: UInt32)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_uid, st.st_gid)
    }

    /// What imgboot made beside UPPER (`.#upper.imgboot-work-MACHINE`), if anything is left.
    private static func workDirectories(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(".#") }
    }

    /// Reads go through to the lower layers, every change lands in UPPER, owned on the host as
    /// the container's root owns it inside (the host's root: with a user namespace the layers
    /// are idmapped), a deleted lower file is a whiteout in UPPER; the lower directory is
    /// unchanged and no work directory is left.
    @Test(arguments: ["pick", "no"])
    func changesLandInTheUpperDirectory(privateUsers: String) throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        let lines = try image.sh(["--private-users=\(privateUsers)", "--overlay=\(lower):\(upper):/data"], """
            cat /data/a /data/u /data/sub/c
            stat -c '%n %u %g' /data /data/a /data/sub
            echo new >/data/n
            echo more >>/data/a
            rm /data/b
            mkdir /data/d
            ls /data | tr '\\n' ' '
            """)
        #expect(lines == ["lower a", "upper u", "lower c", "/data 0 0", "/data/a 0 0", "/data/sub 0 0", "a d n sub u "])
        #expect(Self.contents(upper + "/n") == "new\n")
        #expect(Self.contents(upper + "/a") == "lower a\nmore\n")
        #expect(Self.owner(upper + "/n").map { [$0.uid, $0.gid] } == [0, 0], "a file the container's root made belongs to the host's root")
        #expect(Self.owner(upper + "/d").map { [$0.uid, $0.gid] } == [0, 0])
        var st = stat()
        #expect(lstat(upper + "/b", &st) == 0 && st.st_mode & S_IFMT == S_IFCHR && st.st_rdev == 0, "b is a whiteout in UPPER")
        #expect(Self.contents(lower + "/a") == "lower a\n")
        #expect(Self.contents(lower + "/b") == "lower b\n")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: lower)) ?? []).sorted() == ["a", "b", "sub"])
        #expect(Self.workDirectories(in: image.directory).isEmpty)
        #expect(image.isUnchanged)
    }

    /// An empty UPPER keeps the changes in a tmpfs: the image's /etc made writable over a
    /// read-only tree (`--volatile=state`), its files still there, owned as in the image; the
    /// next run sees none of the changes, and the image is unchanged.
    @Test(arguments: ["pick", "no"])
    func temporaryChangesOverTheImage(privateUsers: String) throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh(["--private-users=\(privateUsers)", "--volatile=state", "--overlay=+/etc::/etc"], """
            echo changed >/etc/imgboot-overlay && cat /etc/imgboot-overlay
            test -s /etc/passwd && echo passwd
            stat -c '%u %g %a' /etc
            touch /usr/imgboot-overlay 2>/dev/null || echo usr read-only
            """)
        #expect(lines == ["changed", "passwd", "0 0 755", "usr read-only"])
        #expect(try image.sh(["--private-users=\(privateUsers)", "--volatile=state"], "test -e /etc/imgboot-overlay || echo gone") == ["gone"])
        #expect(image.isUnchanged)
    }

    /// `--overlay-ro`: UPPER is the top layer of a read-only overlay; nothing is written
    /// anywhere, and no work directory is made.
    @Test func readOnlyOverlay() throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        try "upper a\n".write(toFile: upper + "/a", atomically: false, encoding: .utf8)
        let lines = try image.sh(["--overlay-ro=\(lower):\(upper):/data"], """
            cat /data/a /data/b /data/u
            touch /data/new 2>&1 | grep -c 'Read-only file system'
            """)
        #expect(lines == ["upper a", "lower b", "upper u", "1"])
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: upper)) ?? []).sorted() == ["a", "u"])
        #expect(Self.workDirectories(in: image.directory).isEmpty)
        #expect(image.isUnchanged)
    }

    /// nspawn's short form `LOWER:UPPER`: the container sees the overlay at UPPER's host path;
    /// `\:` is a colon of a path.
    @Test func twoPathsAndAColon() throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        let colon = image.directory + "/with:colon"
        try FileManager.default.moveItem(atPath: lower, toPath: colon)
        let escaped = colon.replacingOccurrences(of: ":", with: "\\:")
        #expect(try image.sh(["--overlay=\(escaped):\(upper)"], "cat \(upper)/a \(upper)/u") == ["lower a", "upper u"])
        #expect(Self.workDirectories(in: image.directory).isEmpty)
        #expect(image.isUnchanged)
    }

    /// A `+PATH` source is the image's, resolved inside it: a symlink in the image that points
    /// at the host's directory of a secret gives the image's own directory (here, nothing), never
    /// the host's.
    @Test func imageSourceCannotLeaveTheImage() throws {
        let image = try ImageCopy("basic")
        let secretDirectory = image.directory + "/secret"
        try FileManager.default.createDirectory(atPath: secretDirectory, withIntermediateDirectories: true)
        let secret = "host-secret-\(UUID().uuidString)"
        try secret.write(toFile: secretDirectory + "/key", atomically: false, encoding: .utf8)
        try Hardening.debugfs(image.path, ["symlink /escape /../../../../../..\(secretDirectory)"])
        let out = try image.run(["--overlay=+/escape::/data"], ["sh", "-c", "cat /data/key; ls -A /data; true"])
        #expect(!out.stdout.contains(secret), "the host's secret leaked: \(out.stdout)")
        #expect(!out.stdout.contains("key"), "\(out.stdout)")
        #expect(Self.contents(secretDirectory + "/key") == secret)
    }

    /// A work directory a killed run of this machine left is replaced; anything else of its name
    /// (here a symlink to a host directory) is refused and left alone.
    @Test func workDirectoryOfAKilledRun() throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        let work = image.directory + "/.#upper.imgboot-work-\(image.machine)"
        try FileManager.default.createDirectory(atPath: work + "/work/leftover", withIntermediateDirectories: true)
        #expect(try image.sh(["--overlay=\(lower):\(upper):/data"], "cat /data/a") == ["lower a"])
        #expect(Self.workDirectories(in: image.directory).isEmpty)

        let target = image.directory + "/target"
        try FileManager.default.createDirectory(atPath: target + "/keep", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: work, withDestinationPath: target)
        let out = try image.run(["--overlay=\(lower):\(upper):/data"], ["true"])
        Hardening.expectOwnFailure(out, image: image.path, "--overlay: \(work) exists and is not a work directory imgboot left; remove it")
        #expect(FileManager.default.fileExists(atPath: target + "/keep"))
        #expect(image.isUnchanged)
    }

    /// What cannot work says so in one line with status 125, before or without changing anything.
    @Test func refusals() throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        var out = try image.run(["--overlay=\(image.directory)/missing:\(upper):/data"], ["true"])
        Hardening.expectOwnFailure(out, image: image.path, "--overlay source \(image.directory)/missing: No such file or directory")
        out = try image.run(["--overlay=\(lower):\(image.directory)/missing:/data"], ["true"])
        #expect(out.status == 125)
        #expect(out.stderr == "imgboot: --overlay upper directory \(image.directory)/missing: cannot resolve it: No such file or directory\n")
        out = try image.run(["--private-users=no", "--overlay=\(lower):/proc:/data"], ["true"])
        Hardening.expectOwnFailure(out, image: image.path,
                                   "--overlay: the upper directory /proc is a mount point; its work directory must be made beside it, on its filesystem (use a directory below it)")
        out = try image.run(["--volatile=state", "--overlay=\(lower):\(upper):/newdir"], ["true"])
        Hardening.expectOwnFailure(out, image: image.path,
                                   "the read-only image has no /newdir directory (imgboot never writes the image to create it)")
        #expect(Self.workDirectories(in: image.directory).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: upper)) ?? []) == ["u"])
        #expect(image.isUnchanged)
    }

    /// Malformed: usage errors, before anything is attached.
    @Test(arguments: [
        ("--overlay=/a", "expected LOWER…:UPPER:DST, or LOWER:UPPER"),
        ("--overlay=rel:/b:/c", "\"rel\": sources are absolute host paths, or +PATH for the image's"),
        ("--overlay=/a:+/b:/c", "UPPER must be a host directory (its work directory is made beside it), or empty for a tmpfs"),
        ("--overlay-ro=/a::/c", "an empty UPPER (a tmpfs for the changes) is only for --overlay"),
        ("--overlay=/a:/b:rel", "the container's path must be absolute, without \"..\""),
        ("--overlay=/a:/b:/c/../d", "the container's path must be absolute, without \"..\""),
        ("--overlay=/a:", "with two paths, UPPER is also the container's path and cannot be empty"),
    ])
    func malformed(_ option: String, _ reason: String) throws {
        let image = try ImageCopy("basic")
        let out = try image.run([option], ["true"])
        #expect(out.status == 125)
        #expect(out.stderr.hasPrefix("Error: \(option): \(reason)\n"), "\(out.stderr)")
        #expect(image.isUnchanged)
    }

    /// --dry-run names the layers top first, where the changes go and the work directory.
    @Test func dryRun() throws {
        let image = try ImageCopy("basic")
        let (lower, upper) = try Self.layers(in: image.directory)
        let plan = try Harness.imgboot(["run", "--dry-run", "--overlay=\(lower):+/etc:\(upper):/data", "--overlay=+/var::/var", image.path, "true"])
        #expect(plan.status == 0)
        let real = URL(fileURLWithPath: upper).resolvingSymlinksInPath().path
        let parent = (real as NSString).deletingLastPathComponent
        #expect(plan.stdout.contains("mount an overlay of the tree's /etc over the host's \(lower) on /data (nodev) (changes in the host's \(real), work directory \(parent)/.#upper.imgboot-work-\(image.machine))"), "\(plan.stdout)")
        #expect(plan.stdout.contains("mount an overlay of the tree's /var on /var (nodev) (changes in a tmpfs)"), "\(plan.stdout)")
        #expect(Self.workDirectories(in: image.directory).isEmpty)
    }
}
