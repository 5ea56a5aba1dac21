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
        do throws(Errno) {
            try UnixDatagram.send(Array(state.utf8), to: socketPath)
        } catch {
            throw SystemdNotifyError(call: error.call, errno: error.code, path: socketPath)
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
