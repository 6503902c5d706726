import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 13, item 1: `imgboot mount` only where nothing is mounted. A second tree on a
/// directory used to stack on the first (6 mounts, 6 loop devices, one record, and an `umount`
/// that took down only part of it); a tree on a directory with mounts below it hides them.
/// Refused with one line naming the directory, 125, nothing attached, mounted or recorded.
///
/// Part of `MountCommandTests`, whose suites run one test at a time: these mount on the host.
extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct MountTargetTests {
        /// The same image, or another, on a directory imgboot mount already has a tree on: refused
        /// (the message says how to free it), and the first tree is whole — `umount` takes all of
        /// it down and nothing is left.
        @Test(arguments: ["the same image", "another image"])
        func aSecondTreeOnTheSameDirectoryIsRefused(second: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let host = HostMounts(outside: s.dir)
            try s.mountExpectingSuccess(["--read-only"])
            let tree = s.mountsBelow().map(\.description)
            let devices = Harness.loopDevices(backing: s.image)
            let other = try Scratch("bare-ext4")
            defer { other.cleanUp() }

            let image = second == "the same image" ? s.image : other.image
            let out = try Harness.imgboot(["mount", "--read-only", image, s.mnt])
            Hardening.expectOwnFailure(out, image: s.mnt,
                                       "already a mount point: imgboot mount mounted \(s.image) there (imgboot umount \(s.mnt) first)")
            #expect(s.mountsBelow().map(\.description) == tree, "the tree changed")
            #expect(Harness.loopDevices(backing: s.image) == devices)
            #expect(Harness.loopDevices(backing: other.image).isEmpty)
            try s.umountAndExpectNothingLeft(host)
        }

        /// A directory something else is mounted on (a tmpfs of the test's own), or one with a
        /// mount below it: refused, naming what is mounted; nothing of the image is attached,
        /// and the test's mount is still there, unhidden.
        @Test(arguments: ["on it", "below it"])
        func aDirectoryWithAMountIsRefused(where place: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let target = place == "on it" ? s.mnt : s.mnt + "/inner"
            if place == "below it" { try #require(mkdir(target, 0o755) == 0) }
            try #require(Harness.run(["/bin/mount", "-t", "tmpfs", "-o", "size=1m", "imgboot-test", target]).status == 0)
            defer { umount2(target, Int32(MNT_DETACH)) }
            let before = s.mountsBelow().map(\.description)

            for options in [[], ["--read-only"], ["--volatile=overlay"]] {
                let out = try s.mount(options)
                if place == "on it" {
                    Hardening.expectOwnFailure(out, image: s.mnt,
                                               "already a mount point (tmpfs from imgboot-test): imgboot mounts a tree only where nothing is mounted")
                } else {
                    Hardening.expectOwnFailure(out, image: s.mnt, "\(target) is a mount point below it, which a tree mounted there would hide")
                }
                #expect(s.mountsBelow().map(\.description) == before)
                #expect(Harness.loopDevices(backing: s.image).isEmpty)
                #expect(Harness.processes(matching: "keep-locks \(s.image)").isEmpty)
            }
            #expect(MountTop.at(target)?.fsType == "tmpfs")
        }

        /// The host's root and API filesystems: refused (/ by its own message), untouched.
        @Test(arguments: ["/", "/proc", "/sys", "/dev"])
        func hostMountPointsAreRefused(dir: String) throws {
            let s = try Scratch("basic")
            defer { s.cleanUp() }
            let before = MountTop.at(dir)
            let out = try Harness.imgboot(["mount", "--read-only", s.image, dir])
            if dir == "/" {
                Hardening.expectOwnFailure(out, image: "/", "imgboot mounts an image on a directory, never on the host's root")
            } else {
                Hardening.expectOwnFailure(out, image: dir, "already a mount point", exact: false)
            }
            #expect(MountTop.at(dir) == before)
            #expect(Harness.loopDevices(backing: s.image).isEmpty)
        }

        /// Two imgboot mounts of two images on one directory at once: one tree, whole; the other
        /// command refused. Whichever wins, `umount` leaves nothing.
        @Test func twoMountsAtOnceOnOneDirectory() throws {
            let a = try Scratch("basic")
            defer { a.cleanUp() }
            let host = HostMounts(outside: a.dir)
            let b = try Scratch("basic")
            defer { b.cleanUp() }
            for _ in 0..<5 {
                let first = try BackgroundProcess([Harness.binary, "mount", "--read-only", a.image, a.mnt])
                let second = try BackgroundProcess([Harness.binary, "mount", "--read-only", b.image, a.mnt])
                let statuses = [first.exitStatus(within: 60), second.exitStatus(within: 60)]
                #expect(statuses.sorted { ($0 ?? -1) < ($1 ?? -1) } == [0, 125], "statuses \(statuses): \(first.stderr) \(second.stderr)")
                let loser = statuses[0] == 0 ? second : first
                #expect(loser.stderr.contains("already a mount point: imgboot mount mounted "), "\(loser.stderr)")
                #expect(Harness.loopDevices(backing: a.image).count + Harness.loopDevices(backing: b.image).count == 3)
                try a.umountAndExpectNothingLeft(host)
                #expect(Harness.loopDevices(backing: b.image).isEmpty)
            }
        }
    }
}
