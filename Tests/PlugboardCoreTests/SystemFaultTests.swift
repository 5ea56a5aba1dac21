import Glibc
import Testing
@testable import PlugboardCore
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
        #expect(text?.contains("event_buffer_size") == true)
        #expect(text?.contains("fix: lower performance.event_buffer_size") == true)
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
        #expect(text == "/opt/plugins: plugins.dirs: cannot read plugin directory: Too many open files (errno 24) (fix: create it or correct the path given with --plugins)")
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
}
