import Foundation
import Testing

/// `imgboot ls`, `copy-from`, `copy-to` and `archive` (issue 13), against private copies of the
/// fixtures (fixtures/README.md says what each holds), and what they leave: after every
/// command, no loop device backed by the image, no new mount in the host's table, and the
/// image's bytes unchanged — but for `copy-to`, which changes only the partition it writes.
@Suite(.enabled(if: Harness.isRoot, "needs root and loop devices"))
struct DissectCommandsTests {
    /// A private copy of a fixture, and what to check after each command on it.
    final class Image {
        let copy: ImageCopy
        var path: String { copy.path }
        private(set) var hash: String
        let mountIDs: Set<Int>

        init(_ fixture: String) throws {
            copy = try ImageCopy(fixture)
            hash = Harness.sha256(copy.path)
            mountIDs = Set(Harness.mounts().keys)
        }

        /// `imgboot ARGS…` with the image's path where `IMG` stands; then nothing may be left,
        /// and the image's bytes must be what they were (unless `writes`: then they must differ).
        func run(_ arguments: [String], stdin: String? = nil, writes: Bool = false,
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> Harness.Output {
            let out = try Harness.imgboot(arguments.map { $0 == "IMG" ? path : $0 }, stdin: stdin)
            expectNothingLeft(writes: writes, sourceLocation: sourceLocation)
            return out
        }

        /// Runs a shell script (`$IMGBOOT` and `$IMG` set), for output that is not text.
        func sh(_ script: String, writes: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> Harness.Output {
            let out = Harness.run(["/usr/bin/env", "IMGBOOT=\(Harness.binary)", "IMG=\(path)", "/bin/sh", "-c", script])
            expectNothingLeft(writes: writes, sourceLocation: sourceLocation)
            return out
        }

        func expectNothingLeft(writes: Bool, sourceLocation: SourceLocation) {
            let loops = Harness.loopDevices(backing: path)
            #expect(loops.isEmpty, "loop devices still backed by the image: \(loops)", sourceLocation: sourceLocation)
            // Other suites mount on the host meanwhile, in directories of their own: only a
            // mount elsewhere can be this command's.
            let others = ["/tmp/imgboot-mount-test-", "/tmp/imgboot-staging.", "/run/imgboot/", "/var/tmp/imgboot-attach-"]
            let new = Harness.mounts().filter { id, mount in
                !mountIDs.contains(id) && !others.contains { mount.point.hasPrefix($0) }
                    && !Leftovers.containerFilesystems.contains(mount.type)
            }
            #expect(new.isEmpty, "new mounts in the host's table: \(new.values.map { "\($0.point) (\($0.type))" })",
                    sourceLocation: sourceLocation)
            let now = Harness.sha256(path)
            if writes {
                #expect(now != hash, "the image was not written", sourceLocation: sourceLocation)
                hash = now
            } else {
                #expect(now == hash, "the image was written", sourceLocation: sourceLocation)
            }
            for device in loops { _ = Harness.run(["/sbin/losetup", "-d", device]) }
        }
    }

