import Foundation
import Testing

/// `--resolv-conf=` and `--timezone=`, systemd-nspawn's modes: what the container's
/// /etc/resolv.conf and /etc/localtime become, checked from inside; with a volatile tree the
/// image is never written, with `--volatile=no` only the modes that say so write it.
@Suite(.enabled(if: Harness.isRoot, "containers need root"))
struct RunHostFilesTests {
    static let imageResolv = "nameserver 192.0.2.1\n"
    static var hostResolv: String { (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? "" }

    /// The host's zone, when its /etc/localtime is a link into a zoneinfo directory.
    static let hostZone: String? = {
        guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/etc/localtime"),
              let range = link.range(of: "zoneinfo/") else { return nil }
        return String(link[range.upperBound...])
    }()

    /// basic with a resolv.conf of its own (a regular file, or `link`: a symlink as
    /// systemd-resolved makes), /etc/localtime a link to a zone it lacks, and zoneinfo files
    /// for the host's zone. Returns the copy and its hash after the edit.
    static func image(resolvLink: Bool = false) throws -> (image: ImageCopy, hash: String) {
        let image = try ImageCopy("basic")
        let resolv = image.directory + "/resolv", zone = image.directory + "/zone"
        try imageResolv.write(toFile: resolv, atomically: false, encoding: .utf8)
        try "TZif-test\n".write(toFile: zone, atomically: false, encoding: .utf8)
        var commands = resolvLink
            ? ["symlink /etc/resolv.conf ../run/systemd/resolve/stub-resolv.conf"]
            : ["write \(resolv) /etc/resolv.conf", "sif /etc/resolv.conf mode 0100644"]
        commands.append("symlink /etc/localtime ../usr/share/zoneinfo/Nowhere/Else")
        if let hostZone {
            var path = "/usr/share"
            commands.append("mkdir \(path)")
            for component in ["zoneinfo"] + hostZone.split(separator: "/").dropLast().map(String.init) {
                path += "/" + component
                commands.append("mkdir \(path)")
            }
            commands += ["write \(zone) /usr/share/zoneinfo/\(hostZone)", "sif /usr/share/zoneinfo/\(hostZone) mode 0100644"]
        }
        try Hardening.debugfs(image.path, commands)
        return (image, Harness.sha256(image.path))
    }

    struct ResolvCase: Sendable, CustomTestStringConvertible {
        var mode: String
        /// What /etc/resolv.conf holds inside ("host", "image", or nil: none).
        var holds: String?
        var mounted = false
        var testDescription: String { mode }
    }

    static let resolvCases: [ResolvCase] = [
        .init(mode: "auto", holds: "host"),
        .init(mode: "off", holds: "image"),
        .init(mode: "copy-host", holds: "host"),
        .init(mode: "replace-host", holds: "host"),
        .init(mode: "bind-host", holds: "host", mounted: true),
        .init(mode: "delete", holds: nil),
    ]

    /// Each mode over an image with a resolv.conf of its own (overlay: the image unchanged).
    @Test(arguments: resolvCases)
    func resolvConf(_ c: ResolvCase) throws {
        let (image, hash) = try Self.image()
        let out = try image.run(["--resolv-conf=\(c.mode)"], ["sh", "-c", """
            cat /etc/resolv.conf 2>/dev/null || echo none
            echo "mounts $(grep -c ' /etc/resolv.conf ' /proc/mounts)"
            echo x 2>/dev/null >>/etc/resolv.conf && echo writable || echo read-only
            """])
        #expect(out.status == 0, "\(out.stderr)")
        let expected = (c.holds == "host" ? Self.hostResolv : c.holds == "image" ? Self.imageResolv : "none\n")
            + "mounts \(c.mounted ? 1 : 0)\n" + (c.mounted ? "read-only\n" : "writable\n")
        #expect(out.stdout == expected)
        #expect(Harness.sha256(image.path) == hash)
    }

    /// An image whose resolv.conf is a link (the OS manages it): copy-host and bind-host leave
    /// the link, replace-host replaces it.
    @Test(arguments: [("copy-host", true), ("bind-host", true), ("replace-host", false)])
    func resolvConfLink(mode: String, keepsLink: Bool) throws {
        let (image, hash) = try Self.image(resolvLink: true)
        let lines = try image.sh(["--resolv-conf=\(mode)"], "readlink /etc/resolv.conf || cat /etc/resolv.conf")
        #expect(lines == (keepsLink ? ["../run/systemd/resolve/stub-resolv.conf"]
                                    : Self.hostResolv.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)))
        #expect(Harness.sha256(image.path) == hash)
    }

    /// --volatile=no: the default binds a copy over the image's file, which a later container
    /// still finds as it was; copy-host writes the image's file, as nspawn's does.
    @Test func writableImage() throws {
        let (image, _) = try Self.image()
        func text(_ lines: [String]) -> String { lines.map { $0 + "\n" }.joined() }
        #expect(text(try image.sh(["--volatile=no"], "cat /etc/resolv.conf")) == Self.hostResolv)
        #expect(text(try image.sh(["--resolv-conf=off"], "cat /etc/resolv.conf")) == Self.imageResolv)
        _ = try image.sh(["--volatile=no", "--resolv-conf=copy-host"], "true")
        #expect(text(try image.sh(["--resolv-conf=off"], "cat /etc/resolv.conf")) == Self.hostResolv)
    }

    /// --timezone: off and copy leave the image's link; delete removes it; auto and bind make
    /// it the host's (a copy: the image's link is not a regular file to bind over, so bind
    /// leaves it).
    @Test(arguments: [("off", "link"), ("copy", "link"), ("bind", "link"), ("delete", "none"), ("auto", "file")])
    func timezone(mode: String, result: String) throws {
        let (image, hash) = try Self.image()
        let lines = try image.sh(["--timezone=\(mode)"], """
            if [ -L /etc/localtime ]; then readlink /etc/localtime; elif [ -f /etc/localtime ]; then echo file; else echo none; fi
            """)
        #expect(lines == [result == "link" ? "../usr/share/zoneinfo/Nowhere/Else" : result])
        #expect(Harness.sha256(image.path) == hash)
    }

    /// --timezone=symlink: a link to the host's zone in the image's own zoneinfo; where the
    /// image's tree is read-only (--volatile=state's root), the image's link stays.
    @Test(.enabled(if: hostZone != nil, "the host's /etc/localtime is not a link into a zoneinfo directory"))
    func timezoneSymlink() throws {
        let (image, hash) = try Self.image()
        let zone = try #require(Self.hostZone)
        #expect(try image.sh(["--timezone=symlink"], "readlink /etc/localtime; cat /etc/localtime") == ["../usr/share/zoneinfo/\(zone)", "TZif-test"])
        #expect(try image.sh(["--timezone=symlink", "--volatile=state"], "readlink /etc/localtime") == ["../usr/share/zoneinfo/Nowhere/Else"])
        #expect(Harness.sha256(image.path) == hash)
    }

    /// --dry-run says what each mode does; an unknown mode is a usage error.
    @Test func dryRunAndUnknownModes() throws {
        let image = try ImageCopy("basic")
        let plan = try Harness.imgboot(["run", "--dry-run", "--resolv-conf=delete", "--timezone=symlink", image.path, "true"])
        #expect(plan.status == 0)
        #expect(plan.stdout.contains("remove /etc/resolv.conf, if it is there and the tree is writable"), "\(plan.stdout)")
        #expect(plan.stdout.contains("symlink /etc/localtime -> the host's zone in the tree's /usr/share/zoneinfo, if it has it"))
        for option in ["--resolv-conf=nope", "--timezone=local"] {
            let out = try image.run([option], ["true"])
            #expect(out.status == 125)
            #expect(out.stderr.hasPrefix("Error: "), "\(out.stderr)")
        }
        #expect(image.isUnchanged)
    }
}
