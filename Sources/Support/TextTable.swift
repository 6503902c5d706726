/// Rows as a table for a terminal: columns left-aligned, two spaces apart, each as wide as its
/// widest cell (the last column not padded, so that no line ends in blanks); a newline after
/// every row. The first row is usually the header. Cells are shown as they are: make them
/// `printable(_:)` first when they come from an image or a user.
public func textTable(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    let widths = first.indices.map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell.padding(to: widths[column])
        }.joined(separator: "  ") + "\n"
    }.joined()
}

extension String {
    /// The string with spaces after it up to `width` characters (as it is when already as wide).
    public func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
