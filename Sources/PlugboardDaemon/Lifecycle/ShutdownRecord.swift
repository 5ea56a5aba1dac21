import Foundation

/// What the daemon remembers about its last shutdown, for the next run's metrics and the alert.
public struct ShutdownRecord: Sendable, Equatable {
    public var seconds: Double
    public var completed: Bool

    /// Written as one line: `<seconds> <completed 0|1>`.
    public func write(to path: String) throws {
        try "\(seconds) \(completed ? 1 : 0)\n".write(toFile: path, atomically: true, encoding: .utf8)
    }

    public static func read(from path: String) -> ShutdownRecord? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let f = text.split(whereSeparator: \.isWhitespace)
        guard f.count == 2, let s = Double(f[0]), let c = Int(f[1]) else { return nil }
        return ShutdownRecord(seconds: s, completed: c == 1)
    }
}
