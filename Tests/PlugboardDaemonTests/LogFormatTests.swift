import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--log-format` and journald (docs/operations.md, "Logs"): what an operator's log pipeline reads.
@Suite("Log formats: text, journal priorities, JSON lines")
struct LogFormatTests {
    /// Runs `plugboard run` on a tiny synthetic source with its stderr in a file; returns the file's lines.
    func run(_ extra: [String], environment: [String: String] = [:], journalStream: Bool = false) throws -> [String] {
        let dir = TempDir()
        let binary = try #require(productBinary("plugboard"))
        let log = dir.path + "/stderr.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        env.merge(environment) { $1 }
        if journalStream {
            // What systemd sets when stderr is the journal: the stream's device and inode.
            var st = stat()
            fstat(handle.fileDescriptor, &st)
            env["JOURNAL_STREAM"] = "\(st.st_dev):\(st.st_ino)"
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["run", "--source", "synthetic:3", "--plugins", dir.path, "--ignore-manifests", "--registry-cache", "none",
                       "--log-level", "debug"] + extra
        p.environment = env
        p.standardError = handle
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("json: one JSON object per line with time, level, label, source, message and the metadata")
    func json() throws {
        let lines = try run(["--log-format", "json"])
        #expect(lines.count >= 3)
        for line in lines {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], "\(line)")
            #expect(o["time"] != nil && o["level"] != nil && o["label"] == "plugboard" && o["message"] != nil, "\(line)")
        }
        #expect(lines.contains { $0.contains("\"message\":\"host settings: source=synthetic:3") && $0.contains("\"level\":\"notice\"") })
    }

    @Test("journal: each line starts with its syslog priority and carries no timestamp of its own")
    func journal() throws {
        let lines = try run(["--log-format", "journal"])
        #expect(!lines.isEmpty)
        for line in lines { #expect(line.range(of: #"^<[2-7]>[a-z]+ plugboard: "#, options: .regularExpression) != nil, "\(line)") }
        #expect(lines.contains { $0.hasPrefix("<5>notice plugboard: [PlugboardHost] host settings:") })
        #expect(lines.contains { $0.hasPrefix("<7>debug ") })
    }

    @Test("auto: the journal format when stderr is the stream JOURNAL_STREAM names, text otherwise")
    func auto() throws {
        let underSystemd = try run([], journalStream: true)
        #expect(underSystemd.contains { $0.hasPrefix("<5>notice plugboard:") }, "\(underSystemd.prefix(3))")
        // A JOURNAL_STREAM that names another stream (inherited by a child whose stderr was redirected): text.
        let redirected = try run([], environment: ["JOURNAL_STREAM": "1:1"])
        #expect(redirected.contains { $0.range(of: #"^\d{4}-\d\d-\d\dT.* notice plugboard: "#, options: .regularExpression) != nil },
                "\(redirected.prefix(3))")
        let env = try run([], environment: ["PLUGBOARD_LOG_FORMAT": "json"])
        #expect(env.allSatisfy { $0.hasPrefix("{") })
    }
}
