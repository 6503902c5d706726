import Foundation
import Testing

/// `--set-credential` and `--load-credential`, as systemd-nspawn has them: files of root's alone
/// in a read-only /run/host/credentials that `$CREDENTIALS_DIRECTORY` names, which a booted
/// systemd takes as system credentials; never shown by --dry-run; a file that cannot be read
/// is one line before anything is attached.
@Suite(.enabled(if: Harness.isRoot, "containers need root"))
struct RunCredentialsTests {
    /// What the command finds: the directory, the files (mode 0400, root's), their bytes
    /// (binary ones too), a later --set-credential of an ID winning, and no way to add one.
    @Test(arguments: ["pick", "no"])
    func theCommandFindsThem(privateUsers: String) throws {
        let image = try ImageCopy("basic")
        let key = image.directory + "/key"
        try Data([0x73, 0x00, 0xff, 0x0a]).write(to: URL(fileURLWithPath: key))
        let lines = try image.sh(["--private-users=\(privateUsers)", "--set-credential=greeting:first", "--set-credential=greeting:hello world",
                                  "--load-credential=key:\(key)"], """
            echo "$CREDENTIALS_DIRECTORY"
            cd "$CREDENTIALS_DIRECTORY" && ls -ln | awk 'NR > 1 {print $1, $3, $4, $5, $9}'
            cat greeting; echo
            od -An -tx1 key | tr -s ' '
            touch new 2>/dev/null && echo writable || echo read-only
            """)
        #expect(lines == ["/run/host/credentials", "-r-------- 0 0 11 greeting", "-r-------- 0 0 4 key", "hello world",
                          " 73 00 ff 0a", "read-only"])
        #expect(image.isUnchanged)
    }

    /// Without credentials, no directory and no variable.
    @Test func noneGiven() throws {
        let image = try ImageCopy("basic")
        #expect(try image.sh([], "echo \"[$CREDENTIALS_DIRECTORY]\"; test -e /run/host/credentials && echo there || echo absent")
                == ["[]", "absent"])
    }

    /// --dry-run names the files and their sizes, never their contents.
    @Test func dryRunHidesValues() throws {
        let image = try ImageCopy("basic")
        let out = try Harness.imgboot(["run", "--dry-run", "--set-credential=token:s3cr3t-value", image.path, "true"])
        #expect(out.status == 0)
        #expect(out.stdout.contains("create /run/host/credentials/token (12 bytes, not shown, mode 400)"), "\(out.stdout)")
        #expect(!out.stdout.contains("s3cr3t"))
    }

    /// What cannot be used: a file that is missing or not a regular file (one line, 125, before
    /// anything is attached), an ID that is not a file name, a relative path (usage errors).
    @Test func refused() throws {
        let image = try ImageCopy("basic")
        let missing = try image.run(["--load-credential=k:/nonexistent/key"], ["true"])
        #expect(missing.status == 125)
        #expect(missing.stderr == "imgboot: --load-credential=k:/nonexistent/key: cannot open it: No such file or directory\n")
        let directory = try image.run(["--load-credential=k:/etc"], ["true"])
        #expect(directory.stderr == "imgboot: --load-credential=k:/etc: not a regular file\n")
        for option in ["--set-credential=a/b:x", "--set-credential=novalue", "--load-credential=k:relative", "--set-credential=..:x"] {
            let out = try image.run([option], ["true"])
            #expect(out.status == 125)
            #expect(out.stderr.hasPrefix("Error: \(option): "), "\(out.stderr)")
        }
        #expect(image.isUnchanged)
    }

    /// A booted systemd takes them as system credentials (`systemd-creds --system`), through
    /// smoke, which passes the options on to each boot.
    @Test func systemdImportsThem() throws {
        let debian = try ImageCopy(path: try Harness.debianImage(), name: "debian")
        let out = try Smoke.run(["--set-credential=greeting:hello", "--check", "systemd-creds --system cat greeting",
                                 "--check", "test \"$(cat /run/credentials/@system/greeting)\" = hello", "--json", debian.path])
        #expect(out.status == 0, "\(out.stdout) \(out.stderr)")
        #expect(out.stdout.contains("\"output\": \"hello\""), "\(out.stdout)")
        debian.leftovers.expectNone(imageUnchanged: true)
    }
}
