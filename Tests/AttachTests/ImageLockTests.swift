import Foundation
import Testing
@testable import Attach

extension LoopDeviceTests {
    /// The image lock: many readers, or one writer.
    @Suite struct ImageLockTests {
        @Test func readersShare() throws {
            let image = try TestImage()
            defer { image.remove() }
            let first = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true)])
            defer { first.finish() }
            let second = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true), (number: 2, readOnly: true)])
            defer { second.finish() }
            #expect(try loopDevices(backedBy: image.path).count == 3)
        }

        @Test func writerWaitsForNoReader() throws {
            let image = try TestImage()
            defer { image.remove() }
            let reader = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true)])
            defer { reader.finish() }

            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true), (number: 2, readOnly: false)])
            }
            #expect(error?.isBusy == true)
            #expect(error?.description == "\(image.path): image is busy: another imgboot uses it")
            // Only the reader's device exists: the refused attach made none.
            #expect(try loopDevices(backedBy: image.path).count == 1)

            // Closed, the devices gone, but not yet unlocked: the image is still taken.
            reader.close()
            #expect(reader.waitUntilDetached())
            #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 2, readOnly: false)])
            }
            reader.unlock()
            let writer = try AttachedImage.attach(image.dissected, partitions: [(number: 2, readOnly: false)])
            writer.close()
            #expect(writer.waitUntilDetached())
        }

        @Test func readerWaitsForNoWriter() throws {
            let image = try TestImage()
            defer { image.remove() }
            let writer = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: false)])
            defer { writer.finish() }

            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 2, readOnly: true)])
            }
            #expect(error?.description == "\(image.path): image is busy: another imgboot uses it writably")
            let writer2 = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 2, readOnly: false)])
            }
            #expect(writer2?.isBusy == true)
        }

        @Test func anotherProcessHoldsTheLock() throws {
            let image = try TestImage()
            defer { image.remove() }
            // flock(1) stands for another imgboot: it holds a shared lock, says so, and sleeps.
            // --no-fork, so that terminating it ends the lock's last holder.
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
            holder.arguments = ["--shared", "--no-fork", image.path, "sh", "-c", "echo locked; exec sleep 30"]
            let output = Pipe()
            holder.standardOutput = output
            try holder.run()
            defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
            let said = output.fileHandleForReading.availableData
            try #require(String(decoding: said, as: UTF8.self) == "locked\n")

            let error = #expect(throws: AttachError.self) {
                try ImageLock(path: image.path, exclusive: true)
            }
            #expect(error?.isBusy == true)
            _ = try ImageLock(path: image.path, exclusive: false)

            let writable = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: false)])
            }
            #expect(writable?.description == "\(image.path): image is busy: another imgboot uses it")
            let reader = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true)])
            reader.close()
            #expect(reader.waitUntilDetached())
        }

        @Test func releasingUnlocks() throws {
            let image = try TestImage()
            defer { image.remove() }
            let lock = try ImageLock(path: image.path, exclusive: true)
            #expect(throws: AttachError.self) { try ImageLock(path: image.path, exclusive: false) }
            lock.release()
            _ = try ImageLock(path: image.path, exclusive: true)
        }
    }
}
