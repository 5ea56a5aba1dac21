import Dispatch
import PlugboardSystem
import Synchronization

/// Spawns worker processes from one thread that lives as long as the daemon.
///
/// A worker's parent-death signal (`PR_SET_PDEATHSIG`, set by `LockDown`) fires when the
/// *thread* that created it ends, not the process. Spawned from a short-lived thread (the one
/// preparing a pre-warmed spare, a reload's caller), a worker would be killed the moment that
/// thread finished; spawned from here, it dies only with the daemon.
final class Spawner: @unchecked Sendable {
    // @unchecked: `jobs` is guarded by its Mutex; each job's result box is written by the
    // spawner thread before `done` is signalled and read by the caller after.
    static let shared = Spawner()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let wake = DispatchSemaphore(value: 0)

    private init() {
        _ = NativeThread(name: "pb-spawner") { [self] in
            while true {
                wake.wait()
                for job in jobs.withLock({ j in defer { j = [] }; return j }) { job() }
            }
        }
    }

    private final class Outcome: @unchecked Sendable {
        var value: Result<ChildProcess, Errno>?
    }

    /// `ChildProcess.spawn` with these arguments, run on the spawner thread.
    func spawn(_ path: String, arguments: [String], environment: [String], descriptors: [CInt],
               output: FileDescriptor?, errors: FileDescriptor?) throws(Errno) -> ChildProcess {
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        jobs.withLock {
            $0.append {
                do throws(Errno) {
                    outcome.value = .success(try ChildProcess.spawn(path, arguments: arguments, environment: environment,
                                                                    descriptors: descriptors, output: output, errors: errors))
                } catch {
                    outcome.value = .failure(error)
                }
                done.signal()
            }
        }
        wake.signal()
        done.wait()
        return try outcome.value!.get()
    }
}
