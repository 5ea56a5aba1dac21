// plugboard-worker: runs one plugin in a process of its own (docs/architecture.md, "Isolation").
//
// Started by the host with exactly five descriptors: 3 the host's socket, 4 the event ring
// (a sealed memfd this process can only map read-only), 5 its control page, 6 the queue its
// host calls go through (publish, metrics, logs), 7 the eventfd that wakes the host for it. It locks itself
// down (no_new_privs, the configured uid/gid, resource limits, nothing else inherited), then
// loads the plugin and reads the ring through its own cursor, zero-copy, like a worker thread.
// It is not meant to be run by hand.
import CPlugboardSupport
import PlugboardCore
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "--version" {
    print("plugboard-worker \(PlugboardCoreVersion.string)")
    exit(0)
}
// The fork server (`--zygote`, started once by the daemon with its socket as descriptor 3): it
// answers the daemon's requests for workers by cloning itself, so a worker costs a copy of this
// process rather than an exec, dynamic linking and the Swift runtime's start. Only the copies
// return here, to run as any worker does from now on, with their descriptors at 3...7.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "--zygote" {
    Zygote.prepare()
    var name = [CChar](repeating: 0, count: 256)
    var fds = [CInt](repeating: -1, count: 7)
    guard pbs_zygote_serve(3, CommandLine.arguments[0], &name, name.count, &fds, 7) == 0 else { exit(0) }
    if pbs_arrange_descriptors(fds, 5, fds[5], fds[6]) != 0 {
        exit(71)  // EX_OSERR: the host sees a worker that ended before its setup
    }
}
// Only what the host gave (3...7) stays open; posix_spawn already closed the rest, this is
// for a worker started some other way.
LockDown.closeDescriptors(from: 8)
signal(SIGPIPE, SIG_IGN)
let queue: SharedQueue.Producer
do {
    queue = try SharedQueue.Producer(attaching: FileDescriptor(rawValue: 6), wakeup: EventFD(adopting: FileDescriptor(rawValue: 7)))
} catch {
    let text = Array("plugboard-worker: not started by a host (\(error))\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(70)
}
let runner = WorkerRunner(channel: WireChannel(fd: FileDescriptor(rawValue: 3)),
                          ringFD: FileDescriptor(rawValue: 4), controlFD: FileDescriptor(rawValue: 5), queue: queue)
exit(runner.run())
