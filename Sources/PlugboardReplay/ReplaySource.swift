import Foundation
import PlugboardCore
import PlugboardSystem

/// Replays a recorded session: JSON Lines, one event per line (docs/replay-format.md).
/// Blank lines and lines starting with `#` are skipped. The whole file is validated
/// when the source is created, so a bad line fails before anything runs.
public struct ReplaySource: EventSource {
    public let path: String
    public let records: [EventRecord]
    /// Multiplies the `delay_ms` of each line (0 = as fast as possible).
    public var pace: Double

    public var name: String { "replay:\(path)" }
    public var isFinite: Bool { true }

    /// Reads and validates `path`.
    /// - Throws: `PlugboardError` naming the file, the line and the field.
    public init(path: String, pace: Double = 1) throws {
        self.path = path
        self.pace = pace
        let data: [UInt8]
        do throws(Errno) {
            data = try FileDescriptor.readContents(of: path)
        } catch {
            throw PlugboardError(code: "replay.open", file: path,
                                 reason: "cannot read the replay file: \(error.call): \(error.reason)",
                                 fix: "check the path given as replay:FILE")
        }
        var records: [EventRecord] = []
        var lineNumber = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            records.append(try EventJSON.decode(line: line, file: path, line: lineNumber))
        }
        self.records = records
    }

    public func run(_ context: SourceContext) throws {
        for r in records {
            if context.shouldStop { return }
            if r.delayMilliseconds > 0, pace > 0 {
                var remaining = r.delayMilliseconds * pace / 1000
                while remaining > 0, !context.shouldStop {
                    let step = min(remaining, 0.05)
                    sleepThread(for: .seconds(step))
                    remaining -= step
                }
            }
            context.publishDeviceEvent { w in r.write(into: &w) }
        }
    }
}
