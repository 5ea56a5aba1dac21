import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("EventFD, Futex, Poll and Inotify")
struct WaitingTests {
    @Test func anEventFDIsReadableOnceSignalledAndDrainsToZero() throws {
        let e = try EventFD()
        defer { try? e.close() }
        #expect(try e.drain() == 0)
        try e.signal()
        try e.signal()
        var fds = [Poll.readable(e.rawValue)]
        #expect(try Poll.wait(&fds, timeoutMilliseconds: 0) == 1)
        #expect(try e.drain() == 2)
        #expect(try Poll.wait(&fds, timeoutMilliseconds: 0) == 0)
    }

    @Test(arguments: [EMFILE, ENFILE, ENOMEM])
    func eventfdReportsTheInjectedErrno(_ code: CInt) {
        let e = withSyscalls(Syscalls(eventfd: { fail(code) })) { thrownErrno { try EventFD() } }
        #expect(e == Errno(code: code, call: "eventfd"))
    }

    @Test func aFutexWaitReturnsAtOnceWhenTheWordChangedAndTimesOutOtherwise() throws {
        let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { word.deallocate() }
        word.pointee = 5
        #expect(Futex.wait(word, expected: 4) == .woken)
        #expect(Futex.wait(word, expected: 5, timeoutNanoseconds: 1_000_000) == .timedOut)
        #expect(try Futex.wake(word) == 0)
    }

    @Test func aFutexWaitReportsASignalAndOtherFailures() {
        let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { word.deallocate() }
        word.pointee = 0
        withSyscalls(Syscalls(futexWait: { _, _, _ in fail(EINTR) })) {
            #expect(Futex.wait(word, expected: 0) == .interrupted)
        }
        withSyscalls(Syscalls(futexWait: { _, _, _ in fail(EFAULT) })) {
            #expect(Futex.wait(word, expected: 0) == .failed(Errno(code: EFAULT, call: "futex(FUTEX_WAIT)")))
        }
        let e = withSyscalls(Syscalls(futexWake: { _, _ in fail(EINVAL) })) { thrownErrno { try Futex.wake(word) } }
        #expect(e == Errno(code: EINVAL, call: "futex(FUTEX_WAKE)"))
    }

    @Test func pollIsRetriedOnceAfterEINTRAndReportsENOMEM() throws {
        let e = try EventFD()
        defer { try? e.close() }
        try e.signal()
        var fds = [Poll.readable(e.rawValue)]
        let calls = CallCount()
        let n = try withSyscalls(Syscalls(poll: { f, c, t in calls.next() == 1 ? fail(EINTR) : poll(f, c, t) })) {
            try Poll.wait(&fds, timeoutMilliseconds: 0)
        }
        #expect(n == 1 && calls.count == 2)
        let err = withSyscalls(Syscalls(poll: { _, _, _ in fail(ENOMEM) })) {
            thrownErrno { try Poll.wait(&fds, timeoutMilliseconds: 0) }
        }
        #expect(err == Errno(code: ENOMEM, call: "poll"))
    }

    @Test func inotifyReportsAFileClosedAfterWritingInAWatchedDirectory() throws {
        let dir = temporaryDirectory()
        let inotify = try Inotify()
        defer { try? inotify.close() }
        let wd = try inotify.addWatch(dir, mask: UInt32(IN_CLOSE_WRITE | IN_MOVED_TO))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        #expect(try inotify.readEvents(into: buffer).isEmpty)
        _ = try temporaryFileIn(dir, "plugin.so")
        var fds = [Poll.readable(inotify.descriptor.rawValue)]
        #expect(try Poll.wait(&fds, timeoutMilliseconds: 2000) == 1)
        let events = try inotify.readEvents(into: buffer)
        #expect(events.contains { $0.watch == wd && $0.name == "plugin.so" && $0.mask & UInt32(IN_CLOSE_WRITE) != 0 })
    }

    @Test func watchingAMissingDirectoryThrowsENOENTWithThePath() throws {
        let inotify = try Inotify()
        defer { try? inotify.close() }
        let path = temporaryDirectory() + "/gone"
        #expect(thrownErrno { try inotify.addWatch(path, mask: UInt32(IN_CLOSE_WRITE)) }
            == Errno(code: ENOENT, call: "inotify_add_watch", path: path))
        let e = withSyscalls(Syscalls(inotifyAddWatch: { _, _, _ in fail(ENOSPC) })) {
            thrownErrno { try inotify.addWatch("/tmp", mask: UInt32(IN_CLOSE_WRITE)) }
        }
        #expect(e == Errno(code: ENOSPC, call: "inotify_add_watch", path: "/tmp"))
    }

    @Test(arguments: [EMFILE, ENFILE, ENOMEM])
    func inotifyInitReportsTheInjectedErrno(_ code: CInt) {
        let e = withSyscalls(Syscalls(inotifyInit: { _ in fail(code) })) { thrownErrno { try Inotify() } }
        #expect(e == Errno(code: code, call: "inotify_init1"))
    }

    func temporaryFileIn(_ dir: String, _ name: String) throws -> String {
        let path = dir + "/" + name
        let fd = try FileDescriptor.open(path, [.writeOnly, .create])
        try [1].withUnsafeBytes { try fd.writeAll($0) }
        try fd.close()
        return path
    }
}
