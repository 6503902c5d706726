#if canImport(Glibc)
import Glibc
#endif

/// An error of imgboot's own, whatever the stage, in one shape: what it is about (`subject`:
/// the image, a machine, a directory, an option), the partition when it is about one, the
/// system call's errno when one failed, and the rest of the line (`detail`). Its description is
/// the one line the user sees after "imgboot: ", rendered here for every stage:
/// `SUBJECT: PARTITION: DETAIL`. Decisions are made on these fields and on each type's enum,
/// never on the text.
public protocol IMGBootError: Error, CustomStringConvertible {
    /// What the error is about, as the user named it; nil for a line about no one thing (an
    /// unknown command).
    var subject: String? { get }
    /// The partition, in words ("partition 2"), when the error is about one.
    var partitionName: String? { get }
    /// The errno of the system call that failed, when one did.
    var errno: Int32? { get }
    /// What is wrong, or what failed and why: the line after the subject and partition.
    var detail: String { get }
    /// The status imgboot exits with: 125 for its own failures (the default), 128+N when a
    /// signal N interrupted it.
    var exitStatus: Int32 { get }
}

extension IMGBootError {
    public var partitionName: String? { nil }
    public var errno: Int32? { nil }
    public var exitStatus: Int32 { 125 }

    public var description: String {
        ([subject, partitionName].compactMap { $0 } + [detail]).joined(separator: ": ")
    }
}

/// "OPERATION: strerror" — or the operation alone without an errno: what failed, and why.
public func failure(_ operation: String, errno: Int32?) -> String {
    errno.map { "\(operation): \(errnoString($0))" } ?? operation
}

/// strerror, as a Swift string.
public func errnoString(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// imgboot was asked to stop (SIGINT, SIGTERM, SIGHUP, SIGQUIT) before its work was done: it
/// undid what it did and leaves with 128+N.
public struct Interrupted: IMGBootError {
    public let signal: Int32
    public let subject: String?

    public init(signal: Int32, subject: String) {
        self.signal = signal
        self.subject = subject
    }

    public var exitStatus: Int32 { 128 + signal }

    public var detail: String {
        "interrupted by \(String(cString: strsignal(signal))); nothing was left behind"
    }
}
