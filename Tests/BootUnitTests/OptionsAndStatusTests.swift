import CLinux
import Glibc
import Support
import Testing
@testable import Boot
@testable import Mount

/// Parsing of what users type, and how the container's end becomes imgboot's exit status.
struct OptionsAndStatusTests {
    struct BindCase: Sendable, CustomTestStringConvertible {
        var text: String
        var readOnly = false
        var expected: ContainerSpec.Bind?
        var testDescription: String { text }
    }

    @Test(arguments: [
        BindCase(text: "/src", expected: .init(source: "/src", target: "/src", readOnly: false)),
        BindCase(text: "/src:/dst", expected: .init(source: "/src", target: "/dst", readOnly: false)),
        BindCase(text: "/src:/dst:ro", expected: .init(source: "/src", target: "/dst", readOnly: true)),
        BindCase(text: "/src::ro,noidmap", expected: .init(source: "/src", target: "/src", readOnly: true, idmap: false)),
        BindCase(text: "/src:/dst:idmap,rw", readOnly: true, expected: .init(source: "/src", target: "/dst", readOnly: false, idmap: true)),
        BindCase(text: "/src", readOnly: true, expected: .init(source: "/src", target: "/src", readOnly: true)),
        BindCase(text: "src:/dst"), BindCase(text: "/src:dst"), BindCase(text: "/src:/a/../b"),
        BindCase(text: "/src:/dst:rbind"), BindCase(text: ""), BindCase(text: "/a:/b:ro:x"),
    ])
    func bindSyntax(_ c: BindCase) {
        switch ContainerSpec.Bind.parse(c.text, readOnly: c.readOnly) {
        case .success(let bind): #expect(bind == c.expected)
        case .failure(let error): #expect(c.expected == nil, "\(error)")
        }
    }

    /// nspawn's --overlay forms: the last path is where the container sees it, the one before
    /// it takes the changes; with two, UPPER is also the container's path; `+` is the image's.
    @Test func overlaySyntax() throws {
        typealias O = ContainerSpec.Overlay
        #expect(try O.parse("/a:/b:/u:/d", readOnly: false).get() == O(lower: [.host("/a"), .host("/b")], upper: "/u", target: "/d", readOnly: false))
        #expect(try O.parse("+/var::/var", readOnly: false).get() == O(lower: [.tree("/var")], upper: nil, target: "/var", readOnly: false))
        #expect(try O.parse("/l:/u", readOnly: false).get() == O(lower: [.host("/l")], upper: "/u", target: "/u", readOnly: false))
        #expect(try O.parse("/l:+/u", readOnly: true).get() == O(lower: [.host("/l"), .tree("/u")], upper: nil, target: "/u", readOnly: true))
        #expect(try O.parse(#"/a\:b:/u\\x:/d"#, readOnly: false).get() == O(lower: [.host("/a:b")], upper: #"/u\x"#, target: "/d", readOnly: false))
        #expect(O.workDirectory(upper: "/srv/up", run: "m1") == "/srv/.#up.imgboot-work-m1")
        #expect(O.workDirectory(upper: "/up", run: "m1") == "/.#up.imgboot-work-m1")
    }

    @Test func privateUsersSyntax() {
        #expect(PrivateUsers(parsing: "pick") == .pick && PrivateUsers(parsing: "yes") == .pick && PrivateUsers(parsing: "1") == .pick)
        #expect(PrivateUsers(parsing: "no") == .no && PrivateUsers(parsing: "off") == .no)
        #expect(PrivateUsers(parsing: "identity") == .identity)
        #expect(PrivateUsers(parsing: "1879048192") == .range(base: 1_879_048_192, count: 65536))
        #expect(PrivateUsers(parsing: "524288:4096") == .range(base: 524_288, count: 4096))
        for bad in ["", "bogus", "12:0", "-3", "4294967295:2", "1:x", "1:2:3"] {
            #expect(PrivateUsers(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func defaultMachineNames() {
        #expect(ContainerSpec.defaultMachineName(image: "/images/debian-12.raw") == "debian-12")
        #expect(ContainerSpec.defaultMachineName(image: "weird name!.img") == "weird-name")
        #expect(ContainerSpec.defaultMachineName(image: "...raw") == "image")
        let long = ContainerSpec.defaultMachineName(image: String(repeating: "x", count: 200) + ".raw")
        #expect(long.count + ContainerSpec.machineSuffixRoom <= ContainerSpec.maxMachineNameLength)
    }

    /// `run`: the command's status, 128+N when killed by signal N. `boot`: SIGINT from the
    /// kernel (poweroff, halt) is 0, SIGHUP (reboot) 133. A step that failed in the child is a
    /// one-line error naming it; a plan step by its line.
    @Test func exitStatuses() throws {
        typealias Outcome = Supervisor.Outcome
        #expect(try Outcome(code: 3, killed: false).exitStatus(boot: false, subject: "x", argv: ["true"]) == 3)
        #expect(try Outcome(code: SIGTERM, killed: true).exitStatus(boot: false, subject: "x", argv: ["true"]) == 143)
        #expect(try Outcome(code: SIGINT, killed: true).exitStatus(boot: true, subject: "x", argv: []) == 0)
        #expect(try Outcome(code: SIGHUP, killed: true).exitStatus(boot: true, subject: "x", argv: []) == 133)
        #expect(try Outcome(code: SIGKILL, killed: true).exitStatus(boot: true, subject: "x", argv: []) == 137)
        let interrupted = Outcome(code: SIGKILL, killed: true, interruptedBy: SIGTERM)
        #expect(throws: Interrupted.self) { try interrupted.exitStatus(boot: false, subject: "x", argv: []) }

        let plan = [MountPlan.Step(.filesystem(type: "proc", source: "proc"), .tree("/proc"), phase: .container)]
        let failed = Outcome(code: 125, killed: false,
                             childError: imgboot_child_error(step: Int32(IMGBOOT_STEP_PLAN.rawValue), error: EPERM, index: 0))
        #expect(throws: BootError(image: "x", "container setup: mount proc on /proc", errno: EPERM)) {
            try failed.exitStatus(boot: false, subject: "x", argv: [], plan: plan)
        }
    }

    /// The filter compiles for three ABIs to whole BPF instructions, and its cache key changes
    /// with what the program depends on.
    @Test func syscallFilter() throws {
        let keep = Capabilities.keep(privateNetwork: false)
        let program = try SyscallFilter.compile(keeping: keep)
        #expect(!program.isEmpty && program.count % 8 == 0)
        #expect(SyscallFilter.cacheKey(keep) == SyscallFilter.cacheKey(keep))
        #expect(SyscallFilter.cacheKey(keep) != SyscallFilter.cacheKey(keep | 1 << 25))
        #expect(Set(SyscallFilter.refused).isDisjoint(with: SyscallFilter.allowed.flatMap(\.calls)))
    }
}
