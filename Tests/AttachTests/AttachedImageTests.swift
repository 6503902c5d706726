import Foundation
import Testing
@testable import Attach
import Dissect

extension LoopDeviceTests {
    /// Attaching real loop devices to a real GPT image, checked the way a user would look:
    /// sysfs, `losetup`, the bytes read through each device, and the image's hash.
    @Suite struct AttachedImageTests {
        @Test func threePartitionsGetTheirOwnDevices() throws {
            let image = try TestImage()
            defer { image.remove() }

            let attached = try AttachedImage.attach(
                image.dissected, partitions: [(number: 1, readOnly: false), (number: 2, readOnly: true), (number: 3, readOnly: true)])
            defer { attached.finish() }

            let devices = try [1, 2, 3].map { n in
                try #require(attached.device(partition: n), "partition \(n) has no device")
            }
            #expect(Set(devices.map(\.path)).count == 3)
            #expect(attached.device(partition: 4) == nil)

            for (n, device) in zip([1, 2, 3], devices) {
                let partition = try image.partition(n)
                let sys = "/sys/block/loop\(device.number)"
                #expect(device.path == "/dev/loop\(device.number)")
                #expect(sysfs(sys + "/loop/backing_file") == image.path)
                #expect(sysfs(sys + "/loop/offset") == String(partition.offset))
                #expect(sysfs(sys + "/loop/sizelimit") == String(partition.size))
                #expect(sysfs(sys + "/loop/autoclear") == "1")
                #expect(sysfs(sys + "/size") == String(partition.size / 512))
                #expect(sysfs(sys + "/ro") == (n == 1 ? "0" : "1"))
                #expect(device.readOnly == (n != 1))
                #expect(try readBytes(device.path, offset: 0, count: 4096)
                        == readBytes(image.path, offset: partition.offset, count: 4096),
                        "partition \(n): \(device.path) does not show the partition's bytes")
                // The last 4 KiB too: the size limit cuts exactly at the partition's end.
                #expect(try readBytes(device.path, offset: partition.size - 4096, count: 4096)
                        == readBytes(image.path, offset: partition.offset + partition.size - 4096, count: 4096))
            }

