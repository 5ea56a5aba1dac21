import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32, coreDumped: Bool)

    /// "exited with status 3", "killed by SIGSEGV (Segmentation fault)".
    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let sig, let core): "killed by \(ExitStatus.signalName(sig)) (\(ExitStatus.signalDescription(sig)))" + (core ? ", core dumped" : "")
        }
    }

    /// A short label for metrics: "SIGSEGV", "exit_3".
    public var label: String {
        switch self {
        case .exited(let code): "exit_\(code)"
        case .signaled(let sig, _): ExitStatus.signalName(sig)
        }
    }

    /// "SIGSEGV" for 11; "signal 99" for a number the C library does not know.
    public static func signalName(_ sig: Int32) -> String {
        guard let p = pbs_signal_name(sig) else { return "signal \(sig)" }
        return "SIG" + String(cString: p)
    }

    /// strsignal's text, e.g. "Segmentation fault".
    public static func signalDescription(_ sig: Int32) -> String {
        guard let p = pbs_signal_description(sig) else { return "signal \(sig)" }
        return String(cString: p)
    }
}

/// A child process started with `posix_spawn`, watched through a pidfd.
///
/// The child inherits exactly the descriptors it is given (as 3, 4, ...) and nothing else; it
/// runs in a process group of its own. The pidfd becomes readable when it exits; `reap()`
/// collects its status without blocking. Signals go through the pidfd, so a recycled pid can
/// never be hit.
public final class ChildProcess: Sendable {
    public let pid: Int32
    /// Readable (POLLIN) once the process exited.
    public let pidfd: FileDescriptor
    public let path: String

    init(pid: Int32, pidfd: FileDescriptor, path: String) {
        self.pid = pid
        self.pidfd = pidfd
        self.path = path
    }

    /// Starts `path` with `arguments` (argv[1...]) and `environment` ("KEY=value"), giving it
    /// `descriptors[i]` as descriptor 3 + i. The corresponding C functions are `posix_spawn` and
    /// `pidfd_open`.
    /// - Throws: `Errno` with call `posix_spawn` (`ENOENT`, `EACCES`, `ENOEXEC`...) and the path,
    ///   or `pidfd_open` (then the child is killed and reaped).
    public static func spawn(_ path: String, arguments: [String], environment: [String],
                             descriptors: [CInt], output: FileDescriptor? = nil,
                             errors: FileDescriptor? = nil) throws(Errno) -> ChildProcess {
        var cStrings: [UnsafeMutablePointer<CChar>?] = []
        defer { for p in cStrings { free(p) } }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        cStrings = argv + envp
        var pid: Int32 = 0
        let r = argv.withUnsafeBufferPointer { a in
            envp.withUnsafeBufferPointer { e in
                descriptors.withUnsafeBufferPointer { d in
                    pbs_spawn(path, a.baseAddress, e.baseAddress, d.baseAddress, CInt(d.count), output?.rawValue ?? -1,
                              errors?.rawValue ?? -1, 1, &pid)
                }
            }
        }
        if r != 0 { throw Errno(code: r, call: "posix_spawn", path: path) }
        return try watching(pid, path: path)
    }

    /// The child `pid`, watched through a pidfd; if none can be opened it is killed and reaped.
    private static func watching(_ pid: Int32, path: String) throws(Errno) -> ChildProcess {
        let raw = pbs_pidfd_open(pid)
        if raw < 0 {
            let e = Errno.current("pidfd_open")
            kill(pid, SIGKILL)
            var code: CInt = 0, sig: CInt = 0
            while pbs_reap(pid, &code, &sig) == 0 { usleep(1000) }
            throw e
        }
        return ChildProcess(pid: pid, pidfd: FileDescriptor(rawValue: raw), path: path)
    }

    /// A child of this process started some other way (a fork server's `CLONE_PARENT` copy),
    /// watched from now on through a pidfd. The pid cannot be recycled before this process reaps it.
    /// - Throws: `Errno` of `pidfd_open` (then the child is killed and reaped).
    public static func adopt(pid: Int32, path: String) throws(Errno) -> ChildProcess {
        // Never another process: a pid that is not this process's child is refused untouched.
        guard pid > 0, pbs_is_child(pid) != 0 else { throw Errno(code: ECHILD, call: "waitid", detail: "pid \(pid) is not a child of this process") }
        return try watching(pid, path: path)
    }

    /// Sends `signal` to exactly this process (`pidfd_send_signal`); a process that already
    /// exited is not an error.
    public func signal(_ signal: Int32) {
        _ = pbs_pidfd_kill(pidfd.rawValue, signal)
    }

