/// Compares two version strings as the UAPI Version Format Specification orders them (and
/// systemd's `strverscmp_improved`): numbers compare by value, letters lexicographically, `~`
/// sorts lower than anything (even the end: `1.0~rc1` < `1.0`), `-` and `.` lower than anything
/// but `~` and the end, `^` higher. The empty string is the lowest of all. Returns <0, 0 or >0.
///
/// Used to pick the newest of several root or /usr partitions by their labels
/// (`fooOS_1.10` is newer than `fooOS_1.9`).
public func compareVersions(_ a: String, _ b: String) -> Int {
    if a.isEmpty || b.isEmpty { return a.isEmpty ? (b.isEmpty ? 0 : -1) : 1 }
    var x = Substring(a).utf8[...]
    var y = Substring(b).utf8[...]
    let tilde = UInt8(ascii: "~"), dash = UInt8(ascii: "-"), caret = UInt8(ascii: "^"), dot = UInt8(ascii: ".")

    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
    func isMeaningful(_ c: UInt8) -> Bool { isDigit(c) || isAlpha(c) || c == tilde || c == dash || c == caret || c == dot }

    while true {
        // Characters that carry no meaning are skipped.
        while let c = x.first, !isMeaningful(c) { x.removeFirst() }
        while let c = y.first, !isMeaningful(c) { y.removeFirst() }

        // '~' sorts before anything, including the end.
        let xt = x.first == tilde, yt = y.first == tilde
        if xt || yt {
            if !(xt && yt) { return xt ? -1 : 1 }
            x.removeFirst(); y.removeFirst(); continue
        }
        guard let cx = x.first else { return y.isEmpty ? 0 : -1 }
        guard let cy = y.first else { return 1 }

        // '-' sorts lower than any other character, then '^' higher, then '.' lower.
        for (separator, lower) in [(dash, true), (caret, false), (dot, true)] {
            let xs = cx == separator, ys = cy == separator
            if xs != ys { return xs == lower ? -1 : 1 }
        }
        if cx == dash || cx == caret || cx == dot { x.removeFirst(); y.removeFirst(); continue }

        if isDigit(cx) || isDigit(cy) {
            // Letters sort before digits.
            if !isDigit(cx) { return -1 }
            if !isDigit(cy) { return 1 }
            while x.first == 0x30 { x.removeFirst() }
            while y.first == 0x30 { y.removeFirst() }
            let nx = x.prefix(while: isDigit), ny = y.prefix(while: isDigit)
            if nx.count != ny.count { return nx.count < ny.count ? -1 : 1 }
            for (dx, dy) in zip(nx, ny) where dx != dy { return dx < dy ? -1 : 1 }
            x = x.dropFirst(nx.count); y = y.dropFirst(ny.count)
        } else {
            let wx = x.prefix(while: isAlpha), wy = y.prefix(while: isAlpha)
            for (lx, ly) in zip(wx, wy) where lx != ly { return lx < ly ? -1 : 1 }
            if wx.count != wy.count { return wx.count < wy.count ? -1 : 1 }
            x = x.dropFirst(wx.count); y = y.dropFirst(wy.count)
        }
    }
}
