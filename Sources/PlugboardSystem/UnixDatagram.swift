#if canImport(Glibc)
import Glibc
#endif

/// One-shot AF_UNIX datagrams: what the sd_notify protocol needs, without libsystemd.
public enum UnixDatagram {
    /// Sends `payload` as one datagram to the socket at `address`: a path, or an abstract name
    /// written `@name`. Opens and closes its own socket.
    /// The corresponding C functions are `socket` and `sendto`.
    /// - Throws: `Errno` with call `socket` or `sendto` and the address (`ENOENT`, `ECONNREFUSED`:
    ///   nobody listens there; `ENAMETOOLONG`: the address does not fit `sun_path`; `EMSGSIZE`: the
    ///   datagram went out short).
    public static func send(_ payload: [UInt8], to address: String) throws(Errno) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(address.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw Errno(code: ENAMETOOLONG, call: "sendto", path: address)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        // An abstract name is exactly its bytes; a path also counts its terminating NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let raw = try valueOrErrno("socket", path: address) {
            system_socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        let fd = FileDescriptor(rawValue: raw, path: address)
        try fd.closeAfter { () throws(Errno) in
            let sent = try withUnsafePointer(to: &addr) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    payload.withUnsafeBytes { buf in
                        Result { () throws(Errno) in
                            try retryOnInterrupt("sendto", path: address) {
                                system_sendto(raw, buf.baseAddress, buf.count, CInt(MSG_NOSIGNAL), sa, length)
                            }
                        }
                    }
                }
            }.get()
            guard sent == payload.count else { throw Errno(code: EMSGSIZE, call: "sendto", path: address) }
        }
    }
}
