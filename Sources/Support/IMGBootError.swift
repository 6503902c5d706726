#if canImport(Glibc)
import Glibc
#endif

/// An error of imgboot's own, whatever the stage: its description is the one line the user
/// sees after "imgboot: ", naming the image, the partition or path, and what is wrong.
/// Every module's error type conforms.
public protocol IMGBootError: Error, CustomStringConvertible {
    /// The status imgboot exits with: 125 for its own failures (the default), 128+N when a
    /// signal N interrupted it.
    var exitStatus: Int32 { get }
}

extension IMGBootError {
    public var exitStatus: Int32 { 125 }
}

/// strerror, as a Swift string.
public func errnoString(_ code: Int32) -> String {
    String(cString: strerror(code))
}
