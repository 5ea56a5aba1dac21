import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// Who is at the other end of a Unix stream socket, as the kernel says (`SO_PEERCRED` and
/// `SO_PEERGROUPS`): credentials taken when the peer connected, which it cannot forge.
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// The peer's supplementary groups (empty when the kernel cannot say: before Linux 4.13).
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Whether the peer is in `gid`, as its primary or a supplementary group.
    public func isMember(of gid: UInt32) -> Bool { self.gid == gid || groups.contains(gid) }
}

/// A listening `AF_UNIX` stream socket at a path (the daemon's control socket).
public final class UnixListener: Sendable {
    public let descriptor: FileDescriptor
    public let path: String
    /// The socket file's device and inode, to remove it only while it is still this one.
    let identity: (dev: UInt64, ino: UInt64)

    /// Binds and listens at `path` with the file mode `mode`.
    ///
    /// A socket file left by a daemon that is gone (nobody accepts on it) is replaced; one that
    /// answers belongs to a running daemon and is left alone (`EADDRINUSE`). Anything else at
    /// the path that is not a socket is never removed (`EEXIST`).
    /// The corresponding C functions are `socket`, `bind`, `chmod`, `listen`.
    /// - Throws: `Errno` naming the call and the path.
    public init(path: String, mode: mode_t, backlog: Int32 = 16) throws(Errno) {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw Errno(code: EEXIST, call: "bind", path: path, detail: "a file that is not a socket is in the way")
            }
            if let probe = try? UnixStream.connect(path) {
                try? probe.close()
                throw Errno(code: EADDRINUSE, call: "bind", path: path, detail: "another process answers on this socket")
            }
            _ = unlink(path)
        }
        var addr = try Self.address(path, call: "bind")
        let raw = try valueOrErrno("socket", path: path) {
            system_socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        let fd = FileDescriptor(rawValue: raw, path: path)
        do throws(Errno) {
            // Created without any permission, then opened to `mode`: never reachable more widely.
            let old = umask(0o777)
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            let bindErrno = errno
            umask(old)
            guard bound == 0 else { throw Errno(code: bindErrno, call: "bind", path: path) }
            guard chmod(path, mode) == 0 else { throw Errno.current("chmod", path: path) }
            guard listen(raw, backlog) == 0 else { throw Errno.current("listen", path: path) }
            guard lstat(path, &st) == 0 else { throw Errno.current("stat", path: path) }
        } catch {
            try? fd.close()
            throw error
        }
        descriptor = fd
        self.path = path
        identity = (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Gives the socket file to `uid`:`gid` (the caller must be allowed to).
    /// The corresponding C function is `chown`.
    public func setOwner(uid: UInt32?, gid: UInt32?) throws(Errno) {
        guard chown(path, uid ?? UInt32.max, gid ?? UInt32.max) == 0 else { throw Errno.current("chown", path: path) }
    }

    /// Waits for a connection (or `timeoutMilliseconds`; -1 without limit). Returns the
    /// connection and its peer's credentials, or nil on timeout.
    /// The corresponding C functions are `poll`, `accept4`, `getsockopt`.
    /// - Parameter wake: when it becomes readable the wait ends early with nil (a stop request);
    ///   it is left for the caller to read.
    public func accept(timeoutMilliseconds: Int32, wake: EventFD? = nil) throws(Errno) -> (UnixStream, PeerCredentials)? {
        var fds = [Poll.readable(descriptor.rawValue), Poll.readable(wake?.rawValue ?? -1)]
        if try Poll.wait(&fds, timeoutMilliseconds: timeoutMilliseconds) == 0 || fds[0].revents == 0 { return nil }
        let raw = pbs_accept_cloexec(descriptor.rawValue)
        guard raw >= 0 else {
            if errno == EAGAIN || errno == EINTR || errno == ECONNABORTED { return nil }
            throw Errno.current("accept4", path: path)
        }
        let stream = UnixStream(descriptor: FileDescriptor(rawValue: raw, path: path))
        do throws(Errno) {
            return (stream, try stream.peer())
        } catch {
            try? stream.close()
            throw error
        }
    }

    /// Closes the socket and removes its file, unless another one has replaced it since.
    public func close() {
        try? descriptor.close()
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == identity.dev, UInt64(st.st_ino) == identity.ino { _ = unlink(path) }
    }

    static func address(_ path: String, call: String) throws(Errno) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw Errno(code: ENAMETOOLONG, call: call, path: path, detail: "a socket path has at most 107 bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        return addr
    }
}

/// One connected `AF_UNIX` stream: a line-oriented request/response channel with a size limit
/// and timeouts (a peer that sends half a line or reads nothing holds it no longer).
public final class UnixStream: Sendable {
    public let descriptor: FileDescriptor

    public init(descriptor: FileDescriptor) { self.descriptor = descriptor }

    /// Connects to the socket at `path`.
    /// The corresponding C functions are `socket`, `connect`.
    /// - Throws: `Errno` (`ENOENT`: no socket there; `ECONNREFUSED`: nobody listens; `EACCES`:
    ///   the socket file's permissions refuse this user).
    public static func connect(_ path: String) throws(Errno) -> UnixStream {
        var addr = try UnixListener.address(path, call: "connect")
        let raw = try valueOrErrno("socket", path: path) {
            system_socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        let fd = FileDescriptor(rawValue: raw, path: path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 {
            let e = Errno.current("connect", path: path)
            try? fd.close()
            throw e
        }
        return UnixStream(descriptor: fd)
    }

    /// The peer's credentials. The corresponding C function is `getsockopt`.
    public func peer() throws(Errno) -> PeerCredentials {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        guard pbs_peer_credentials(descriptor.rawValue, &pid, &uid, &gid) == 0 else {
            throw Errno.current("getsockopt(SO_PEERCRED)", path: descriptor.path)
        }
        var groups = [gid_t](repeating: 0, count: 256)
        var size = socklen_t(groups.count * MemoryLayout<gid_t>.size)
        let SO_PEERGROUPS: CInt = 59
        let ok = groups.withUnsafeMutableBytes { getsockopt(descriptor.rawValue, SOL_SOCKET, SO_PEERGROUPS, $0.baseAddress, &size) } == 0
        let list = ok ? Array(groups.prefix(Int(size) / MemoryLayout<gid_t>.size)) : []
        return PeerCredentials(pid: pid, uid: uid, gid: gid, groups: list)
    }

    /// Sets how long one read or write may block (`SO_RCVTIMEO`, `SO_SNDTIMEO`).
    public func setTimeouts(_ timeout: Duration) {
        let ns = max(1_000_000, timeout.nanoseconds)
        var tv = timeval(tv_sec: Int(ns / 1_000_000_000), tv_usec: Int(ns % 1_000_000_000 / 1000))
        _ = setsockopt(descriptor.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(descriptor.rawValue, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads up to and without the first newline, within `within` in all (a peer sending a byte
    /// at a time gets no longer than one sending nothing). nil when the peer closed before one,
    /// sent more than `limit` bytes without one, or the time ran out.
    public func readLine(limit: Int, within: Duration) -> [UInt8]? {
        let clock = ContinuousClock()
        let end = clock.now + within
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while line.count <= limit {
            let left = end - clock.now
            guard left > .zero else { return nil }
            setTimeouts(left)
            // Peek, then take exactly up to the newline: what follows stays for the next read.
            let n = chunk.withUnsafeMutableBytes { recv(descriptor.rawValue, $0.baseAddress, $0.count, CInt(MSG_PEEK)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            if let i = chunk[0..<n].firstIndex(of: 10) {
                let take = i + 1
                _ = chunk.withUnsafeMutableBytes { recv(descriptor.rawValue, $0.baseAddress, take, 0) }
                line += chunk[0..<i]
                return line.count <= limit ? line : nil
            }
            let got = chunk.withUnsafeMutableBytes { recv(descriptor.rawValue, $0.baseAddress, n, 0) }
            guard got > 0 else { return nil }
            line += chunk[0..<got]
        }
        return nil
    }

    /// Reads everything until the peer closes (at most `limit` bytes; nil past it or on a timeout).
    public func readToEnd(limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(descriptor.rawValue, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { return out }
            out += chunk[0..<n]
            if out.count > limit { return nil }
        }
    }

    /// Writes all of `bytes` (never a SIGPIPE: `MSG_NOSIGNAL`).
    public func write(_ bytes: [UInt8]) throws(Errno) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(descriptor.rawValue, $0.baseAddress! + sent, $0.count - sent, CInt(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno.current("send", path: descriptor.path)
            }
            sent += n
        }
    }

    /// Ends the writing direction (the peer reads an end of file) and keeps reading possible.
    public func finishWriting() { _ = shutdown(descriptor.rawValue, CInt(SHUT_WR)) }

    public func close() throws(Errno) { try descriptor.close() }
}
