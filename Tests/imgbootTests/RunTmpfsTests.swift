import Foundation
import Testing

/// `--tmpfs=PATH[:OPTIONS]`, as systemd-nspawn has it: a fresh tmpfs where the container sees
/// it, owned by its root (or the UID the options name, inside the range), never written to the
/// image, gone with the container.
@Suite(.enabled(if: Harness.isRoot, "containers need root"))
struct RunTmpfsTests {
    /// Over a directory of the image (hiding it) and on a new one; mode 0755 by default, the
    /// options' mode and owner when given; nodev always; with a user namespace and without.
    @Test(arguments: ["pick", "no"])
    func mountsWhereAsked(privateUsers: String) throws {
        let image = try ImageCopy("basic")
        let lines = try image.sh(["--private-users=\(privateUsers)", "--tmpfs=/srv/www", "--tmpfs=/scratch:mode=0700,uid=1000,gid=100,size=1m"], """
            grep -E ' /(srv/www|scratch) ' /proc/mounts | cut -d' ' -f1-3
            stat -c '%n %a %u %g' /srv/www /scratch
            ls -A /srv/www | wc -l
            grep -E ' /srv/www ' /proc/mounts | grep -c nodev
            echo hello >/srv/www/new && cat /srv/www/new
            df -k /scratch | tail -1 | awk '{print $2}'
            """)
        #expect(lines == ["tmpfs /srv/www tmpfs", "tmpfs /scratch tmpfs", "/srv/www 755 0 0", "/scratch 700 1000 100", "0", "1", "hello", "1024"])
        #expect(image.isUnchanged)
    }

    /// A colon in the path is `\:`; --dry-run lists the mount with its options.
    @Test func pathWithAColonAndTheDryRun() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh([#"--tmpfs=/a\:b"#], "grep -c ' /a:b tmpfs ' /proc/mounts") == ["1"])
        let plan = try Harness.imgboot(["run", "--dry-run", "--tmpfs=/mnt:size=1m", image.path, "true"])
        #expect(plan.status == 0)
        #expect(plan.stdout.contains("mount tmpfs on /mnt (size=1m,nodev)"), "\(plan.stdout)")
        #expect(image.isUnchanged)
    }

    /// Where the image is read-only a mount point cannot be made: one line, 125, nothing left.
    @Test func newDirectoryInAReadOnlyTree() throws {
        let image = try ImageCopy("basic")
        let out = try image.run(["--volatile=state", "--tmpfs=/newdir"], ["true"])
        Hardening.expectOwnFailure(out, image: image.path,
                                   "the read-only image has no /newdir directory (imgboot never writes the image to create it)")
        #expect(image.isUnchanged)
    }

    /// Malformed: usage errors, before anything is attached.
    @Test(arguments: ["rel", "/", "/a/../b", "/a:", "/a:mode=0700,"])
    func malformed(_ value: String) throws {
        let image = try ImageCopy("basic")
        let out = try image.run(["--tmpfs=\(value)"], ["true"])
        #expect(out.status == 125)
        #expect(out.stderr.hasPrefix("Error: --tmpfs=\(value): "), "\(out.stderr)")
        #expect(image.isUnchanged)
    }
}
