import CPlugboard
import Foundation
import Logging
import PlugboardCore
import PlugboardHost
import PlugboardSystem
import Synchronization

/// What the plugins under test published and logged, in the order each plugin did it.
final class CapturedOutput: Sendable {
    private struct Entry { var plugin: String; var line: String }
    private let published = Mutex<[Entry]>([])
    private let logged = Mutex<[Entry]>([])

    func record(_ r: OutputRecord) {
        let line = "\(r.plugin) \(Escaping.text(Array(r.topic.utf8))) \(Escaping.text(r.payload))"
        published.withLock { $0.append(Entry(plugin: r.plugin, line: line)) }
    }

    /// `message` is the host's log record of the plugin's message: already one escaped line
    /// (`Text.logRecord`), so it is taken as it is.
    func log(plugin: String, level: Logger.Level, message: String) {
        let line = "\(plugin) \(level.rawValue) \(message)"
        logged.withLock { $0.append(Entry(plugin: plugin, line: line)) }
    }

    /// Grouped by plugin name (workers run concurrently, so only each plugin's own order is stable).
    func publishedLines() -> [String] { Self.grouped(published.withLock { $0 }) }
    func logLines() -> [String] { Self.grouped(logged.withLock { $0 }) }

    private static func grouped(_ entries: [Entry]) -> [String] {
        entries.enumerated().sorted { ($0.element.plugin, $0.offset) < ($1.element.plugin, $1.offset) }.map(\.element.line)
    }
}

/// One line of text from arbitrary bytes: printable UTF-8 as it is; `\` as `\\`; newline, tab and
/// carriage return as `\n`, `\t`, `\r`; any other control byte or invalid UTF-8 as `\xNN`.
enum Escaping {
    static func text(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\\"): out += "\\\\"; i += 1
            case UInt8(ascii: "\n"): out += "\\n"; i += 1
            case UInt8(ascii: "\t"): out += "\\t"; i += 1
            case UInt8(ascii: "\r"): out += "\\r"; i += 1
            case 0x20..<0x7f: out.unicodeScalars.append(Unicode.Scalar(b)); i += 1
            default:
                // A multi-byte UTF-8 sequence is kept when valid; anything else is escaped byte by byte.
                let n = b >= 0xf0 && b < 0xf5 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 ? 2 : 0
                if n > 0, i + n <= bytes.count, let s = String(validating: bytes[i..<(i + n)], as: UTF8.self),
                   s.unicodeScalars.allSatisfy({ $0.properties.generalCategory != .control }) {
                    out += s
                    i += n
                } else {
                    out += String(format: "\\x%02x", b)
                    i += 1
                }
            }
        }
        return out
    }
}

/// A log handler for the host under test: messages a plugin logged through the host API (its
/// context's logger carries the `plugin` metadata) are captured; the host's own messages go to
/// stderr from `threshold` up.
struct CapturingLogHandler: LogHandler {
    let capture: CapturedOutput
    let threshold: Logger.Level
    var stderr: StreamLogHandler
    var metadata: Logger.Metadata = [:]
    // Everything reaches `log`: a plugin's trace and debug messages are part of its output.
    var logLevel: Logger.Level = .trace

    init(label: String, capture: CapturedOutput, threshold: Logger.Level) {
        self.capture = capture
        self.threshold = threshold
        stderr = StreamLogHandler.standardError(label: label)
        stderr.logLevel = threshold
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if case .string(let plugin)? = metadata["plugin"] {
            capture.log(plugin: plugin, level: event.level, message: event.message.description)
            return
        }
        guard event.level >= threshold else { return }
        var forwarded = event
        forwarded.metadata = metadata.merging(event.metadata ?? [:]) { $1 }
        stderr.log(event: forwarded)
    }
}

/// `plugboard test`'s sink: takes every record the plugins publish off the host's output queue (in
/// place of the Redis publisher) and reads the ring to its end, as any sink must for a finite source.
final class OutputCapture: EventSink {
    let capture: CapturedOutput
    private let thread = Mutex<NativeThread?>(nil)
    private let queue = Mutex<OutputQueue?>(nil)

