import PlugboardSystem
/// What the daemon remembers about its last shutdown, for the next run's metrics and the alert.
public struct ShutdownRecord: Sendable, Equatable {
    public var seconds: Double
    public var completed: Bool

    /// Written as one line: `<seconds> <completed 0|1>`, to a temporary file renamed over `path`
    /// (a crash leaves the old record or the new one).
    /// - Throws: `Errno` naming the call (`open`, `write`, `rename`) and the file.
    public func write(to path: String) throws(Errno) {
        let tmp = "\(path).tmp"
        let fd = try FileDescriptor.open(tmp, [.writeOnly, .create, .truncate], permissions: 0o644)
        try fd.closeAfter { () throws(Errno) in
            try fd.writeAll(Array("\(seconds) \(completed ? 1 : 0)\n".utf8))
        }
        try FileSystem.rename(tmp, to: path)
    }

    public static func read(from path: String) -> ShutdownRecord? {
        guard let bytes = try? FileDescriptor.readContents(of: path) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        let f = text.split(whereSeparator: \.isWhitespace)
        guard f.count == 2, let s = Double(f[0]), let c = Int(f[1]) else { return nil }
        return ShutdownRecord(seconds: s, completed: c == 1)
    }
}
