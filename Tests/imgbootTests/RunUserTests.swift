import Foundation
import Testing

/// `run --user` and `--chdir`, as systemd-nspawn has them: the command runs as a user of the
/// image's own passwd, with the groups its group file gives it and the environment of its
/// entry, in the directory asked for (entered as that user). What cannot be done is one line
/// and 125, with nothing left and the image unchanged.
@Suite(.enabled(if: Harness.isRoot, "containers need root"))
struct RunUserTests {
    /// basic, with users of its own written into its root filesystem: alice (1000, listed in
    /// wheel and users), bob (1001, primary group users, listed in wheel). Returns the copy and
    /// its hash after the edit.
    static func imageWithUsers() throws -> (image: ImageCopy, hash: String) {
        let image = try ImageCopy("basic")
        let passwd = image.directory + "/passwd", group = image.directory + "/group"
        try "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/ash\nbob:x:1001:100::/srv:/bin/sh\n"
            .write(toFile: passwd, atomically: false, encoding: .utf8)
        try "root:x:0:\nusers:x:100:alice\nalice:x:1000:\nwheel:x:10:bob,alice\n"
            .write(toFile: group, atomically: false, encoding: .utf8)
        try Hardening.debugfs(image.path, ["rm /etc/passwd", "rm /etc/group", "write \(passwd) /etc/passwd", "write \(group) /etc/group",
                                           "sif /etc/passwd mode 0100644", "sif /etc/group mode 0100644"])
        return (image, Harness.sha256(image.path))
    }

    /// The user's IDs, groups and environment, with a user namespace and without; it holds no
    /// capability, and what it creates is its own.
    @Test(arguments: ["pick", "no"])
    func commandRunsAsTheUser(privateUsers: String) throws {
        let (image, hash) = try Self.imageWithUsers()
        let lines = try image.sh(["--private-users=\(privateUsers)", "--user=alice"], """
            id -u; id -g; id -G
            echo "$HOME $USER $LOGNAME $SHELL"
            pwd
            grep CapEff /proc/self/status
            touch /tmp/made && stat -c '%u %g' /tmp/made
            """)
        #expect(lines == ["1000", "1000", "1000 10 100", "/home/alice alice alice /bin/ash", "/", "CapEff:\t0000000000000000", "1000 1000"])
        #expect(Harness.sha256(image.path) == hash)
    }

    /// Without a command, the user's own login shell runs (alice's is /bin/ash), as that user.
    @Test func loginShellIsTheUsers() throws {
        let (image, hash) = try Self.imageWithUsers()
        let out = try Harness.imgboot(["run", "--user=alice", image.path], stdin: "echo $0; id -u\n")
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == "/bin/ash\n1000\n")
        image.leftovers.expectNone(imageUnchanged: false)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// A user whose primary group is another's, named by its UID; a UID that passwd does not
    /// know runs as itself with its own GID and HOME=/; -E wins over the passwd entry.
    @Test func uidsAndTheEnvironment() throws {
        let (image, hash) = try Self.imageWithUsers()
        #expect(try image.sh(["-u", "1001"], "id -u; id -g; id -G; echo \"$HOME $USER\"") == ["1001", "100", "100 10", "/srv bob"])
        #expect(try image.sh(["--user=4242"], "id -u; id -g; id -G; echo \"$HOME $USER\"") == ["4242", "4242", "4242", "/ 4242"])
        #expect(try image.sh(["--user=alice", "-E", "HOME=/tmp", "-E", "USER=someone"], "echo \"$HOME $USER $LOGNAME\"")
                == ["/tmp someone alice"])
        // Without --user, root as before.
        #expect(try image.sh([], "id -u; echo \"$HOME $USER\"") == ["0", "/root root"])
        #expect(Harness.sha256(image.path) == hash)
    }

    /// --chdir: where the command starts, as root or as the user; the option may follow the
    /// image, as nspawn's do, with a command given without --.
    @Test func chdir() throws {
        let (image, hash) = try Self.imageWithUsers()
        #expect(try image.sh(["--chdir=/srv/www"], "pwd; ls") == ["/srv/www", "index.html"])
        #expect(try image.sh(["--user=bob", "--chdir=/tmp"], "pwd; id -u") == ["/tmp", "1001"])
        let out = try Harness.imgboot(["run", image.path, "-u", "alice", "--chdir", "/tmp", "pwd"])
        #expect(out.status == 0 && out.stdout == "/tmp\n", "\(out.stderr)")
        image.leftovers.expectNone(imageUnchanged: false)
        #expect(Harness.sha256(image.path) == hash)
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        var options: [String]
        var message: String
        var testDescription: String { options.joined(separator: " ") }
    }

    static let refusals: [Refusal] = [
        .init(options: ["--user=nosuch"], message: "--user nosuch: no such user in the container's /etc/passwd"),
        // A fresh root has no passwd: a name cannot be found there.
        .init(options: ["--volatile=yes", "--user=alice"], message: "--user alice: no such user in the container's /etc/passwd"),
        .init(options: ["--chdir=/nonexistent"], message: "--chdir /nonexistent: No such file or directory"),
        .init(options: ["--chdir=/etc/passwd"], message: "--chdir /etc/passwd: Not a directory"),
        // Entered as the user: root's home (0700) is not alice's to enter.
        .init(options: ["--user=alice", "--chdir=/root"], message: "--chdir /root: Permission denied"),
    ]

    /// What the container cannot do for --user and --chdir: one line naming the image and the
    /// option, 125, the command never run, nothing left.
    @Test(arguments: refusals)
    func refused(_ r: Refusal) throws {
        let (image, hash) = try Self.imageWithUsers()
        let out = try image.run(r.options, ["sh", "-c", "echo ran"])
        Hardening.expectOwnFailure(out, image: image.path, r.message)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// What is wrong on the command line is refused before anything is attached: a name that
    /// is not one, a relative directory, --user with -b (an init runs as root, in /).
    @Test(arguments: [["--user=a b"], ["--user=-x"], ["--chdir=tmp"], ["-b", "--user=alice"], ["--user="]])
    func usageErrors(_ options: [String]) throws {
        let image = try ImageCopy("basic")
        let out = try image.run(options, ["true"])
        #expect(out.status == 125)
        #expect(out.stderr.hasPrefix("Error: "), "\(out.stderr)")
        #expect(image.isUnchanged)
    }
}
