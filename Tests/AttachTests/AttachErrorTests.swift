import Glibc
import Testing
@testable import Attach

/// How attach errors read: one line naming the image, the partition, and what to do about it.
struct AttachErrorTests {
    @Test func noFreeLoopDevice() {
        let error = AttachError(image: "basic.raw", partition: 3, .getFreeLoopDevice, errno: ENOSPC)
        #expect(error.description == "basic.raw: partition 3: attach loop device: No free loop device (No space left on device)")
    }

    /// /dev/loop-control that is something else (here: /dev/null bound over it) answers ENOTTY.
    @Test func loopControlThatIsNotOne() {
        let error = AttachError(image: "basic.raw", partition: 1, .getFreeLoopDevice, errno: ENOTTY)
        #expect(error.description == "basic.raw: partition 1: attach loop device: /dev/loop-control is not the loop control device (Inappropriate ioctl for device)")
    }

    @Test func readOnlyFileSystem() {
        let error = AttachError(image: "basic.raw", .openImage(writable: true), errno: EROFS)
        #expect(error.description == "basic.raw: cannot open for writing: Read-only file system")
    }

    @Test func busy() {
        let shared = AttachError(image: "basic.raw", .lock(exclusive: false), errno: EWOULDBLOCK)
        let exclusive = AttachError(image: "basic.raw", .lock(exclusive: true), errno: EWOULDBLOCK)
        #expect(shared.description == "basic.raw: image is busy: another imgboot uses it writably")
        #expect(exclusive.description == "basic.raw: image is busy: another imgboot uses it")
        #expect(shared.isBusy && exclusive.isBusy)
    }

    @Test func bareFilesystemImageIsNotCalledPartitionZero() {
        let error = AttachError(image: "fs.img", partition: 0, .configure("/dev/loop2"), errno: EINVAL)
        #expect(error.description == "fs.img: attach loop device: configure /dev/loop2: Invalid argument")
    }

    @Test func missingPartition() {
        let error = AttachError(image: "basic.raw", partition: 9, .noSuchPartition)
        #expect(error.description == "basic.raw: partition 9: no such partition in the image")
    }
}
