import Glibc
import Synchronization
import Testing
@testable import PlugboardCore
import PlugboardReplay
@testable import PlugboardSystem

/// Faults injected at the system layer (debug builds) must reach the core's errors with the call,
/// the errno text and the fix: what an operator reads in the log.
@Suite("System call failures in the core")
struct SystemFaultTests {
    func failure(_ body: () throws -> Void) -> String? {
        do {
            try body()
            Issue.record("expected an error")
        } catch {
            return "\(error)"
        }
        return nil
    }

    @Test func aRingWhoseMemfdCannotBeCreatedNamesTheCallTheErrnoAndTheFix() {
        let text = Syscalls.$mocks.withValue(Syscalls(memfdCreate: { _ in errno = EMFILE; return -1 })) {
            failure { _ = try EventRing(slotCount: 8) }
        }
        #expect(text?.contains("memfd_create: Too many open files (errno 24)") == true)
        // The core names no configuration key (the host adds it: HostSettingsErrorTests).
        #expect(text?.contains("fix: use fewer ring slots, or raise the memory limit") == true)
        #expect(text?.contains("event_buffer_size") == false)
    }

    @Test func aRingWhoseMappingFailsNamesMmap() {
        let mocks = Syscalls(mmap: { _, _, _, _, _, _ in errno = ENOMEM; return MAP_FAILED })
        let text = Syscalls.$mocks.withValue(mocks) { failure { _ = try EventRing(slotCount: 8) } }
        #expect(text?.contains("cannot map the event ring: mmap: Cannot allocate memory (errno 12)") == true)
    }

    @Test func aPluginThatCannotBeOpenedNamesOpenThePathAndTheErrno() {
        let path = "/usr/lib/plugboard/plugins/liblocked.so"
        let mocks = Syscalls(open: { _, _, _ in errno = EACCES; return -1 })
        let text = Syscalls.$mocks.withValue(mocks) { failure { _ = try PluginLoader.open(path) } }
        #expect(text?.contains("cannot read the plugin: open(\"\(path)\"): Permission denied (errno 13)") == true)
        #expect(text?.contains("fix: check the path and its permissions") == true)
    }

    @Test func aPluginDirectoryThatCannotBeListedSaysWhy() {
        let text = Syscalls.$mocks.withValue(Syscalls(opendir: { _ in errno = EMFILE; return nil })) {
            failure { _ = try PluginLoader.discover(in: ["/opt/plugins"]) }
        }
        #expect(text == "/opt/plugins: cannot read plugin directory: Too many open files (errno 24) (fix: create it, or correct the plugin directory's path)")
    }

    @Test func aReplayFileThatCannotBeReadNamesTheCallAndTheErrno() {
        let path = "/var/lib/plugboard/session.jsonl"
        // A pretend descriptor: open, fstat and close never reach the kernel, read fails.
        let mocks = Syscalls(open: { _, _, _ in 9999 }, close: { _ in 0 }, read: { _, _, _ in errno = EIO; return -1 },
                             fstat: { _, _ in 0 })
        let text = Syscalls.$mocks.withValue(mocks) {
            failure { _ = try ReplaySource(path: path, pace: 0) }
        }
        #expect(text?.contains("cannot read the replay file: read: Input/output error (errno 5)") == true)
    }

    @Test(arguments: [(EMFILE, "inotify_init1: Too many open files (errno 24)"), (ENFILE, "inotify_init1: Too many open files in system (errno 23)")])
    func aWatcherWithoutInotifyNamesTheCallAndTheLimitToRaise(code: Int32, expected: String) throws {
        let runtime = try Runtime(options: RuntimeOptions(), logger: TestSupport.logger)
        let text = Syscalls.$mocks.withValue(Syscalls(inotifyInit: { _ in errno = code; return -1 })) {
            failure { _ = try PluginWatcher(runtime: runtime, directories: ["/tmp"], logger: TestSupport.logger) }
        }
        #expect(text == "\(expected) (fix: raise fs.inotify.max_user_instances, or do not watch the plugin directories)")
    }

    @Test func aWatcherThatCannotWatchADirectoryNamesIt() throws {
        let runtime = try Runtime(options: RuntimeOptions(), logger: TestSupport.logger)
        let closed = CallCounter()
        let mocks = Syscalls(close: { fd in closed.add(); return close(fd) },
                             inotifyAddWatch: { _, _, _ in errno = ENOSPC; return -1 })
        let text = Syscalls.$mocks.withValue(mocks) {
            failure { _ = try PluginWatcher(runtime: runtime, directories: ["/srv/plugins"], logger: TestSupport.logger) }
        }
        #expect(text == "/srv/plugins: cannot watch the plugin directory: No space left on device (errno 28) (fix: check the path, or raise fs.inotify.max_user_watches)")
        #expect(closed.count == 1, "the inotify descriptor is closed again")
    }
}

/// Counts calls from `@Sendable` mocks.
final class CallCounter: Sendable {
    private let value = Mutex(0)
    func add() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}
