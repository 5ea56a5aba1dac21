import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("UnixDatagram")
struct UnixDatagramTests {
    /// A datagram socket bound at a fresh path, and that path.
    func listener() throws -> (fd: CInt, path: String) {
        let path = temporaryDirectory() + "/notify"
        let fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0)
        try #require(fd >= 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(r == 0)
        return (fd, path)
    }

    @Test func aDatagramArrivesWholeAndSendtoIsRetriedOnceAfterEINTR() throws {
        let (fd, path) = try listener()
        defer { close(fd) }
        let calls = CallCount()
        try withSyscalls(Syscalls(sendto: { f, b, c, fl, a, l in calls.next() == 1 ? fail(EINTR) : sendto(f, b, c, fl, a, l) })) {
            try UnixDatagram.send(Array("READY=1".utf8), to: path)
        }
        #expect(calls.count == 2)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buffer, buffer.count, 0)
        #expect(n == 7 && String(decoding: buffer.prefix(7), as: UTF8.self) == "READY=1")
    }

    @Test func sendingWhereNobodyListensThrowsENOENTWithTheAddress() {
        let path = temporaryDirectory() + "/nobody"
        #expect(thrownErrno { try UnixDatagram.send([1], to: path) } == Errno(code: ENOENT, call: "sendto", path: path))
    }

    @Test func anAddressLongerThanSunPathIsRefusedBeforeAnySocketIsMade() {
        let path = "/" + String(repeating: "x", count: 200)
        let sockets = CallCount()
        let e = withSyscalls(Syscalls(socket: { d, t, p in _ = sockets.next(); return socket(d, t, p) })) {
            thrownErrno { try UnixDatagram.send([1], to: path) }
        }
        #expect(e?.code == ENAMETOOLONG && sockets.count == 0)
    }

    @Test(arguments: [EMFILE, ENFILE, ENOBUFS])
    func socketReportsTheInjectedErrno(_ code: CInt) {
        let e = withSyscalls(Syscalls(socket: { _, _, _ in fail(code) })) { thrownErrno { try UnixDatagram.send([1], to: "@x") } }
        #expect(e == Errno(code: code, call: "socket", path: "@x"))
    }

    @Test func aRefusedOrShortSendIsAnError() throws {
        let (fd, path) = try listener()
        defer { close(fd) }
        let refused = withSyscalls(Syscalls(sendto: { _, _, _, _, _, _ in fail(ECONNREFUSED) })) {
            thrownErrno { try UnixDatagram.send([1, 2], to: path) }
        }
        #expect(refused == Errno(code: ECONNREFUSED, call: "sendto", path: path))
        let short = withSyscalls(Syscalls(sendto: { _, _, _, _, _, _ in 1 })) { thrownErrno { try UnixDatagram.send([1, 2], to: path) } }
        #expect(short == Errno(code: EMSGSIZE, call: "sendto", path: path))
    }
}
