import CPlugboardSupport
import Logging
import PlugboardSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts worker processes by asking a fork server (`plugboard-worker --zygote`) to clone itself.
///
/// A spawned worker pays `exec`, dynamic linking and the Swift runtime's start (about 3 ms here)
/// before it can `dlopen` its plugin; a copy of a worker that already did all that costs a
/// `clone` of a small process. The zygote is started once per worker executable, on the first
/// request, by the spawner thread (so it dies with the daemon, `Spawner`), and clones with
/// `CLONE_PARENT`: each worker is the daemon's own child, so its pidfd, exit status, parent-death
/// signal and process group are exactly a spawned worker's. The zygote never runs plugin code;
/// it holds no descriptor but its socket between requests (docs/architecture.md, "Starting a
/// worker process"; docs/security.md).
///
/// A zygote found gone at a request is replaced at once; one that ends or hangs (2 s) while
/// handling a request fails that start (a copy of it may hold the request's descriptors;
/// `lostRequest`: the caller starts again with new ones) and is replaced at the next. When no
/// zygote can be started, workers are spawned as without one.
public final class ForkServer: Sendable {
    private struct State {
        var socket: FileDescriptor?
        var process: ChildProcess?
        /// Why the last zygote failed (for `status`), nil while none did.
        var lastFailure: String?
        var started = 0
        /// The executable is not a fork server (it did not greet): spawn from now on.
        var unsupported = false
    }

    public let executable: String
    private let state = Mutex(State())

    private static let servers = Mutex<[String: ForkServer]>([:])

    /// The fork server for `executable` (one per executable, for the daemon's life).
    public static func shared(for executable: String) -> ForkServer {
        servers.withLock { s in
            if let f = s[executable] { return f }
            let f = ForkServer(executable: executable)
            s[executable] = f
            return f
        }
    }

    init(executable: String) { self.executable = executable }

    private static let lostRequestCall = "the fork server (plugboard-worker --zygote)"

    /// The fork server ended or hung after taking the request: this start failed, and a
    /// half-made copy may hold its descriptors. Starting again with new descriptors is safe.
    public static func lostRequest(_ error: Errno) -> Bool { error.call == lostRequestCall }

    /// The zygote's pid while one runs.
    public var pid: Int32? { state.withLock { $0.process?.pid } }

    /// How many zygotes were started (1 unless one failed), and why the last one failed.
    public var status: (started: Int, lastFailure: String?) { state.withLock { ($0.started, $0.lastFailure) } }

    /// A worker process for the plugin `name`, with `descriptors[i]` as its descriptor 3 + i and
    /// `output` / `errors` as its standard output and error.
    /// - Throws: `Errno` of `clone` (from the zygote) or of `posix_spawn` (the fallback).
    public func spawn(name: String, descriptors: [CInt], output: FileDescriptor, errors: FileDescriptor,
                      environment: [String], logger: Logger) throws(Errno) -> ChildProcess {
        let fds = descriptors + [output.rawValue, errors.rawValue]
        // One request at a time: the zygote answers in order, and the clone itself is the
        // short part (the copy then loads and initialises on its own).
        let attempt: Result<ChildProcess, Errno>? = state.withLock { s in
            for _ in 0..<2 {
                if s.unsupported { return nil }
                if s.socket == nil { start(&s, environment: environment, logger: logger) }
                guard let socket = s.socket else { return nil }
                var pid: Int32 = 0
                let r = fds.withUnsafeBufferPointer { pbs_zygote_request(socket.rawValue, name, $0.baseAddress, CInt($0.count), &pid) }
                switch r {
                case 0:
                    do throws(Errno) { return .success(try ChildProcess.adopt(pid: pid, path: executable)) } catch { return .failure(error) }
                case EPIPE, ECONNRESET, ECONNREFUSED:
                    // Gone before this request (killed, or it failed to start): nothing was
                    // started with these descriptors; a new zygote takes the request.
                    stop(&s, reason: "had ended before a request", logger: logger)
                case ECONNABORTED, ETIMEDOUT:
                    // It took the request and then ended or hung: a copy may hold these
                    // descriptors, so they must not go to another process. This start fails;
                    // the next one starts a new zygote.
                    stop(&s, reason: r == ETIMEDOUT ? "did not answer within 2 s" : "ended while starting a worker", logger: logger)
                    return .failure(Errno(code: r, call: Self.lostRequestCall, path: executable))
                default:
                    return .failure(Errno(code: r, call: "clone", path: executable))
                }
            }
            return nil
        }
        if let attempt { return try attempt.get() }
        // No zygote could be started: spawn this worker directly.
        return try Spawner.shared.spawn(executable, arguments: [name], environment: environment,
                                        descriptors: descriptors, output: output, errors: errors)
    }

    private func start(_ s: inout State, environment: [String], logger: Logger) {
        do throws(Errno) {
            let pair = try SocketPair.seqpacket()
            // The zygote's end is closed here exactly once, right after the spawn (or its
            // failure): closed twice, the second close would take whatever descriptor another
            // thread opened under that number meanwhile (the HTTP listener, seen in a test).
            var theirsOpen = true, oursKept = false
            defer {
                if theirsOpen { try? pair.1.close() }
                if !oursKept { try? pair.0.close() }
            }
            // Room for the workers' process titles ("…/plugboard-worker NAME", as `ps` and
            // `pgrep -f` show a spawned one): the first environment string, overwritten by each copy.
            let room = "PLUGBOARD_TITLE_ROOM=" + String(repeating: " ", count: 200)
            // Its standard output and error are /dev/null: it writes nothing, and it must not
            // hold the daemon's (a pipe a supervisor reads to its end) open after the daemon exits.
            let null = try FileDescriptor.open("/dev/null", .writeOnly)
            defer { try? null.close() }
            let process = try Spawner.shared.spawn(executable, arguments: ["--zygote"], environment: [room] + environment,
                                                   descriptors: [pair.1.rawValue], output: null, errors: null)
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(pair.0.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            s.socket = pair.0
            oursKept = true
            s.process = process
            s.started += 1
            theirsOpen = false
            try? pair.1.close()
            let greeting = pbs_zygote_greeting(pair.0.rawValue)
            if greeting != 0 {
                // Not a fork server (another program as plugins.worker_executable, an older
                // plugboard-worker) or a broken one: its workers are spawned, as without one.
                s.unsupported = greeting == EPROTO || greeting == ETIMEDOUT
                stop(&s, reason: greeting == EPROTO ? "is not a fork server (no greeting)" : "did not greet: \(Errno(code: greeting, call: "recv"))",
                     logger: logger)
            } else {
                logger.info("fork server started: worker processes are copies of it", metadata: ["pid": "\(process.pid)", "executable": "\(executable)"])
            }
        } catch {
            s.lastFailure = "could not start \(executable) --zygote: \(error)"
            logger.warning("\(s.lastFailure!); this worker is spawned instead")
        }
    }

    private func stop(_ s: inout State, reason: String, logger: Logger) {
        s.lastFailure = "the zygote (pid \(s.process?.pid ?? 0)) \(reason)"
        let next = s.unsupported ? "workers are spawned from now on (plugins.fork_server = false skips this check)"
                                 : "a new one starts with the next worker"
        logger.warning("fork server \(executable) --zygote (pid \(s.process?.pid ?? 0)) \(reason); \(next)")
        try? s.socket?.close()
        s.socket = nil
        if let p = s.process {
            p.signal(SIGKILL)
            _ = p.wait(timeout: .seconds(1))
        }
        s.process = nil
    }
}
