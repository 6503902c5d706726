import Foundation
import Testing

/// Issue 13, item 3: CI containers with a static /dev. Docker and Podman give a container a
/// tmpfs on /dev with the nodes that existed when it started: /dev/loop-control may be there,
/// but not the /dev/loopN that LOOP_CTL_GET_FREE names later (imgboot used to try 50 times and
/// say "every free loop device was taken"). No container engine runs here; the tests give
/// imgboot the same /dev in a mount namespace of their own — a tmpfs with null, zero, full,
/// random, urandom, tty, loop-control, a devpts of its own and ptmx, as Docker's — and run
/// imgboot's commands in it. What they mount and the nodes they make go with the namespace.
@Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mount namespaces"))
struct StaticDevTests {
    /// Replaces /dev with a container's static one, for the script that follows (which finds
    /// its arguments $0, $1, $2 in $imgboot, $image, $mnt).
    static let staticDev = """
        imgboot="$0" image="$1" mnt="$2"
        spec=""
        for n in null zero full random urandom tty loop-control; do spec="$spec $n $(stat -c '%t %T' /dev/$n)"; done
        mount -t tmpfs -o mode=0755,size=1m imgboot-test-dev /dev || exit 90
        set -- $spec
        while [ $# -gt 0 ]; do mknod -m 666 /dev/$1 c $((0x$2)) $((0x$3)) || exit 91; shift 3; done
        chmod 600 /dev/loop-control
        mkdir /dev/pts /dev/shm
        mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || exit 92
        ln -s pts/ptmx /dev/ptmx

        """

    /// inspect (as root: it reads the os-release through a loop device), run and mount work;
    /// the nodes imgboot made are block devices with the kernel's numbers, 0660, group disk,
    /// as devtmpfs and udev make them. Nothing is left on the host, the image is unchanged.
    @Test func inspectRunAndMountWorkWithAStaticDev() throws {
        let image = try ImageCopy("basic")
        let mnt = image.directory + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: false)
        let out = Hardening.inPrivateMountNamespace(Self.staticDev + """
            test -z "$(ls /dev | grep '^loop[0-9]')" || exit 93
            "$imgboot" inspect "$image" | grep '^OS:' || exit 10
            "$imgboot" run "$image" -- cat /etc/imgboot-fixture || exit 11
            "$imgboot" mount --read-only "$image" "$mnt" || exit 12
            cat "$mnt/etc/imgboot-fixture" || exit 13
            "$imgboot" umount "$mnt" || exit 14
            for node in /dev/loop[0-9]*; do
                test "$(stat -c '%t:%T' $node)" = "$(printf '%x:%x' $(tr ':' ' ' < /sys/block/${node#/dev/}/dev))" || echo "$node: not the kernel's numbers"
                stat -c '%F %a %U %G' $node
            done | sort -u
            """, [Harness.binary, image.path, mnt])
        #expect(out.status == 0, "status \(out.status): \(out.stderr)")
        #expect(out.stderr.isEmpty, "\(out.stderr)")
        #expect(out.stdout == "OS:         imgboot busybox 1.0\nbasic\nbasic\nblock special file 660 root disk\n", "\(out.stdout)")
        image.leftovers.expectNone(imageUnchanged: true)
    }

    /// The same /dev made read-only: no node can be made, and imgboot says which one is
    /// missing and what to do — one line, 125, nothing attached.
    @Test func aReadOnlyStaticDevSaysWhatIsMissing() throws {
        let image = try ImageCopy("basic")
        let out = Hardening.inPrivateMountNamespace(Self.staticDev + """
            mount -o remount,ro /dev || exit 94
            exec "$imgboot" run "$image" -- true
            """, [Harness.binary, image.path])
        // Which device the kernel offers depends on what else is attached on the machine.
        let number = out.stderr.split(separator: "/dev/loop").dropFirst().first?.prefix { $0.isNumber } ?? ""
        Hardening.expectOwnFailure(out, image: image.path,
                                   "partition 1: attach loop device: /dev/loop\(number) (block device 7:\(number)) is missing, and creating it failed: Read-only file system (a static /dev, as in a container: make /dev writable with CAP_MKNOD, or create the loop nodes beforehand; see README)")
        image.leftovers.expectNone(imageUnchanged: true)
    }
}