            // Read-only down to the device: opening for writing or writing is refused.
            for device in devices.dropFirst() {
                let fd = open(device.path, O_WRONLY | O_CLOEXEC)
                if fd >= 0 {
                    defer { close(fd) }
                    let byte: [UInt8] = [0]
                    let written = write(fd, byte, 1)
                    let e = errno
                    #expect(written < 0 && (e == EROFS || e == EPERM), "\(device.path) accepted a write")
                }
            }
            // The writable one takes a write (at its first byte, written back unchanged).
            let first = try readBytes(devices[0].path, offset: 0, count: 512)
            let fd = open(devices[0].path, O_WRONLY | O_CLOEXEC)
            #expect(fd >= 0)
            if fd >= 0 {
                defer { close(fd) }
                #expect(pwrite(fd, first, 512, 0) == 512)
            }
        }

        @Test func closeLeavesLosetupAsItWas() throws {
            let before = try losetupOurs()
            let image = try TestImage()
            defer { image.remove() }

            let attached = try AttachedImage.attach(
                image.dissected, partitions: [(number: 1, readOnly: true), (number: 2, readOnly: true), (number: 3, readOnly: false)])
            defer { attached.finish() }
            #expect(try loopDevices(backedBy: image.path).count == 3)
            // Still held by our descriptors: not detached, and waiting says so at once.
            #expect(attached.waitUntilDetached(timeout: .seconds(1)) == false)

            attached.close()
            #expect(attached.waitUntilDetached())
            #expect(try loopDevices(backedBy: image.path).isEmpty)
            #expect(try losetupOurs() == before)
            for (_, device) in attached.devices {
                #expect(sysfs("/sys/block/loop\(device.number)/loop/backing_file") == nil)
            }
        }

        @Test func missingPartitionAttachesNothing() throws {
            let image = try TestImage()
            defer { image.remove() }

            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true), (number: 7, readOnly: true)])
            }
            #expect(error?.description == "\(image.path): partition 7: no such partition in the image")
            #expect(try loopDevices(backedBy: image.path).isEmpty)
        }

        @Test func partitionBeyondTheFileAttachesNothing() throws {
            let image = try TestImage()
            defer { image.remove() }
            // The image shrank after it was dissected: partition 3 now lies past its end.
            #expect(truncate(image.path, 20 << 20) == 0)

            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: true), (number: 3, readOnly: true)])
            }
            #expect(error?.partition == 3)
            #expect(error?.description.contains("beyond the end of the image") == true)
            #expect(try loopDevices(backedBy: image.path).isEmpty)
        }

        @Test func failureHalfwayDetachesWhatWasAttached() throws {
            let before = try losetupOurs()
            let image = try TestImage()
            defer { image.remove() }

            // Two real devices, then the third attach fails the way a kernel out of devices would.
            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(
                    image.dissected,
                    partitions: [(number: 1, readOnly: true), (number: 2, readOnly: false), (number: 3, readOnly: true)],
                    logger: .init(label: "test")
                ) { fd, partition, readOnly throws(AttachError) in
                    guard partition.number != 3 else {
                        throw AttachError(image: image.path, partition: 3, .getFreeLoopDevice, errno: ENOSPC)
                    }
                    let device = try LoopDevice.attach(
                        backing: fd, path: image.path, offset: partition.offset, size: partition.size,
                        readOnly: readOnly, partition: partition.number)
                    #expect(sysfs("/sys/block/loop\(device.number)/loop/backing_file") == image.path)
                    return device
                }
            }
            #expect(error?.description == "\(image.path): partition 3: attach loop device: No free loop device (No space left on device)")
            // Right when the error is thrown, not eventually.
            #expect(try loopDevices(backedBy: image.path).isEmpty)
            #expect(try losetupOurs() == before)
            // And the image lock went with it: a writable attach works now.
            let again = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: false)])
            again.close()
            #expect(again.waitUntilDetached())
        }

        @Test func readOnlyAttachLeavesTheImageUnchanged() throws {
            let image = try TestImage()
            defer { image.remove() }
            let hash = try sha256(image.path)

            let attached = try AttachedImage.attach(
                image.dissected, partitions: [(number: 1, readOnly: true), (number: 2, readOnly: true), (number: 3, readOnly: true)])
            defer { attached.finish() }
            for (_, device) in attached.devices {
                _ = try readBytes(device.path, offset: 0, count: 1 << 20)
            }
            attached.close()
            #expect(attached.waitUntilDetached())
            #expect(try sha256(image.path) == hash)
        }

        @Test func bareFilesystemImageIsPartitionZero() throws {
            let image = try TestImage()
            defer { image.remove() }
            var size = stat()
            #expect(stat(image.path, &size) == 0)
            // What Dissect makes of a filesystem without a partition table.
            let bare = DissectedImage(
                image: image.path, size: UInt64(size.st_size), sectorSize: 512, partitionTable: nil,
                imageUuid: nil, architecture: nil,
                partitions: [Partition(number: 0, offset: 0, size: UInt64(size.st_size), fsType: "ext4")])

            let attached = try AttachedImage.attach(bare, partitions: [(number: 0, readOnly: true)])
            defer { attached.finish() }
            let device = try #require(attached.device(partition: 0))
            #expect(sysfs("/sys/block/loop\(device.number)/loop/offset") == "0")
            #expect(sysfs("/sys/block/loop\(device.number)/size") == String(size.st_size / 512))
            #expect(try readBytes(device.path, offset: 0, count: 4096) == readBytes(image.path, offset: 0, count: 4096))
        }

        @Test func writableAttachOfAReadOnlyFileSaysSo() throws {
            let image = try TestImage()
            defer { image.remove() }
            // A read-only bind mount of the image's directory stands for read-only media.
            let dir = "/var/tmp/imgboot-attach-ro-\(getpid())"
            #expect(mkdir(dir, 0o700) == 0)
            defer { rmdir(dir) }
            var status = try run(["mount", "--bind", "-o", "ro", "/var/tmp", dir])
            try #require(status.status == 0, "mount --bind: \(status.stderr)")
            defer { status = (try? run(["umount", dir])) ?? status }  // best effort; rmdir then fails visibly

            var dissected = image.dissected
            dissected.image = dir + "/" + (image.path as NSString).lastPathComponent
            let error = #expect(throws: AttachError.self) {
                try AttachedImage.attach(dissected, partitions: [(number: 1, readOnly: false)])
            }
            #expect(error?.description == "\(dissected.image): cannot open for writing: Read-only file system")
            // Read-only works from there.
            let attached = try AttachedImage.attach(dissected, partitions: [(number: 1, readOnly: true)])
            attached.close()
            #expect(attached.waitUntilDetached())
        }

        /// The lifetime contract Mount relies on: once mounted, closing our descriptor leaves the
        /// device to the mount, and unmounting detaches it; closed before mounting, it is gone.
        @Test func aMountHoldsTheDeviceUntilUnmounted() throws {
            let image = try TestImage()
            defer { image.remove() }
            let dir = "/var/tmp/imgboot-attach-mnt-\(getpid())"
            #expect(mkdir(dir, 0o700) == 0)
            defer { rmdir(dir) }

            let attached = try AttachedImage.attach(image.dissected, partitions: [(number: 1, readOnly: false), (number: 2, readOnly: false)])
            defer { attached.finish() }
            let device = try #require(attached.device(partition: 1))
            let early = try #require(attached.device(partition: 2))
            var status = try run(["mkfs.ext4", "-q", device.path])
            try #require(status.status == 0, "mkfs.ext4: \(status.stderr)")

            status = try run(["mount", "-t", "ext4", device.path, dir])
            try #require(status.status == 0, "mount: \(status.stderr)")
            var mounted = true
            defer { if mounted { _ = try? run(["umount", dir]) } }  // best effort: the test has failed already

            attached.close()
            #expect(!device.isDetached, "the mount should hold \(device.path)")
            #expect(sysfs("/sys/block/loop\(device.number)/loop/backing_file") == image.path)
            // Closed before anything held it, partition 2's device went at once.
            #expect(early.waitUntilDetached(timeout: .milliseconds(100)))

            status = try run(["umount", dir])
            #expect(status.status == 0, "umount: \(status.stderr)")
            mounted = status.status != 0
            let clock = ContinuousClock()
            let start = clock.now
            let goneAtOnce = device.isDetached
            #expect(device.waitUntilDetached())
            print("umount → loop device detached: \(clock.now - start) (already gone when umount(8) had exited: \(goneAtOnce))")
            #expect(try loopDevices(backedBy: image.path).isEmpty)
        }
    }
}
