import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failure of the test support itself (no socket, no port).
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public enum TestProcesses {
    /// A process for a real program that needs no mocked devices (`redis-server`, `redis-cli`,
    /// `plugboard` when it reads no udev), without LD_PRELOAD: under umockdev-wrapper the preload
    /// hangs redis-server at start-up. Its output is discarded unless the caller sets a pipe.
    public static func withoutPreload(_ path: String, _ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = nil
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        return p
    }
}

public enum LoopbackPort {
    /// A port nobody listens on right now: bind port 0 on loopback, read it back, close.
    /// With `clusterBus`, one below 55536 whose +10000 (Redis Cluster's bus port) is free too.
    public static func free(clusterBus: Bool = false) throws -> Int {
        guard clusterBus else { return try bindable(0) }
        for _ in 0..<200 {
            let p = try bindable(0)
            if p < 55536, (try? bindable(p + 10000)) != nil { return p }
        }
        throw TestSupportError("no free port pair for a cluster node")
    }

    /// Binds `port` (0: any) on loopback, closes, and returns the port bound.
    static func bindable(_ port: Int) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Bool in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw TestSupportError("bind/getsockname: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
