import Foundation
import Testing

/// `imgboot mount` and `imgboot umount` against issue 10's items 10 and 11, performed for real:
/// a setuid-root program in an untrusted image run by an unprivileged user, and `umount` of
/// directories imgboot did not mount. What is checked is what happened on the host: whose
/// rights the program had, and which mounts are still there.
///
/// Part of `MountCommandTests`, whose suites run one test at a time: they compare the host's
/// mount table before and after, and these tests mount on the host.
extension MountCommandTests {
    @Suite(.enabled(if: Harness.isRoot, "needs root, loop devices and mounts"))
    struct MountSafetyTests {
        // MARK: - Item 10: nosuid

        /// A copy of `basic` with the static payload at /usr/bin/imgboot-suid, owned by root with
        /// mode 04755 (made with debugfs, as a hostile image would ship it), and a file only root
        /// can read: the payload, run as nobody from the mounted tree, opens that file only if the
        /// set-user-ID bit gave it root.
        final class SetuidImage {
            let copy: ImageCopy
            let mnt: String
            let secret: String

            init() throws {
                copy = try ImageCopy("basic")
                let payload = try Hardening.payload.get()
                try Hardening.debugfs(copy.path, partition: 1, [
                    "cd /usr/bin", "write \(payload) imgboot-suid",
                    "set_inode_field imgboot-suid mode 0104755", "set_inode_field imgboot-suid uid 0", "set_inode_field imgboot-suid gid 0",
                ])
                // nobody must reach the tree and the secret's directory, never the secret.
                chmod(copy.directory, 0o755)
                mnt = copy.directory + "/mnt"
                secret = copy.directory + "/secret"
                guard mkdir(mnt, 0o755) == 0, FileManager.default.createFile(atPath: secret, contents: Data("s".utf8)),
                      chmod(secret, 0o600) == 0 else { throw HarnessError("cannot prepare \(copy.directory)") }
            }

            /// The payload of the mounted tree, run as nobody: what it could open.
            func openSecretAsNobody() -> Harness.Output {
                Store.asNobody([mnt + "/usr/bin/imgboot-suid", "open", secret, "r"])
            }

            /// The mounts at and below the tree's directory: mount point and per-mount options.
            func treeMounts() -> [(point: String, options: Set<String>)] {
                let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
                return text.split(separator: "\n").compactMap { line in
                    let f = line.split(separator: " ").map(String.init)
                    guard f.count > 5, f[4] == mnt || f[4].hasPrefix(mnt + "/") else { return nil }
                    return (f[4], Set(f[5].split(separator: ",").map(String.init)))
                }
            }

            func umountExpectingNothingLeft(sourceLocation: SourceLocation = #_sourceLocation) {
                let out = (try? Harness.imgboot(["umount", mnt])) ?? Harness.Output(status: -1, stdout: "", stderr: "")
                #expect(out.status == 0, "umount: \(out.stderr)", sourceLocation: sourceLocation)
                #expect(treeMounts().isEmpty, "still mounted: \(treeMounts().map(\.point))", sourceLocation: sourceLocation)
                copy.leftovers.expectNone(imageUnchanged: false, sourceLocation: sourceLocation)
                for mount in treeMounts().reversed() { umount2(mount.point, Int32(MNT_DETACH)) }
            }
        }

        /// In every mode of `imgboot mount`: the setuid-root payload, run by nobody from the tree,
        /// stays nobody (EACCES on the root-only file), and every mount of the tree is nosuid and
        /// nodev in the host's mount table.
        @Test(arguments: [["--read-only"], [], ["--volatile=yes"], ["--volatile=state"], ["--volatile=overlay"]])
        func setuidProgramInTheImageGivesNoRoot(options: [String]) throws {
            let image = try SetuidImage()
            let out = try Harness.imgboot(["mount"] + options + [image.copy.path, image.mnt])
            try #require(out.status == 0, "mount: \(out.stderr)")
            defer { image.umountExpectingNothingLeft() }

            // The bit is there, on a file of root's: only the mount's nosuid stops it.
            var st = stat()
            #expect(stat(image.mnt + "/usr/bin/imgboot-suid", &st) == 0 && st.st_uid == 0 && st.st_mode & S_ISUID != 0)
            let run = image.openSecretAsNobody()
            #expect(run.stdout == "open \(image.secret) r: EACCES\n", "the payload ran with root's rights: \(run.stdout) \(run.stderr)")
            let mounts = image.treeMounts()
            #expect(!mounts.isEmpty)
            for mount in mounts {
                #expect(mount.options.isSuperset(of: ["nosuid", "nodev"]), "\(mount.point): \(mount.options.sorted())")
            }
        }

