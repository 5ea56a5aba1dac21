import Foundation
import Synchronization

@testable import PlugboardDaemon
@testable import PlugboardHost

#if canImport(Glibc)
import Glibc
import PlugboardTestSupport
#endif

/// A minimal HTTP/1.1 GET over a real TCP socket (no client library: what a scraper does).
/// Runs on its own thread: the server's handlers need Swift's cooperative pool, which a blocking
/// socket call must not occupy on a 2-core machine.
func httpGet(host: String = "127.0.0.1", port: Int, path: String) async throws -> (status: Int, body: String) {
    try await onThread("test-http") { try httpGetBlocking(host: host, port: port, path: path) }
}

func httpGetBlocking(host: String = "127.0.0.1", port: Int, path: String, headers: [String] = []) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    // Generous: in a full `swift test` other suites' blocking tests can hold the cooperative pool
    // that the in-process server's handlers need.
    var tv = timeval(tv_sec: 120, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { throw TestFailure("connect to \(host):\(port): errno \(errno)") }
    let request = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n"
    _ = request.withCString { send(fd, $0, strlen($0), 0) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let headerEnd = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response from \(path): \(text)") }
    let statusLine = text[..<headerEnd.lowerBound].split(separator: "\r\n").first ?? ""
    let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    var body = String(text[headerEnd.upperBound...])
    if text[..<headerEnd.lowerBound].lowercased().contains("transfer-encoding: chunked") { body = dechunk(body) }
    return (status, body)
}

private func dechunk(_ s: String) -> String {
    var out = ""
    var rest = Substring(s)
    while let lineEnd = rest.range(of: "\r\n") {
        guard let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 else { break }
        let start = lineEnd.upperBound
        let bytes = Array(rest[start...].utf8)
        out += String(decoding: bytes.prefix(size), as: UTF8.self)
        rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
    }
    return out
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a process test's body on its own thread. Process tests poll and wait with wall-clock
/// timeouts; on Swift's cooperative pool they could be starved by other suites' blocking tests
/// (2 cores, so 2 pool threads) and time out without anything being wrong.
func onTestThread(_ body: @escaping @Sendable () throws -> Void) async throws {
    try await onThread("process-test", body)
}

/// A real `plugboard serve` process: started, its output collected, signalled, awaited.
final class DaemonProcess: Sendable {
    let process: Process
    private final class Output: Sendable {
        let text = Mutex<(out: String, err: String)>(("", ""))
    }
    private let output = Output()
    private let outPipe = Pipe(), errPipe = Pipe()

    init(arguments: [String], environment: [String: String] = [:]) throws {
        guard let binary = productBinary("plugboard") else { throw TestFailure("plugboard was not built") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        // These plugins are built by the tests without manifests (manifests are tested in
        // PlugboardManifestTests); the lifecycle under test is the same either way.
        process.arguments = ["serve", "--log-level", "notice", "--set", "plugins.manifests=false"] + arguments
        // No control socket unless a test asks for one (--set control.socket wins over this):
        // daemons of tests running at once would otherwise share the default path.
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "PLUGBOARD_CONTROL_SOCKET": ""]
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = outPipe
        process.standardError = errPipe
        let output = self.output
        outPipe.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            output.text.withLock { $0.out += String(decoding: d, as: UTF8.self) }
        }
        errPipe.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            output.text.withLock { $0.err += String(decoding: d, as: UTF8.self) }
        }
        try process.run()
    }

    var stdout: String { output.text.withLock { $0.out } }
    var stderr: String { output.text.withLock { $0.err } }

    /// The HTTP port, once the daemon printed its listening line (at most `timeout`).
    func port(timeout: Duration = .seconds(60)) throws -> Int {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if let line = stdout.split(separator: "\n").first(where: { $0.contains("listening on http://") }),
               let port = Int(line.split(separator: ":").last ?? "") {
                return port
            }
            if !process.isRunning { throw TestFailure("daemon exited early: \(stderr)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw TestFailure("daemon did not listen within \(timeout): \(stderr)")
    }

    /// Polls `condition` every 20 ms for at most `timeout`.
    func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) throws {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw TestFailure("timed out waiting for \(what); stderr: \(stderr)")
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for the exit (killing it after `timeout` so a broken test cannot hang), returns the status.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) -> Int32 {
        let end = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < end { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        // Let the readability handlers take the last bytes.
        Thread.sleep(forTimeInterval: 0.05)
        outPipe.fileHandleForReading.readabilityHandler = nil
        errPipe.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// The package root (where Package.swift is).
var packageRoot: String { PackagePaths.root }

/// Builds the recorder test plugin under another name (the host refuses duplicate names) with the
/// system C compiler against SDK/include/plugboard.h, into `dir`.
func buildRecorderPlugin(named name: String, into dir: String) throws {
    try compileC(packageRoot + "/Tests/TestPlugins/recorder/recorder.c", output: dir + "/lib\(name).so",
                 defines: ["RECORDER_NAME=\"\(name)\""])
}

/// `cc -shared -fPIC` against the SDK header.
func compileC(_ source: String, output: String, defines: [String] = []) throws {
    let r = try runProcess("/usr/bin/cc", ["-std=gnu11", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                                           "-I", packageRoot + "/SDK/include", "-o", output, source] + defines.map { "-D" + $0 },
                           env: [:])
    guard r.status == 0 else { throw TestFailure("cc failed for \(source): \(r.stderr)") }
}

/// Lines of a recorder output file that record events (not RESYNC or SHUTDOWN).
func recordedSequences(_ path: String) -> [UInt64] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
        guard let first = line.split(separator: " ").first else { return nil }
        return UInt64(first)
    }
}

/// The value of an unlabelled sample in a Prometheus text page.
func metricValue(_ page: String, _ name: String) -> Double? {
    for line in page.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.split(separator: " ")[1])
    }
    return nil
}
