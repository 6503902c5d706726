/// Parses os-release(5) text: `KEY=VALUE` lines, values optionally quoted with shell-style
/// quotes and escapes; comments and malformed lines are skipped. Keeps the file's order.
public enum OSRelease {
    public static func parse(_ text: String) -> [(key: String, value: String)] {
        var result: [(key: String, value: String)] = []
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = rawLine.trimmingWhitespace()
            guard !line.isEmpty, !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<eq])
            guard isValidKey(key) else { continue }
            guard let value = unquote(line[line.index(after: eq)...]) else { continue }
            result.removeAll { $0.key == key }
            result.append((key, value))
        }
        return result
    }

    /// A shell variable name: a letter or underscore, then letters, digits, underscores.
    static func isValidKey(_ key: String) -> Bool {
        func isLetter(_ c: Unicode.Scalar) -> Bool { ("A"..."Z").contains(c) || ("a"..."z").contains(c) || c == "_" }
        guard let first = key.unicodeScalars.first, isLetter(first) else { return false }
        return key.unicodeScalars.allSatisfy { isLetter($0) || ("0"..."9").contains($0) }
    }

    /// The value of a shell assignment's right-hand side, or nil when its quoting is broken.
    static func unquote(_ text: Substring) -> String? {
        var out = ""
        var quote: Character? = nil
        var escaped = false
        for c in text {
            if escaped {
                if quote == "\"" && !"\"\\$`".contains(c) { out.append("\\") }
                out.append(c)
                escaped = false
                continue
            }
            switch (quote, c) {
            case (nil, "\"" ), (nil, "'"): quote = c
            case ("\"", "\""), ("'", "'"): quote = nil
            case ("'", _): out.append(c)
            case (_, "\\"): escaped = true
            case (nil, " "), (nil, "\t"): return out  // an unquoted space ends the value
            default: out.append(c)
            }
        }
        return quote == nil && !escaped ? out : nil
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        // By scalars, not Characters: a space followed by a combining mark (" \u{fe0f}") is one
        // Character that is not " ", and would keep its space.
        var scalars = unicodeScalars[...]
        while let c = scalars.first, c == " " || c == "\t" { scalars.removeFirst() }
        while let c = scalars.last, c == " " || c == "\t" { scalars.removeLast() }
        return Substring(scalars)
    }
}
