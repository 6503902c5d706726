/// A path's directory and its last component, as dirname(1) and basename(1) give them for the
/// paths imgboot handles: "/a/b" → ("/a", "b"), "/b" → ("/", "b"), "/a/b/" → ("/a", "b"), "/" →
/// ("/", ""); without a slash the directory is nil ("b" → (nil, "b")), for the caller to read as
/// it means it. The name may be "." or "..": callers that take it as a file's refuse those.
public func splitPath(_ path: String) -> (directory: String?, name: String) {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
    guard let slash = p.lastIndex(of: "/") else { return (nil, String(p)) }
    return (slash == p.startIndex ? "/" : String(p[..<slash]), String(p[p.index(after: slash)...]))
}

/// The path of a file beside `path`, named after its name: `pathBeside("/a/b") { ".#\($0).lck" }`
/// is "/a/.#b.lck" (nspawn's lock files, overlay work directories).
public func pathBeside(_ path: String, named name: (String) -> String) -> String {
    let (directory, last) = splitPath(path)
    let prefix = switch directory {
    case nil: ""
    case "/": "/"
    case let directory?: directory + "/"
    }
    return prefix + name(last)
}
