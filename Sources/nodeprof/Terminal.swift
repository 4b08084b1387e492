import Agent
import Foundation
import Recording

/// Status output on standard error; the top-N table goes to standard output.
enum Terminal {
    static let interactive = isatty(STDERR_FILENO) != 0
    nonisolated(unsafe) static var progressShown = false

    static func status(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func progress(_ p: RecordingProgress) {
        var line = String(format: "  %.0fs", p.elapsedSeconds)
        if let planned = p.plannedSeconds { line += String(format: "/%.0fs", planned) }
        line += "  \(p.samples) samples  \(p.processes) processes  \(p.lost) lost"
        if interactive {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            progressShown = true
        } else {
            status(line)
        }
    }

    static func endProgress() {
        if progressShown { FileHandle.standardError.write(Data("\n".utf8)) }
        progressShown = false
    }
}
