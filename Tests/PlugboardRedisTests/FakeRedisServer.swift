import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A tiny RESP server for reply shapes a real redis-server never sends to these commands (an
/// integer or an array answering XADD, a malformed reply). Used ONLY for those cases: everything
/// else runs against real redis-server. Serves one connection at a time on a loopback port.
final class FakeRedisServer: Sendable {
    /// What to answer: raw RESP bytes for command `args`, the `index`-th command overall.
    typealias Responder = @Sendable (_ args: [String], _ index: Int) -> [UInt8]

    let port: Int
    private let listener: Int32
    private let responder: Responder
    let received = Mutex<[[String]]>([])
    let connections = Atomic<Int>(0)

    init(responder: @escaping Responder) throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = listener
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw TestFailure("fake server bind/listen: errno \(errno)") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        self.responder = responder
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 { return }
            connections.add(1, ordering: .relaxed)
            serve(c)
            close(c)
        }
    }

    private func serve(_ c: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(c, &chunk, chunk.count)
            if n <= 0 { return }
            buffer += chunk[0..<n]
            while let (args, used) = FakeRedisServer.parse(buffer) {
                buffer.removeFirst(used)
                let index = received.withLock { r in r.append(args); return r.count - 1 }
                let reply = responder(args, index)
                if reply.isEmpty { return }  // empty: hang up
                _ = reply.withUnsafeBytes { write(c, $0.baseAddress, reply.count) }
            }
        }
    }

    /// One RESP array of bulk strings from the front of `b`, and how many bytes it took.
    static func parse(_ b: [UInt8]) -> ([String], Int)? {
        var i = 0
        func line() -> String? {
            var j = i
            while j + 1 < b.count {
                if b[j] == 13 && b[j + 1] == 10 {
                    let s = String(decoding: b[i..<j], as: UTF8.self)
                    i = j + 2
                    return s
                }
                j += 1
            }
            return nil
        }
        guard let head = line(), head.hasPrefix("*"), let n = Int(head.dropFirst()) else { return nil }
        var args: [String] = []
        for _ in 0..<n {
            guard let l = line(), l.hasPrefix("$"), let len = Int(l.dropFirst()), i + len + 2 <= b.count else { return nil }
            args.append(String(decoding: b[i..<(i + len)], as: UTF8.self))
            i += len + 2
        }
        return (args, i)
    }

    /// Plausible answers for the connection set-up commands (PING, XINFO on a missing key, CLUSTER
    /// NODES on a server without cluster support).
    static func setupReply(_ args: [String]) -> [UInt8]? {
        switch args.first?.uppercased() {
        case "PING": return Array("+PONG\r\n".utf8)
        case "XINFO": return Array("-ERR no such key\r\n".utf8)
        case "CLUSTER": return Array("-ERR This instance has cluster support disabled\r\n".utf8)
        default: return nil
        }
    }
}