        /// `--suid` (documented as unsafe for untrusted images) honours the bit — the same payload
        /// now reads the root-only file, which shows the test above can fail — and lifts nosuid
        /// only: every mount stays nodev.
        @Test func suidHonoursTheBitAndKeepsNodev() throws {
            let image = try SetuidImage()
            let out = try Harness.imgboot(["mount", "--read-only", "--suid", image.copy.path, image.mnt])
            try #require(out.status == 0, "mount: \(out.stderr)")
            defer { image.umountExpectingNothingLeft() }

            let run = image.openSecretAsNobody()
            #expect(run.stdout == "open \(image.secret) r: ok\nread \(image.secret): ok\n", "\(run.stdout) \(run.stderr)")
            for mount in image.treeMounts() {
                #expect(mount.options.contains("nodev") && !mount.options.contains("nosuid"), "\(mount.point): \(mount.options.sorted())")
            }
        }

        // MARK: - Item 11: umount only what imgboot mount made

        /// The host's own mounts: refused with one line naming the directory, and still there.
        @Test(arguments: ["/", "/proc", "/sys", "/dev"])
        func hostMountsAreRefused(dir: String) throws {
            let before = try #require(MountTop.at(dir), "\(dir) is not a mount point here")
            let out = try Harness.imgboot(["umount", dir])
            Hardening.expectOwnFailure(out, image: dir, "not mounted by imgboot mount; nothing was unmounted")
            #expect(MountTop.at(dir) == before, "the mount on \(dir) changed")
        }

        /// A tmpfs the test mounted itself, on a directory of its own: refused, still mounted.
        @Test func aTmpfsOfSomeoneElseIsRefused() throws {
            let scratch = try ScratchDirectory("imgboot-umount")
            let dir = scratch.path + "/tmpfs"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try #require(Harness.run(["/bin/mount", "-t", "tmpfs", "-o", "size=1m", "imgboot-test", dir]).status == 0)
            defer { umount2(dir, Int32(MNT_DETACH)) }
            let before = try #require(MountTop.at(dir))

            Hardening.expectOwnFailure(try Harness.imgboot(["umount", dir]), image: dir, "not mounted by imgboot mount; nothing was unmounted")
            #expect(MountTop.at(dir) == before)
        }

        /// Another image, mounted by plain mount(8): refused, still mounted.
        @Test func anImageMountedByPlainMountIsRefused() throws {
            let other = try ImageCopy("bare-ext4")
            let dir = other.directory + "/mnt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try #require(Harness.run(["/bin/mount", "-o", "ro,loop", other.path, dir]).status == 0)
            defer { Self.plainUnmount(dir, other) }
            let before = try #require(MountTop.at(dir))
            #expect(before.fsType == "ext4")

            Hardening.expectOwnFailure(try Harness.imgboot(["umount", dir]), image: dir, "not mounted by imgboot mount; nothing was unmounted")
            #expect(MountTop.at(dir) == before)
            #expect(!Harness.loopDevices(backing: other.path).isEmpty)
        }

        /// A tree of imgboot's with another image mounted over it: `umount` refuses (the mount on
        /// the directory is not the one imgboot made) and unmounts nothing, neither the mount on
        /// top nor the tree below; once the other is gone, `umount` takes the tree down.
        @Test func aTreeMountedOverIsRefused() throws {
            let tree = try ImageCopy("basic"), other = try ImageCopy("bare-ext4")
            let dir = tree.directory + "/mnt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            let mount = try Harness.imgboot(["mount", "--read-only", tree.path, dir])
            try #require(mount.status == 0, "\(mount.stderr)")
            defer { _ = try? Harness.imgboot(["umount", dir]) }
            let treeMounts = MountTop.all(below: dir)
            try #require(Harness.run(["/bin/mount", "-o", "ro,loop", other.path, dir]).status == 0)
            var otherMounted = true
            defer { if otherMounted { Self.plainUnmount(dir, other) } }
            let top = try #require(MountTop.at(dir))

            Hardening.expectOwnFailure(try Harness.imgboot(["umount", dir]), image: dir,
                                       "the mount there is no longer the one imgboot mount made (replaced or mounted over); nothing was unmounted")
            #expect(MountTop.at(dir) == top)
            #expect(Set(treeMounts).isSubset(of: Set(MountTop.all(below: dir))), "the tree below is untouched")

            Self.plainUnmount(dir, other)
            otherMounted = false
            let out = try Harness.imgboot(["umount", dir])
            #expect(out.status == 0 && out.stderr.isEmpty, "\(out.stderr)")
            #expect(MountTop.all(below: dir).isEmpty)
            tree.leftovers.expectNone(imageUnchanged: true)
        }

