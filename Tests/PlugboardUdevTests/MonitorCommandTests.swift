import Foundation
import PlugboardTestbed
import Testing

/// Runs the real `plugboard` binary as a child of this process: it inherits the umockdev
/// preload and the testbed (UMOCKDEV_DIR), so its monitor socket joins the testbed.
final class ChildProcess {
    let process = Process()
    let stdout = Pipe()
    let stderr = Pipe()
    private var buffer = Data()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: TestPaths.buildDirectory + "/plugboard")
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
    }

    /// The first `n` lines of standard output (waits up to `timeout` seconds).
    func lines(_ n: Int, timeout: Double = 10) throws -> [String] {
        let text = try output(timeout: timeout) { $0.filter { $0 == "\n" }.count >= n }
        return text.split(separator: "\n", omittingEmptySubsequences: false).prefix(n).map(String.init)
    }

    /// Standard output so far, once `done` holds for it (waits up to `timeout` seconds).
    func output(timeout: Double = 10, until done: (String) -> Bool) throws -> String {
        let fd = stdout.fileHandleForReading.fileDescriptor
        let end = Date().addingTimeInterval(timeout)
        while !done(String(decoding: buffer, as: UTF8.self)) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Date() < end else { throw TestbedError("timed out; output so far: \(String(decoding: buffer, as: UTF8.self))") }
            if poll(&p, 1, 100) > 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let r = read(fd, &chunk, chunk.count)
                if r <= 0 { break }
                buffer.append(contentsOf: chunk[0..<r])
            }
        }
        return String(decoding: buffer, as: UTF8.self)
    }

    func terminate() -> Int32 {
        process.terminate()  // SIGTERM: handled gracefully
        process.waitUntilExit()
        return process.terminationStatus
    }
}

extension UdevSourceTests {
    @Test func monitorJSONPrintsColdplugAndLiveEventsWithEveryField() throws {
        let bed = try Testbed()
        let hub = try bed.addRootHub()
        let child = try ChildProcess(["monitor", "--json", "--udev-mode", "udev"])
        defer { _ = child.process.isRunning ? child.terminate() : 0 }
        try waitUntil("the monitor listens") { !bed.listeners.isEmpty }
        var first = try child.lines(1)
        let coldplug = try #require(try JSONSerialization.jsonObject(with: Data(first[0].utf8)) as? [String: Any])
        #expect(coldplug["action"] as? String == "add")
        #expect(coldplug["flags"] as? [String] == ["coldplug"])
        #expect(coldplug["syspath"] as? String == hub)
        let path = try bed.add(flashDrive(), parent: hub)
        first = try child.lines(2)
        let add = try #require(try JSONSerialization.jsonObject(with: Data(first[1].utf8)) as? [String: Any])
        #expect(add["action"] as? String == "add")
        #expect(add["vendor_id"] as? String == "0781")
        #expect(add["product_id"] as? String == "5567")
        #expect(add["bcd_device"] as? String == "0100")
        #expect(add["busnum"] as? Int == 1 && add["devnum"] as? Int == 5)
        #expect(add["speed_kbps"] as? Int == 480_000)
        #expect(add["serial"] as? String == "4C530001230915117213")
        #expect(add["manufacturer"] as? String == "SanDisk" && add["product"] as? String == "Cruzer Blade")
        #expect(add["devnode"] as? String == "/dev/bus/usb/001/005" && add["driver"] as? String == "usb")
        #expect(add["interfaces"] as? [String] == ["080650"] && add["num_interfaces"] as? Int == 1)
        #expect(add["syspath"] as? String == path)
        #expect((add["seqnum"] as? Int ?? 0) > 0)
        #expect(Set(add.keys).isSuperset(of: ["sequence", "timestamp_ns", "flags", "device_class", "device_subclass", "device_protocol"]))
        #expect(child.terminate() == 0, "SIGTERM ends the monitor cleanly")
    }

    @Test func monitorPrintsOneLinePerEventWithTheUdevProperties() throws {
        let bed = try Testbed()
        let hub = try bed.addRootHub()
        let child = try ChildProcess(["monitor", "--properties", "--udev-mode", "udev"])
        defer { _ = child.process.isRunning ? child.terminate() : 0 }
        try waitUntil("the monitor listens") { !bed.listeners.isEmpty }
        _ = try child.lines(1)
        let path = try bed.add(flashDrive(), parent: hub)
        let text = try child.output { $0.contains("ID_SERIAL_SHORT=4C530001230915117213\n") }
        let all = text.split(separator: "\n").map(String.init)
        let line = try #require(all.first { $0.contains(" add ") && $0.hasSuffix(path + " serial=\"4C530001230915117213\"") })
        #expect(line.contains("0781:5567 \"Cruzer Blade\""))
        #expect(all.contains("    ID_SERIAL_SHORT=4C530001230915117213"))
        #expect(all.contains("    ACTION=add"))
    }
}

/// Bad udev options are refused before anything runs, with the option and the fix.
struct UdevOptionValidationTests {
    func run(_ args: [String]) throws -> (status: Int32, stderr: String) {
        let child = try ChildProcess(args)
        child.process.waitUntilExit()
        let err = child.stderr.fileHandleForReading.readDataToEndOfFile()
        return (child.process.terminationStatus, String(decoding: err, as: UTF8.self))
    }

    @Test func aReceiveBufferOutOfRangeIsAUsageErrorNamingTheOptionAndTheRange() throws {
        for cmd in [["monitor"], ["run", "--plugins", "/nonexistent"]] {
            let r = try run(cmd + ["--udev-receive-buffer", "0"])
            #expect(r.status == 64)
            #expect(r.stderr.contains("--udev-receive-buffer must be from 1 to 1024 (MiB); the default is 128"))
        }
    }

    @Test func anUnknownUdevModeIsAUsageErrorListingTheModes() throws {
        let r = try run(["monitor", "--udev-mode", "sometimes"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--udev-mode"))
        #expect(r.stderr.contains("auto") && r.stderr.contains("kernel"))
    }
}
