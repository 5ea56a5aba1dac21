import Foundation
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// An AF_UNIX datagram socket bound by the test: what systemd listens on for sd_notify.
// @unchecked: the socket is used by one thread at a time (the test, or the thread it waits on).
final class DatagramSocket: @unchecked Sendable {
    let fd: Int32
    /// The address as NOTIFY_SOCKET spells it (a path, or "@name" for the abstract namespace).
    let address: String
    private let path: String?

    /// Binds a path socket in `dir`, or an abstract one when `dir` is nil.
    init(dir: String?) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes: [UInt8]
        if let dir {
            path = dir + "/notify.sock"
            address = path!
            bytes = Array(path!.utf8)
        } else {
            path = nil
            let name = "pbtest-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            address = "@" + name
            bytes = [0] + Array(name.utf8)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (path == nil ? 0 : 1))
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard r == 0 else { throw TestFailure("bind \(address): errno \(errno)") }
    }

    /// The next datagram, or nil after `timeout`.
    func receive(timeout: Duration) -> String? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.milliseconds)
        guard poll(&pfd, 1, ms) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    /// Datagrams until one contains `needle` (returned with everything before it), or nil on timeout.
    func receive(until needle: String, timeout: Duration) -> [String]? {
        let end = ContinuousClock.now + timeout
        var seen: [String] = []
        while ContinuousClock.now < end {
            guard let m = receive(timeout: end - ContinuousClock.now) else { break }
            seen.append(m)
            if m.contains(needle) { return seen }
        }
        return nil
    }

    deinit {
        close(fd)
        if let path { unlink(path) }
    }
}