    static func sha256(of text: String) -> String {
        Harness.run(["/bin/sh", "-c", "printf %s \"$0\" | sha256sum", text]).stdout.split(separator: " ").first.map(String.init) ?? ""
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    // MARK: - ls

    /// The listing is what basic's recipe puts in: the three partitions in one tree, symlinks
    /// as names, directories with a `/`, sorted by name within each directory.
    @Test func lsListsTheWholeTree() throws {
        let image = try Image("basic")
        let out = try image.run(["ls", "IMG"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stderr.isEmpty)
        let lines = Self.lines(out.stdout)
        for expected in ["bin", "etc/", "etc/hostname", "etc/os-release", "home/", "home/user/", "home/user/hello.txt",
                         "srv/www/index.html", "usr/bin/busybox", "usr/bin/sh", "sbin", "lib", "tmp/", "var/tmp/", "root/"] {
            #expect(lines.contains(expected), "\(expected) is missing")
        }
        #expect(!lines.contains("bin/"), "a symlink to a directory is listed as a directory")
        // Sorted: each directory right before what it holds, and names in byte order.
        #expect(lines.firstIndex(of: "etc/") == lines.firstIndex(of: "etc/group").map { $0 - 1 })
        let top = lines.filter { !$0.dropLast().contains("/") }
        #expect(top == top.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        #expect(top.first == "bin" && top.contains("lost+found/"))
    }

    @Test func lsBelowAPath() throws {
        let image = try Image("basic")
        let out = try image.run(["ls", "IMG", "/home"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "lost+found/\nuser/\nuser/hello.txt\n")
    }

    /// The split-usr image's /usr comes from its own partition: `/usr/bin/busybox` resolves.
    @Test func lsAssemblesUsr() throws {
        let image = try Image("split-usr")
        let out = try image.run(["ls", "IMG", "/usr/bin"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(Self.lines(out.stdout).contains("busybox"))
    }

    /// mtree(5) lines as the recipe has the files: modes (sticky bit included), owners, sizes,
    /// SHA-256 of contents, link targets; names escaped as mtree has it.
    @Test func mtree() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-mtree")
        try "x".write(toFile: scratch.path + "/one", atomically: false, encoding: .utf8)
        try Hardening.debugfs(image.path, ["write \(scratch.path)/one \"etc/a b#c\""])
        image.expectNothingLeft(writes: true, sourceLocation: #_sourceLocation)
        let out = try image.run(["ls", "--mtree", "IMG"])
        #expect(out.status == 0, "\(out.stderr)")
        let lines = Self.lines(out.stdout)
        #expect(lines.first == "./ type=dir mode=0755 uid=0 gid=0")
        #expect(lines.contains("./etc/ type=dir mode=0755 uid=0 gid=0"))
        #expect(lines.contains("./tmp/ type=dir mode=1777 uid=0 gid=0"))
        #expect(lines.contains("./root/ type=dir mode=0700 uid=0 gid=0"))
        #expect(lines.contains("./bin type=link uid=0 gid=0 link=usr/bin"))
        #expect(lines.contains("./usr/sbin/init type=link uid=0 gid=0 link=../bin/busybox"))
        #expect(lines.contains("./etc/hostname type=file mode=0644 uid=0 gid=0 size=13 sha256digest=\(Self.sha256(of: "busybox-demo\n"))"))
        #expect(lines.contains("./home/user/hello.txt type=file mode=0644 uid=0 gid=0 size=38 sha256digest=\(Self.sha256(of: "hello from the imgboot home partition\n"))"))
        #expect(lines.contains { $0.hasPrefix("./etc/a\\040b\\043c type=file mode=") && $0.contains(" size=1 sha256digest=\(Self.sha256(of: "x"))") },
                "\(lines.filter { $0.hasPrefix("./etc/a") })")
        let busybox = try #require(lines.first { $0.hasPrefix("./usr/bin/busybox ") })
        #expect(busybox.hasPrefix("./usr/bin/busybox type=file mode=0755 uid=0 gid=0 size="))
        #expect(lines.count == Self.lines(try image.run(["ls", "IMG"]).stdout).count + 1)
    }

    /// A name that would move the cursor or split a line is escaped, one line each.
    @Test func lsEscapesNames() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-names")
        try "x".write(toFile: scratch.path + "/one", atomically: false, encoding: .utf8)
        try Hardening.debugfs(image.path, ["write \(scratch.path)/one \"etc/evil\u{1b}[31mred\u{202e}x\""])
        image.expectNothingLeft(writes: true, sourceLocation: #_sourceLocation)
        let out = try image.run(["ls", "IMG", "/etc"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(!out.stdout.contains("\u{1b}") && !out.stdout.contains("\u{202e}"))
        #expect(Self.lines(out.stdout).contains("evil\\x1b[31mred\\u{202e}x"), "\(out.stdout)")
    }

    // MARK: - copy-from

    @Test func copyFromAFile() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-copy-from")
        let target = scratch.path + "/hostname"
        let out = try image.run(["copy-from", "IMG", "/etc/hostname", target])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.isEmpty && out.stderr.isEmpty)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "busybox-demo\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: target)
        #expect((attributes[.posixPermissions] as? Int) == 0o644)
        #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_704_067_200)

        // Without TARGET: the name, in the current directory.
        let here = Harness.run(["/bin/sh", "-c", "cd \"$0\" && exec \"$1\" copy-from \"$2\" /srv/www/index.html", scratch.path, Harness.binary, image.path])
        image.expectNothingLeft(writes: false, sourceLocation: #_sourceLocation)
        #expect(here.status == 0, "\(here.stderr)")
        #expect(try String(contentsOfFile: scratch.path + "/index.html", encoding: .utf8) == "<h1>imgboot srv partition</h1>\n")

        // To standard output: the bytes alone.
        let stdout = try image.run(["copy-from", "IMG", "/home/user/hello.txt", "-"])
        #expect(stdout.status == 0)
        #expect(stdout.stdout == "hello from the imgboot home partition\n")
    }

    /// A directory tree: contents, modes, symlinks; a tree over several partitions (/ holds
    /// /home and /srv).
    @Test func copyFromADirectoryTree() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-copy-from")
        let target = scratch.path + "/root"
        let out = try image.run(["copy-from", "IMG", "/", target])
        #expect(out.status == 0, "\(out.stderr)")
        let fm = FileManager.default
        #expect(try String(contentsOfFile: target + "/etc/os-release", encoding: .utf8).contains("PRETTY_NAME=\"imgboot busybox 1.0\""))
        #expect(try String(contentsOfFile: target + "/home/user/hello.txt", encoding: .utf8) == "hello from the imgboot home partition\n")
        #expect(try String(contentsOfFile: target + "/srv/www/index.html", encoding: .utf8) == "<h1>imgboot srv partition</h1>\n")
        #expect(try fm.destinationOfSymbolicLink(atPath: target + "/bin") == "usr/bin")
        #expect(try fm.destinationOfSymbolicLink(atPath: target + "/usr/sbin/init") == "../bin/busybox")
        #expect((try fm.attributesOfItem(atPath: target + "/tmp")[.posixPermissions] as? Int) == 0o1777)
        #expect((try fm.attributesOfItem(atPath: target + "/root")[.posixPermissions] as? Int) == 0o700)
        #expect((try fm.attributesOfItem(atPath: target + "/usr/bin/busybox")[.posixPermissions] as? Int) == 0o755)
        #expect(Harness.run(["/usr/bin/cmp", target + "/usr/bin/busybox", "/bin/busybox"]).status == 0)

        // Into an empty directory that exists: filled.
        let empty = scratch.path + "/empty"
        try fm.createDirectory(atPath: empty, withIntermediateDirectories: false)
        #expect(try image.run(["copy-from", "IMG", "/home/user", empty]).status == 0)
        #expect(try fm.contentsOfDirectory(atPath: empty) == ["hello.txt"])
    }

    /// Set-user-ID bits do not reach the host, nor do device nodes (host-nodes has /root/sda,
    /// block 8:0, and others).
    @Test func copyFromDropsPrivileges() throws {
        let image = try Image("host-nodes")
        try Hardening.debugfs(image.path, ["sif usr/bin/busybox mode 0104755"])
        image.expectNothingLeft(writes: true, sourceLocation: #_sourceLocation)
        let scratch = try ScratchDirectory("imgboot-copy-from")
        let out = try image.run(["copy-from", "IMG", "/usr/bin/busybox", scratch.path + "/busybox"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect((try FileManager.default.attributesOfItem(atPath: scratch.path + "/busybox")[.posixPermissions] as? Int) == 0o755)
        let tree = try image.run(["copy-from", "IMG", "/root", scratch.path + "/root"])
        #expect(tree.status == 0)
        #expect(tree.stderr.contains("imgboot: warning: \(image.path): \(scratch.path)/root/sda: a block; not copied\n"), "\(tree.stderr)")
        #expect(tree.stderr.contains("imgboot: warning: \(image.path): \(scratch.path)/root/mem: a char; not copied\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/root").isEmpty)
    }

    /// Symlinks of the image are followed inside the image, never out of it: hostile-links'
    /// /home -> /etc is the image's /etc (where its home partition is mounted), and links to
    /// host files (absolute, or climbing out) find the image's files or nothing.
    @Test func copyFromStaysInsideTheImage() throws {
        let links = try Image("hostile-links")
        let home = try links.run(["copy-from", "IMG", "/home/user/hello.txt", "-"])
        #expect(home.status == 0, "\(home.stderr)")
        #expect(home.stdout == "hello from the imgboot home partition\n")
        let srv = try links.run(["copy-from", "IMG", "/srv/www/index.html", "-"])
        #expect(srv.stdout == "<h1>imgboot srv partition</h1>\n")

        let image = try Image("basic")
        try Hardening.debugfs(image.path, [
            "symlink etc/hostlink /etc/hostname",
            "symlink etc/shadowlink /etc/shadow",
            "symlink etc/climb ../../../../../etc/shadow",
        ])
        image.expectNothingLeft(writes: true, sourceLocation: #_sourceLocation)
        #expect(FileManager.default.fileExists(atPath: "/etc/shadow"), "the host has an /etc/shadow for the image to aim at")
        let hostname = try image.run(["copy-from", "IMG", "/etc/hostlink", "-"])
        #expect(hostname.stdout == "busybox-demo\n")
        for link in ["/etc/shadowlink", "/etc/climb"] {
            let out = try image.run(["copy-from", "IMG", link, "-"])
            Hardening.expectOwnFailure(out, image: image.path, "\(link): no such file or directory in the image")
        }
    }

    // MARK: - copy-to

    /// A file from standard input and one from the host, then a tree: read back with copy-from
    /// and ls; only the partition written changed, and its filesystem is clean.
    @Test func copyToRoundTrip() throws {
        let image = try Image("basic")
        let fixture = try Harness.fixture("basic")
        let stdin = try image.run(["copy-to", "IMG", "/etc/motd"], stdin: "from stdin\n", writes: true)
        #expect(stdin.status == 0, "\(stdin.stderr)")
        #expect(stdin.stdout.isEmpty && stdin.stderr.isEmpty)
        #expect(try image.run(["copy-from", "IMG", "/etc/motd", "-"]).stdout == "from stdin\n")

        let scratch = try ScratchDirectory("imgboot-copy-to")
        let tree = scratch.path + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/sub", withIntermediateDirectories: true)
        try "one\n".write(toFile: tree + "/one", atomically: false, encoding: .utf8)
        try "two\n".write(toFile: tree + "/sub/two", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: tree + "/link", withDestinationPath: "one")
        try FileManager.default.setAttributes([.posixPermissions: 0o750], ofItemAtPath: tree + "/sub")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tree + "/one")
        let copied = try image.run(["copy-to", "IMG", tree, "/srv/tree"], writes: true)
        #expect(copied.status == 0, "\(copied.stderr)")
        let mtree = Self.lines(try image.run(["ls", "--mtree", "IMG", "/srv/tree"]).stdout)
        #expect(mtree == [
            "./ type=dir mode=0755 uid=0 gid=0",
            "./link type=link uid=0 gid=0 link=one",
            "./one type=file mode=0600 uid=0 gid=0 size=4 sha256digest=\(Self.sha256(of: "one\n"))",
            "./sub/ type=dir mode=0750 uid=0 gid=0",
            "./sub/two type=file mode=0644 uid=0 gid=0 size=4 sha256digest=\(Self.sha256(of: "two\n"))",
        ])

        // Root and home were never written: their bytes are the fixture's. srv's ext4 is clean.
        for (partition, written) in [(1, true), (2, false), (3, true)] {
            let offset = try Hardening.partitionOffset(image.path, partition)
            let same = Harness.run(["/bin/sh", "-c", "cmp -s -i \(offset):\(offset) -n 8388608 \"$0\" \"$1\"", image.path, fixture]).status == 0
            #expect(same == !written, "partition \(partition)")
        }
        let srv = try Hardening.partitionOffset(image.path, 3)
        let fsck = Harness.run(["/sbin/e2fsck", "-fn", "\(image.path)?offset=\(srv)"])
        #expect(fsck.status == 0, "\(fsck.stdout)")

        // A file copied in, then out again: the same bytes and mode.
        let file = try image.run(["copy-to", "IMG", tree + "/one", "/home/one"], writes: true)
        #expect(file.status == 0)
        let back = scratch.path + "/back"
        #expect(try image.run(["copy-from", "IMG", "/home/one", back]).status == 0)
        #expect(try String(contentsOfFile: back, encoding: .utf8) == "one\n")
        #expect((try FileManager.default.attributesOfItem(atPath: back)[.posixPermissions] as? Int) == 0o600)
    }

    /// A read-only partition is never written: squashfs root, GPT flag 60.
    @Test func copyToRefusesReadOnlyPartitions() throws {
        let squashfs = try Image("squashfs")
        let root = try squashfs.run(["copy-to", "IMG", "/etc/x"], stdin: "x")
        Hardening.expectOwnFailure(root, image: squashfs.path,
                                   "/etc/x: on partition 1 (root), which is read-only (squashfs is a read-only filesystem); imgboot cannot write it")
        // Its var partition (ext4) can be written.
        #expect(try squashfs.run(["copy-to", "IMG", "/var/x"], stdin: "x", writes: true).status == 0)

        let flags = try Image("flags")
        let srv = try flags.run(["copy-to", "IMG", "/srv/x"], stdin: "x")
        Hardening.expectOwnFailure(srv, image: flags.path,
                                   "/srv/x: on partition 3 (srv), which is read-only (the partition is marked read-only (GPT flag 60)); imgboot cannot write it")
    }

    /// While `imgboot mount` has the image mounted, copy-to refuses (read-only readers still
    /// read). In a mount namespace of its own, so that the host's table never sees the tree.
    @Test func copyToRefusesAMountedImage() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-copy-to")
        let script = """
            "$0" mount --read-only "$1" "$2" || exit 90
            echo x | "$0" copy-to "$1" /etc/x; echo "copy-to $?"
            "$0" copy-from "$1" /etc/hostname -; echo "copy-from $?"
            "$0" umount "$2" || exit 91
            """
        let out = Hardening.inPrivateMountNamespace(script, [Harness.binary, image.path, scratch.path])
        image.expectNothingLeft(writes: false, sourceLocation: #_sourceLocation)
        #expect(out.stdout == "copy-to 125\nbusybox-demo\ncopy-from 0\n", "\(out.stderr)")
        #expect(out.stderr == "imgboot: \(image.path): image is busy: mounted on \(scratch.path) by imgboot mount\n")
    }

    /// While a machine of the image runs, copy-to refuses: its lock says the image is in use.
    @Test func copyToRefusesARunningMachine() throws {
        let image = try Image("basic")
        let machine = try BackgroundProcess([Harness.binary, "run", "--machine=\(image.copy.machine)", image.path, "--", "sleep", "60"])
        defer { machine.kill() }
        #expect(machine.wait(upTo: 20) { Harness.processes(inMachineCgroup: image.copy.machine).count > 1 })
        let out = try Harness.imgboot(["copy-to", image.path, "/etc/x"], stdin: "x")
        Hardening.expectOwnFailure(out, image: image.path, "image is busy", exact: false)
        machine.signal(SIGTERM)
        #expect(machine.exitStatus(within: 20) != nil)
        image.copy.leftovers.expectNone(imageUnchanged: true)
    }

    // MARK: - archive

    /// The archive holds the tree: listed by tar, extracted and compared (contents, modes,
    /// owners, symlinks, mtimes, a hard link, a path longer than ustar's 100 bytes).
    @Test func archiveReadsBack() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-archive")
        let long = String(repeating: "d", count: 70)
        try "deep\n".write(toFile: scratch.path + "/deep", atomically: false, encoding: .utf8)
        try Hardening.debugfs(image.path, ["ln etc/hostname etc/hardlink", "sif etc/hostname links_count 2"])
        try Hardening.debugfs(image.path, partition: 3, ["mkdir \(long)", "write \(scratch.path)/deep \(long)/\(long)"])
        image.expectNothingLeft(writes: true, sourceLocation: #_sourceLocation)
        let tar = scratch.path + "/image.tar"
        let out = try image.run(["archive", "IMG", tar])
        #expect(out.status == 0, "\(out.stderr)")

        let listing = Self.lines(Harness.run(["/bin/tar", "-tf", tar]).stdout)
        #expect(listing.first == "./")
        for name in ["./bin", "./etc/", "./etc/hostname", "./home/user/hello.txt", "./srv/www/index.html", "./usr/bin/busybox",
                     "./srv/\(long)/\(long)"] {
            #expect(listing.contains(name), "\(name) is missing")
        }
        #expect(listing.count == Self.lines(try image.run(["ls", "IMG"]).stdout).count + 1)
        #expect(Harness.run(["/bin/tar", "-tvf", tar]).stdout.contains("./etc/hostname link to ./etc/hardlink"))

        let root = scratch.path + "/x"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        let extract = Harness.run(["/bin/tar", "--numeric-owner", "-xpf", tar, "-C", root])
        #expect(extract.status == 0, "\(extract.stderr)")
        let fm = FileManager.default
        #expect(try String(contentsOfFile: root + "/home/user/hello.txt", encoding: .utf8) == "hello from the imgboot home partition\n")
        #expect(try String(contentsOfFile: root + "/srv/\(long)/\(long)", encoding: .utf8) == "deep\n")
        #expect(Harness.run(["/usr/bin/cmp", root + "/usr/bin/busybox", "/bin/busybox"]).status == 0)
        #expect(try fm.destinationOfSymbolicLink(atPath: root + "/bin") == "usr/bin")
        #expect((try fm.attributesOfItem(atPath: root + "/tmp")[.posixPermissions] as? Int) == 0o1777)
        #expect((try fm.attributesOfItem(atPath: root + "/root")[.posixPermissions] as? Int) == 0o700)
        #expect((try fm.attributesOfItem(atPath: root + "/etc/passwd")[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_704_067_200)
        let inode = { (path: String) in (try? fm.attributesOfItem(atPath: root + path)[.systemFileNumber] as? Int) ?? -1 }
        #expect(inode("/etc/hostname") == inode("/etc/hardlink"))

        // To standard output: the same bytes.
        let piped = image.sh("\"$IMGBOOT\" archive \"$IMG\" - | cmp - \"$0\"".replacingOccurrences(of: "$0", with: tar))
        #expect(piped.status == 0, "\(piped.stdout)\(piped.stderr)")
    }

    // MARK: - Bad input

    /// One line, status 125, nothing written on the host or in the image.
    @Test func badInput() throws {
        let image = try Image("basic")
        let scratch = try ScratchDirectory("imgboot-bad")
        let target = scratch.path + "/out"
        let cases: [([String], String)] = [
            (["copy-from", "IMG", "/etc/nothing", target], "/etc/nothing: no such file or directory in the image"),
            (["copy-from", "IMG", "/etc", "-"], "/etc: a directory in the image; `-` (standard output) takes a regular file"),
            (["copy-from", "IMG", "/", "-"], "/: a directory in the image; `-` (standard output) takes a regular file"),
            (["copy-from", "IMG", "/"], "/: has no name to copy it to; give a TARGET"),
            (["copy-from", "IMG", "/etc/hostname", scratch.path + "/no/such/dir"],
             "\(scratch.path)/no/such/dir: cannot open its directory: No such file or directory"),
            (["ls", "IMG", "/nothing"], "/nothing: no such file or directory in the image"),
            (["ls", "IMG", "/etc/hostname"], "/etc/hostname: not a directory in the image (or a component of the path is not)"),
            (["ls", "--mtree", "IMG", "/etc/hostname/x"], "/etc/hostname/x: not a directory in the image (or a component of the path is not)"),
            (["copy-to", "IMG", "/etc/hostname"], "/etc/hostname: exists already in the image"),
            (["copy-to", "IMG", "/nothing/x"], "/nothing: no such file or directory in the image"),
            (["copy-to", "IMG", scratch.path + "/missing", "/etc/x"], "\(scratch.path)/missing: no such file or directory"),
            (["copy-to", "IMG", "/dev/null", "/etc/x"], "/dev/null: a char, not a regular file or directory; only those can be copied"),
            (["archive", "IMG", scratch.path + "/no/such/dir/x.tar"],
             "\(scratch.path)/no/such/dir/x.tar: cannot open its directory: No such file or directory"),
            (["archive", "IMG", scratch.path], "\(scratch.path): is a directory"),
        ]
        for (arguments, message) in cases {
            let out = try image.run(arguments, stdin: "x")
            Hardening.expectOwnFailure(out, image: image.path, message)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)

        let file = try image.run(["copy-from", "IMG", "/etc/hostname", target])
        #expect(file.status == 0)
        let again = try image.run(["copy-from", "IMG", "/etc/hostname", target])
        Hardening.expectOwnFailure(again, image: image.path, "\(target): exists already")
    }

    /// An image with no root to read from.
    @Test func noRoot() throws {
        let image = try Image("foreign-arch")
        let out = try image.run(["ls", "IMG"])
        Hardening.expectOwnFailure(out, image: image.path, "no root partition to mount", exact: false)
    }
}