    init(capture: CapturedOutput) { self.capture = capture }

    var name: String { "test-capture" }

    func start(events consumer: RingConsumer, pluginOutput: OutputQueue) throws {
        queue.withLock { $0 = pluginOutput }
        let t = NativeThread(name: "pb-test-capture") { [self] in read(consumer, pluginOutput) }
        thread.withLock { $0 = t }
    }

    /// Called last in the shutdown, after every plugin's shutdown returned: what they published
    /// there is taken too.
    func stop(until deadline: ContinuousClock.Instant) -> String? {
        let joined = thread.withLock { $0 }?.join(timeout: max(.zero, deadline - .now)) ?? true
        if let q = queue.withLock({ $0 }) { for r in q.drain() { capture.record(r) } }
        return joined ? nil : "test-capture (still reading)"
    }

    private func read(_ consumer: RingConsumer, _ output: OutputQueue) {
        let batch = UnsafeMutablePointer<UnsafePointer<pb_event>?>.allocate(capacity: 64)
        defer { batch.deallocate() }
        loop: while true {
            for r in output.drain() { capture.record(r) }
            switch consumer.poll(max: 64, into: batch) {
            case .events: _ = consumer.commit()
            case .lapped: continue
            case .empty: consumer.wait(timeoutNanoseconds: 20_000_000)
            case .finished: break loop
            }
        }
        consumer.deregister()
    }
}

/// A unified diff (`diff -u` style, 3 lines of context) of two line lists, for people.
enum UnifiedDiff {
    enum Op: Equatable { case same(String), removed(String), added(String) }

    /// The edit script from `a` to `b` (longest common subsequence; outputs are small).
    static func ops(_ a: [String], _ b: [String]) -> [Op] {
        let n = a.count, m = b.count
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: n + 1)
        if n > 0 && m > 0 {
            for i in stride(from: n - 1, through: 0, by: -1) {
                for j in stride(from: m - 1, through: 0, by: -1) {
                    lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
                }
            }
        }
        var ops: [Op] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, a[i] == b[j] { ops.append(.same(a[i])); i += 1; j += 1 }
            // Removals first, as diff -u prints a changed run.
            else if i < n, j == m || lcs[i + 1][j] >= lcs[i][j + 1] { ops.append(.removed(a[i])); i += 1 }
            else { ops.append(.added(b[j])); j += 1 }
        }
        return ops
    }

    static func render(expected: [String], actual: [String], expectedName: String, actualName: String,
                       context: Int = 3) -> String {
        let ops = ops(expected, actual)
        var out = "--- \(expectedName)\n+++ \(actualName)\n"
        // Hunks: runs of changes with up to `context` unchanged lines around them.
        let changed = ops.indices.filter { if case .same = ops[$0] { return false } else { return true } }
        var k = 0
        while k < changed.count {
            let start = max(0, changed[k] - context)
            var end = changed[k]
            while k + 1 < changed.count, changed[k + 1] - end <= 2 * context { k += 1; end = changed[k] }
            end = min(ops.count - 1, end + context)
            var aLine = 1, bLine = 1
            for op in ops[..<start] {
                switch op { case .same: aLine += 1; bLine += 1; case .removed: aLine += 1; case .added: bLine += 1 }
            }
            var aCount = 0, bCount = 0, body = ""
            for op in ops[start...end] {
                switch op {
                case .same(let l): body += " \(l)\n"; aCount += 1; bCount += 1
                case .removed(let l): body += "-\(l)\n"; aCount += 1
                case .added(let l): body += "+\(l)\n"; bCount += 1
                }
            }
            out += "@@ -\(aCount == 0 ? aLine - 1 : aLine),\(aCount) +\(bCount == 0 ? bLine - 1 : bLine),\(bCount) @@\n" + body
            k += 1
        }
        return out
    }
}
