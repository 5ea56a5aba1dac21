import PlugboardSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Tells systemd about the daemon's state through `$NOTIFY_SOCKET` (the sd_notify protocol),
/// without linking libsystemd: one AF_UNIX datagram per notification.
///
/// The corresponding C function is `sd_notify(3)`. Inactive (every call a no-op) when the daemon
/// was not started by systemd with `Type=notify`.
public struct SystemdNotifier: Sendable {
    /// The socket address: a path, or an abstract name (written `@name` in the variable).
    public let socketPath: String?
    /// How often systemd expects WATCHDOG=1, from `$WATCHDOG_USEC` (honoured only if
    /// `$WATCHDOG_PID` is unset or names this process).
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        var interval: Duration?
        if let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 {
            let pidOK = environment["WATCHDOG_PID"].flatMap { Int32($0) }.map { $0 == getpid() } ?? true
            if pidOK { interval = .microseconds(Int64(usec)) }
        }
        watchdogInterval = interval
    }

    public var isActive: Bool { socketPath != nil }

    /// How often to send WATCHDOG=1: half the interval systemd enforces, as sd_watchdog_enabled(3) advises.
    public var watchdogPingInterval: Duration? { watchdogInterval.map { $0 / 2 } }

    /// READY=1: plugins are initialised and the source is live.
    public func ready(status: String? = nil) throws(SystemdNotifyError) {
        try send("READY=1" + (status.map { "\nSTATUS=\($0)" } ?? ""))
    }

    /// STOPPING=1: a graceful shutdown has begun.
    public func stopping() throws(SystemdNotifyError) { try send("STOPPING=1") }

    /// WATCHDOG=1: the daemon is alive.
    public func watchdog() throws(SystemdNotifyError) { try send("WATCHDOG=1") }

    /// STATUS=...: a one-line status for `systemctl status`.
    public func status(_ text: String) throws(SystemdNotifyError) { try send("STATUS=\(text)") }

    /// Sends one datagram with `state` (newline-separated assignments). No-op when inactive.
    public func send(_ state: String) throws(SystemdNotifyError) {
        guard let socketPath else { return }
        let fd: FileDescriptor
        do throws(Errno) {
            let raw = try valueOrErrno("socket") { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            fd = FileDescriptor(rawValue: raw, path: socketPath)
        } catch {
            throw SystemdNotifyError(call: "socket", errno: error.code, path: socketPath)
        }
        defer { try? fd.close() }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(socketPath.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            throw SystemdNotifyError(call: "connect", errno: ENAMETOOLONG, path: socketPath)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let payload = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { buf in
                    Result { () throws(Errno) in
                        try retryOnInterrupt("sendto", path: socketPath) {
                            sendto(fd.rawValue, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), sa, length)
                        }
                    }
                }
            }
        }
        switch sent {
        case .failure(let e): throw SystemdNotifyError(call: "sendto", errno: e.code, path: socketPath)
        case .success(let n) where n != payload.count:
            throw SystemdNotifyError(call: "sendto", errno: EMSGSIZE, path: socketPath)
        case .success: return
        }
    }
}

/// A notification could not be sent.
public struct SystemdNotifyError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var path: String
    public var description: String {
        "sd_notify to NOTIFY_SOCKET=\(path) failed in \(call): \(Errno.text(errno)); "
            + "check that systemd (or the test) still listens there"
    }
}