        /// A tree of imgboot's taken down by plain umount, and the same image's root mounted there
        /// again by plain mount: same filesystem type, a loop device again — and as mountinfo's IDs
        /// are reused, quite possibly the same ID and device name. The mount's unique ID (statx)
        /// tells them apart: refused, still mounted.
        @Test func aTreeReplacedByTheSameKindOfMountIsRefused() throws {
            let tree = try ImageCopy("basic")
            let dir = tree.directory + "/mnt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            let mount = try Harness.imgboot(["mount", "--read-only", tree.path, dir])
            try #require(mount.status == 0, "\(mount.stderr)")
            let (recordFile, record) = try Self.record(of: dir)
            // The tree is taken down by other means below: its record is the test's to remove.
            defer { unlink(recordFile) }
            let recorded = try #require(record["top"] as? [String: Any])
            #expect(recorded["uniqueMountId"] as? Int != nil, "this kernel has unique mount IDs (Linux 6.8+)")

            try #require(Harness.run(["/bin/umount", "--recursive", dir]).status == 0)
            _ = Harness.waitUntil(upTo: 10) { Harness.loopDevices(backing: tree.path).isEmpty }
            let offset = try Hardening.partitionOffset(tree.path, 1)
            try #require(Harness.run(["/bin/mount", "-o", "ro,loop,offset=\(offset),sizelimit=\(12 << 20)", tree.path, dir]).status == 0)
            defer { Self.plainUnmount(dir, tree) }
            let replacement = try #require(MountTop.at(dir))
            #expect(replacement.fsType == "ext4")

            Hardening.expectOwnFailure(try Harness.imgboot(["umount", dir]), image: dir,
                                       "the mount there is no longer the one imgboot mount made (replaced or mounted over); nothing was unmounted")
            #expect(MountTop.at(dir) == replacement)
        }

        /// A tree `imgboot mount` made on the host, while `run` starts in a private mount namespace
        /// (where the tree's mounts are copies with IDs of their own): the run there still sees the
        /// image as busy, and leaves the record alone — `umount` on the host takes the tree down.
        @Test func runsInAnotherMountNamespaceLeaveTheRecordAlone() throws {
            let tree = try ImageCopy("basic"), other = try ImageCopy("basic")
            let dir = tree.directory + "/mnt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            let mount = try Harness.imgboot(["mount", tree.path, dir])
            try #require(mount.status == 0, "\(mount.stderr)")
            defer { _ = try? Harness.imgboot(["umount", dir]) }

            let run = "exec \"$0\" run --volatile=no \"$1\" -- true"
            let busy = Hardening.inPrivateMountNamespace(run, [Harness.binary, tree.path])
            Hardening.expectOwnFailure(busy, image: tree.path, "image is busy: mounted writable on \(dir) by imgboot mount")
            let elsewhere = Hardening.inPrivateMountNamespace(run, [Harness.binary, other.path])
            #expect(elsewhere.status == 0, "\(elsewhere.stderr)")

            let out = try Harness.imgboot(["umount", dir])
            #expect(out.status == 0 && out.stderr.isEmpty, "\(out.stderr)")
            #expect(MountTop.all(below: dir).isEmpty)
            tree.leftovers.expectNone(imageUnchanged: false)
            other.leftovers.expectNone(imageUnchanged: false)
        }

        // MARK: Helpers

        /// `umount` of a mount the test made with plain mount(8), and its loop device gone.
        static func plainUnmount(_ dir: String, _ image: ImageCopy) {
            _ = Harness.run(["/bin/umount", dir])
            _ = Harness.waitUntil(upTo: 10) { Harness.loopDevices(backing: image.path).isEmpty }
        }

        /// The store's record of the tree on `dir`: its file, and what it says.
        static func record(of dir: String) throws -> (file: String, record: [String: Any]) {
            for name in try FileManager.default.contentsOfDirectory(atPath: Store.root + "/trees") where !name.hasPrefix(".") {
                let file = Store.root + "/trees/" + name
                guard let data = FileManager.default.contents(atPath: file),
                      let record = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      record["directory"] as? String == dir else { continue }
                return (file, record)
            }
            throw HarnessError("no record of \(dir) in \(Store.root)/trees")
        }
    }
}

/// A mount of the host's table, as mountinfo shows it.
struct MountTop: Hashable, CustomStringConvertible {
    var id: Int
    var point: String
    var fsType: String
    var source: String

    var description: String { "\(id) \(point) \(fsType) \(source)" }

    static func table() -> [MountTop] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard let dash = f.firstIndex(of: "-"), dash + 2 < f.count, f.count > 4, let id = Int(f[0]) else { return nil }
            return MountTop(id: id, point: f[4], fsType: f[dash + 1], source: f[dash + 2])
        }
    }

    /// The topmost mount on `dir` (the last one mounted there), if any.
    static func at(_ dir: String) -> MountTop? { table().last { $0.point == dir } }

    /// The mounts at and below `dir`.
    static func all(below dir: String) -> [MountTop] {
        table().filter { $0.point == dir || $0.point.hasPrefix(dir + "/") }
    }
}
