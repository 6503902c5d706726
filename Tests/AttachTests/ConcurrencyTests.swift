import Foundation
import Testing
@testable import Attach
import Dissect
import Logging

extension LoopDeviceTests {
    /// Racing for free loop devices: against ourselves and against another program.
    @Suite struct ConcurrencyTests {
        /// 8 attaches of one image from 8 threads at once (and more, for as long as the other
        /// program runs), while `losetup` attaches and detaches another file 200 times: everyone
        /// gets the device they configured, and nobody's device is detached by someone else.
        /// Without the /dev/loop-control lock too, so that the threads also race each other
        /// and the retrying after a lost race is put to work.
        @Test(arguments: [true, false])
        func eightAttachesBesideLosetup(lockingControl: Bool) throws {
            let image = try TestImage()
            defer { image.remove() }
            let other = try makeTemporaryFile(size: "4M")
            defer { unlink(other) }
            let before = try losetupOurs()

            // The other program: attach, check it still shows its file, detach — 200 times.
            // `losetup -d` fails if someone else detached the device; the check fails if
            // someone else's file is behind it.
            let script = """
                for i in $(seq 200); do
                    d=$(losetup -f --show "$1") || { echo "attach $i failed" >&2; exit 1; }
                    b=$(losetup -n -O BACK-FILE "$d")
                    [ "$b" = "$1" ] || { echo "$d shows '$b', not $1" >&2; exit 2; }
                    losetup -d "$d" || { echo "detach $d ($i) failed" >&2; exit 3; }
                done
                """
            let loop = Process()
            loop.executableURL = URL(fileURLWithPath: "/bin/sh")
            loop.arguments = ["-c", script, "sh", other]
            let loopErrors = Pipe()
            loop.standardError = loopErrors
            try loop.run()
            defer {
                // Let it finish (it is bounded), then detach whatever it left if it failed.
                loop.waitUntilExit()
                for device in (try? loopDevices(backedBy: other)) ?? [] {
                    _ = try? run(["losetup", "-d", device])  // best effort: the test has failed already
                }
            }

            // Each thread attaches all three partitions, checks what sysfs shows, and detaches;
            // the first round is held until all 8 have attached (24 devices at once), then the
            // threads go on attaching and detaching until the losetup loop is done, so that the
            // two race for free devices the whole time.
            struct Outcome: Sendable {
                var rounds = 0
                var problems: [String] = []
                /// The devices of the first round, all held at the same time.
                var firstRound: [Int] = []
                /// How long each attach of all three took, from the second round on.
                var attachTimes: [Duration] = []
            }
            let outcomes = Locked<[Outcome]>([])
            let start = DispatchSemaphore(value: 0)
            let attachedCount = Locked(0)
            let allAttached = DispatchSemaphore(value: 0)
            let losetupDone = Locked(false)
            let done = DispatchGroup()
            let dissected = image.dissected, imagePath = image.path
            let expected = try [1, 2, 3].map { try image.partition($0) }
            let messages = Locked<[String]>([])
            let logger = Logger(label: "test") { _ in RecordingLogHandler(messages: messages) }
            for t in 0..<8 {
                done.enter()
                let thread = Thread {
                    defer { done.leave() }
                    start.wait()
                    var outcome = Outcome()
                    repeat {
                        do {
                            let t0 = ContinuousClock.now
                            let attached = try AttachedImage.attach(
                                dissected, partitions: expected.map { (number: $0.number, readOnly: true) }, logger: logger
                            ) { fd, partition, readOnly throws(AttachError) in
                                try LoopDevice.attach(
                                    backing: fd, path: dissected.image, offset: partition.offset, size: partition.size,
                                    readOnly: readOnly, partition: partition.number, lockingControl: lockingControl, logger: logger)
                            }
                            if outcome.rounds > 0 { outcome.attachTimes.append(ContinuousClock.now - t0) }
                            for partition in expected {
                                guard let device = attached.device(partition: partition.number) else {
                                    outcome.problems.append("thread \(t): no device for partition \(partition.number)")
                                    continue
                                }
                                let sys = "/sys/block/loop\(device.number)/loop/"
                                let (backing, offset) = (sysfs(sys + "backing_file"), sysfs(sys + "offset"))
                                if backing != imagePath || offset != String(partition.offset) {
                                    outcome.problems.append("thread \(t): \(device.path) shows \(backing ?? "nothing") at \(offset ?? "?")")
                                }
                                if outcome.rounds == 0 { outcome.firstRound.append(device.number) }
                            }
                            if outcome.rounds == 0 {
                                if attachedCount.withLock({ $0 += 1; return $0 }) == 8 {
                                    for _ in 0..<8 { allAttached.signal() }
                                }
                                _ = allAttached.wait(timeout: .now() + 10)
                            }
                            attached.close()
                            if !attached.waitUntilDetached() {
                                outcome.problems.append("thread \(t): not detached after 2 s")
                            }
                        } catch {
                            outcome.problems.append("thread \(t): \(error)")
                            if outcome.rounds == 0, attachedCount.withLock({ $0 += 1; return $0 }) == 8 {
                                for _ in 0..<8 { allAttached.signal() }
                            }
                        }
                        outcome.rounds += 1
                    } while !losetupDone.withLock({ $0 }) && outcome.rounds < 150
                    outcomes.withLock { $0.append(outcome) }
                }
                thread.start()
            }
            for _ in 0..<8 { start.signal() }

            loop.waitUntilExit()
            losetupDone.withLock { $0 = true }
            #expect(done.wait(timeout: .now() + 60) == .success, "the attaching threads hung")
            let errors = String(decoding: loopErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(loop.terminationStatus == 0, "the losetup loop failed: \(errors)")

            let results = outcomes.withLock { $0 }
            #expect(results.count == 8)
            for outcome in results {
                #expect(outcome.problems.isEmpty, "\(outcome.problems.joined(separator: "\n"))")
            }
            // While all 24 were held at once, no two shared a device.
            let firstRound = results.flatMap(\.firstRound)
            #expect(firstRound.count == 24)
            #expect(Set(firstRound).count == firstRound.count)
            #expect(try loopDevices(backedBy: image.path).isEmpty)
            #expect(try loopDevices(backedBy: other).isEmpty)
            #expect(try losetupOurs() == before)
            let races = messages.withLock { $0.filter { $0.contains("trying another") } }
            let busy = races.filter { $0.contains("was taken by someone else") }.count
            let rounds = results.map(\.rounds).reduce(0, +)
            let times = results.flatMap(\.attachTimes).sorted()
            let median = times.isEmpty ? Duration.zero : times[times.count / 2]
            let p90 = times.isEmpty ? Duration.zero : times[times.count * 9 / 10]
            print("8 threads\(lockingControl ? "" : " not locking /dev/loop-control") beside 200 losetup cycles: \(rounds) attaches of 3 partitions, median \(median), 90th percentile \(p90); \(races.count) lost races, retried (\(busy) LOOP_CONFIGURE EBUSY/EAGAIN, \(races.count - busy) other)")
        }

        /// Not a test of speed: prints how long attaching and detaching takes here.
        @Test func measureAttachAndDetach() throws {
            let image = try TestImage()
            defer { image.remove() }
            var attachTimes: [Duration] = [], detachTimes: [Duration] = [], totalTimes: [Duration] = []
            var goneAtClose = 0
            let clock = ContinuousClock()
            for _ in 0..<50 {
                let t0 = clock.now
                let attached = try AttachedImage.attach(
                    image.dissected, partitions: [(number: 1, readOnly: true), (number: 2, readOnly: true), (number: 3, readOnly: false)])
                let t1 = clock.now
                attached.close()
                if attached.devices.allSatisfy({ $0.device.isDetached }) { goneAtClose += 1 }
                let detached = attached.waitUntilDetached()
                attached.unlock()
                let t2 = clock.now
                #expect(detached)
                attachTimes.append(t1 - t0)
                detachTimes.append(t2 - t1)
                totalTimes.append(t2 - t0)
            }
            func median(_ values: [Duration]) -> Duration { values.sorted()[values.count / 2] }
            func ms(_ d: Duration) -> String {
                String(format: "%.2f ms", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
            }
            print("attach 3 partitions: median \(ms(median(attachTimes))); close + wait for detach: median \(ms(median(detachTimes))), max \(ms(detachTimes.max() ?? .zero)); total: median \(ms(median(totalTimes))) (50 runs); all 3 already detached when close() returned: \(goneAtClose) of 50")
        }
    }
}
