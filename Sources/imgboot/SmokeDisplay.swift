import CLinux
import Dissect
import Smoke
import Synchronization

#if canImport(Glibc)
import Glibc
#endif
import Support

/// Live lines for a terminal (one per image, redrawn: "booting → ready in 0.52 s → checks
/// 2/2 → passed"), cut to the terminal's width and, with more images than rows, showing the
/// latest ones under a count of the rest; plain lines, one per event, otherwise.
final class SmokeDisplay: Sendable {
    /// The images' paths, as printable(_:) shows them.
    private let images: [String]
    /// Their file names, shown instead of the paths when a line would not fit.
    private let fileNames: [String]
    private let live: Bool
    private let state: Mutex<State>

    private struct State {
        /// Each image's steps so far.
        var steps: [[String]]
        /// Where each image stands: nil waiting, false running, true done.
        var finished: [Bool?]
        var passed = 0
        var failed = 0
        /// How many rows the last frame took.
        var drawn = 0
    }

    /// Live lines need a terminal on stderr that can move its cursor (TERM=dumb cannot), and
    /// stay off with --json, whose reader wants plain lines in any log it keeps.
    static func isLive(json: Bool) -> Bool {
        guard !json, isatty(2) == 1 else { return false }
        let term = getenv("TERM").map { String(cString: $0) } ?? ""
        return !term.isEmpty && term != "dumb"
    }

    init(images: [String], live: Bool) {
        // Escaped once: a path is anyone's file name, and these lines are for a terminal.
        self.images = images.map(printable)
        fileNames = images.map { printable(String($0.split(separator: "/").last ?? Substring($0))) }
        self.live = live
        state = Mutex(State(steps: Array(repeating: [], count: images.count), finished: Array(repeating: nil, count: images.count)))
    }

    func show(_ index: Int, _ event: SmokeEvent) {
        let step: String = switch event {
        case .booting: "booting"
        case .running: "running checks"
        case .ready(let s): "ready in \(formatSeconds(s)) s"
        case .checks(let done, let total): "checks \(done)/\(total)"
        case .poweringOff: "powering off"
        case .finished(let passed): passed ? "passed" : "FAILED"
        }
        state.withLock { state in
            if case .finished(let passed) = event {
                state.finished[index] = true
                if passed { state.passed += 1 } else { state.failed += 1 }
            } else if state.finished[index] == nil {
                state.finished[index] = false
            }
            guard live else {
                writeError("\(images[index]): \(step)")
                return
            }
            state.steps[index].append(step)
            redraw(&state)
        }
    }

    private func redraw(_ state: inout State) {
        var rows: UInt16 = 0, columns: UInt16 = 0
        if imgboot_window_size(2, &rows, &columns) != 0 || rows == 0 || columns == 0 {
            rows = 24
            columns = 80
        }
        let frame = frame(state, rows: Int(rows), columns: Int(columns))
        // Back to the first row of the last frame; each line rewritten; what the last frame
        // had below this one's end (the terminal shrank) cleared.
        var out = state.drawn > 0 ? "\u{1b}[\(state.drawn)A" : ""
        for line in frame { out += "\r\u{1b}[2K" + line + "\n" }
        out += "\u{1b}[J"
        state.drawn = frame.count
        writeAll(2, Array(out.utf8))
    }

    /// The lines to show: every image's when they fit in the rows (one row is kept free, so
    /// that the last newline does not scroll the frame away), else a count of the others and
    /// the latest images that have started. Each line cut to fit in the columns.
    private func frame(_ state: State, rows: Int, columns: Int) -> [String] {
        let room = max(1, rows - 1)
        let width = columns - 1
        var shown: [String]
        if images.count <= room {
            shown = images.indices.map { line($0, state.steps[$0], width: width) }
        } else {
            let window = max(1, room - 1)
            let latest = (state.finished.lastIndex { $0 != nil } ?? 0) + 1
            let end = min(images.count, max(latest, window))
            let start = max(0, end - window)
            let running = state.finished.filter { $0 == false }.count
            shown = [Self.cut("\(start + 1)–\(end) of \(images.count): \(state.passed) passed, \(state.failed) failed, \(running) running", to: width)]
                + (start..<end).map { line($0, state.steps[$0], width: width) }
        }
        return shown
    }

    /// An image's line within `width` columns: its path and steps; if that is too wide, its
    /// file name; then only its latest steps; then cut. What it is doing now stays in sight.
    private func line(_ index: Int, _ steps: [String], width: Int) -> String {
        func fits(_ text: String) -> Bool { Self.columns(text) <= width }
        let all = steps.isEmpty ? "waiting" : steps.joined(separator: " → ")
        for name in [images[index], fileNames[index]] where fits("\(name): \(all)") { return "\(name): \(all)" }
        var kept = steps[...]
        while kept.count > 1 && !fits("\(fileNames[index]): … → " + kept.joined(separator: " → ")) { kept = kept.dropFirst() }
        let text = "\(fileNames[index]): " + (kept.count < steps.count ? "… → " : "") + (kept.isEmpty ? all : kept.joined(separator: " → "))
        return Self.cut(text, to: width)
    }

    static func columns(_ text: String) -> Int { text.unicodeScalars.reduce(0) { $0 + columnsOf($1) } }

    /// `line` cut to `width` terminal columns, with `…` where it was cut.
    static func cut(_ line: String, to width: Int) -> String {
        guard width > 0 else { return "" }
        guard columns(line) > width else { return line }
        var used = 0
        var out = String.UnicodeScalarView()
        for scalar in line.unicodeScalars {
            let w = columnsOf(scalar)
            if used + w > width - 1 { break }
            out.append(scalar)
            used += w
        }
        out.append("…")
        return String(out)
    }

    /// How many columns a terminal gives `scalar`: 0 for combining marks, 2 for East Asian
    /// wide and emoji, 1 otherwise (escaped names hold no controls).
    static func columnsOf(_ scalar: Unicode.Scalar) -> Int {
        switch scalar.value {
        case 0x0300...0x036F, 0x200B...0x200F, 0xFE00...0xFE0F: return 0
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
             0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
             0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD: return 2
        default: return 1
        }
    }
}