    /// The exit status if the process has ended (and reaps it), else nil. The corresponding
    /// C function is `waitid(P_PID, WEXITED | WNOHANG)`.
    public func reap() -> ExitStatus? {
        var code: CInt = 0, sig: CInt = 0
        guard pbs_reap(pid, &code, &sig) == 1 else { return nil }
        return sig == 0 ? .exited(code: code) : .signaled(signal: code, coreDumped: sig == 2)
    }

    /// Waits up to `timeout` for the exit, polling the pidfd; nil when it is still running.
    public func wait(timeout: Duration) -> ExitStatus? {
        let end = ContinuousClock.now + timeout
        while true {
            if let s = reap() { return s }
            let left = end - ContinuousClock.now
            if left <= .zero { return nil }
            var fds = [Poll.readable(pidfd.rawValue)]
            _ = try? Poll.wait(&fds, timeoutMilliseconds: Int32(max(1, min(left.nanoseconds / 1_000_000, 1000))))
        }
    }

    deinit { try? pidfd.close() }
}

/// A connected pair of `AF_UNIX` stream sockets (close-on-exec), for a host and its worker.
/// A pipe for a child's standard output or error.
public enum OutputPipe {
    /// The corresponding C function is `pipe2(O_CLOEXEC)`; the read end is then made non-blocking
    /// (the writer, a child, keeps ordinary blocking writes).
    public static func make() throws(Errno) -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [CInt] = [0, 0]
        guard pbs_output_pipe(&fds) == 0 else { throw Errno.current("pipe2") }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}

public enum SocketPair {
    /// The corresponding C function is `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`:
    /// messages keep their bounds, and descriptors passed with one arrive with it.
    public static func seqpacket() throws(Errno) -> (FileDescriptor, FileDescriptor) {
        var fds: [CInt] = [0, 0]
        if pbs_seqpacket_pair(&fds) != 0 { throw Errno.current("socketpair") }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// The corresponding C function is `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
    public static func stream() throws(Errno) -> (FileDescriptor, FileDescriptor) {
        var fds: [CInt] = [0, 0]
        let r = socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &fds)
        if r != 0 { throw Errno.current("socketpair") }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}

/// What a worker process does to itself before it loads any plugin code.
public enum LockDown {
    /// Makes this process non-dumpable (`PR_SET_DUMPABLE` 0): processes of the same user can no
    /// longer `ptrace` it or read and write its memory through `/proc/PID/mem`, and its `/proc`
    /// files belong to root. The daemon does this when plugin workers run as its own user.
    /// - Returns: false when the kernel refused (errno in `errno`).
    @discardableResult
    public static func makeNonDumpable() -> Bool { pbs_set_dumpable(0) == 0 }

    /// A user to run plugin code as.
    public struct Account: Sendable, Equatable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
        public init(name: String, uid: UInt32, gid: UInt32) {
            self.name = name
            self.uid = uid
            self.gid = gid
        }
    }

    /// Looks `name` up in the user database. The corresponding C function is `getpwnam_r`.
    /// - Returns: nil when there is no such user.
    public static func account(named name: String) throws(Errno) -> Account? {
        var uid: UInt32 = 0, gid: UInt32 = 0
        let r = pbs_lookup_user(name, &uid, &gid)
        if r == ENOENT { return nil }
        if r != 0 { throw Errno(code: r, call: "getpwnam_r", detail: name) }
        return Account(name: name, uid: uid, gid: gid)
    }

    /// Dies with the host (`PR_SET_PDEATHSIG`), drops to `account` when running as root (no
    /// supplementary groups), and sets `no_new_privs`.
    /// - Throws: `Errno` naming the call that failed (`setresuid`...).
    public static func apply(account: Account?) throws(Errno) {
        var step: UnsafePointer<CChar>? = nil
        let r = pbs_lock_down(account?.uid ?? UInt32.max, account?.gid ?? UInt32.max, &step)
        if r != 0 { throw Errno(code: r, call: step.map { String(cString: $0) } ?? "lock down") }
    }

    /// Closes every descriptor from `first` up (`close_range`).
    public static func closeDescriptors(from first: CInt) { pbs_close_from(first) }

    /// Resource limits for plugin code (`setrlimit`).
    public enum Limit: Int32, Sendable {
        case addressSpace = 0, cpuSeconds = 1, openFiles = 2
        public var name: String {
            switch self {
            case .addressSpace: "RLIMIT_AS"
            case .cpuSeconds: "RLIMIT_CPU"
            case .openFiles: "RLIMIT_NOFILE"
            }
        }
    }

    /// The corresponding C function is `setrlimit` (soft and hard limit alike).
    public static func limit(_ limit: Limit, to value: UInt64) throws(Errno) {
        let r = pbs_set_limit(limit.rawValue, value)
        if r != 0 { throw Errno(code: r, call: "setrlimit", detail: "\(limit.name) = \(value)") }
    }
}
