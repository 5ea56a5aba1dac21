import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("FileDescriptor")
struct FileDescriptorTests {
    @Test func openingAMissingFileThrowsENOENTNamingTheCallAndThePath() throws {
        let path = temporaryDirectory() + "/missing"
        let e = thrownErrno { try FileDescriptor.open(path) }
        #expect(e?.code == ENOENT)
        #expect(e?.call == "open")
        #expect(e?.path == path)
        #expect(e?.description == "open(\"\(path)\"): No such file or directory (errno 2)")
    }

    @Test func openIsRetriedOnceAfterEINTRAndThenSucceeds() throws {
        let path = try temporaryFile([1, 2, 3])
        let calls = CallCount()
        let fd = try withSyscalls(Syscalls(open: { p, f, m in
            calls.next() == 1 ? fail(EINTR) : open(p, f, m)
        })) { try FileDescriptor.open(path) }
        #expect(calls.count == 2)
        #expect(try fd.status().size == 3)
        try fd.close()
    }

    @Test(arguments: [EMFILE, EACCES, ENFILE, ENOMEM])
    func openReportsTheInjectedErrnoWithTheCallAndThePath(_ code: CInt) {
        let e = withSyscalls(Syscalls(open: { _, _, _ in fail(code) })) {
            thrownErrno { try FileDescriptor.open("/etc/plugboard/x.so") }
        }
        #expect(e == Errno(code: code, call: "open", path: "/etc/plugboard/x.so"))
        #expect(e?.reason == "\(Errno.text(code)) (errno \(code))")
    }

    @Test func readIsRetriedAfterEINTRAndReportsEAGAINWithThePath() throws {
        let path = try temporaryFile([7, 8, 9])
        let fd = try FileDescriptor.open(path)
        defer { try? fd.close() }
        let calls = CallCount()
        var buffer = [UInt8](repeating: 0, count: 8)
        let n = try withSyscalls(Syscalls(read: { d, b, c in calls.next() == 1 ? fail(EINTR) : read(d, b, c) })) {
            try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
        }
        #expect(calls.count == 2)
        #expect(n == 3 && buffer.prefix(3) == [7, 8, 9])
        let e = withSyscalls(Syscalls(read: { _, _, _ in fail(EAGAIN) })) {
            thrownErrno { try buffer.withUnsafeMutableBytes { try fd.read(into: $0) } }
        }
        #expect(e == Errno(code: EAGAIN, call: "read", path: path))
    }

    @Test func preadReadsAtAnOffsetAndReportsEIO() throws {
        let path = try temporaryFile(Array(0..<100))
        let fd = try FileDescriptor.open(path)
        defer { try? fd.close() }
        #expect(try fd.read(count: 4, atAbsoluteOffset: 10) == [10, 11, 12, 13])
        #expect(try fd.read(count: 8, atAbsoluteOffset: 96) == [96, 97, 98, 99])
        let calls = CallCount()
        let again = try withSyscalls(Syscalls(pread: { d, b, c, o in calls.next() == 1 ? fail(EINTR) : pread(d, b, c, o) })) {
            try fd.read(count: 2, atAbsoluteOffset: 0)
        }
        #expect(again == [0, 1] && calls.count == 2)
        let e = withSyscalls(Syscalls(pread: { _, _, _, _ in fail(EIO) })) {
            thrownErrno { try fd.read(count: 4, atAbsoluteOffset: 0) }
        }
        #expect(e == Errno(code: EIO, call: "pread", path: path))
    }

    @Test func writeAllContinuesAfterShortWritesAndEINTR() throws {
        let path = temporaryDirectory() + "/out"
        let fd = try FileDescriptor.open(path, [.writeOnly, .create])
        let calls = CallCount()
        // One byte per call, and a signal before every other call.
        try withSyscalls(Syscalls(write: { d, b, c in calls.next() % 2 == 1 ? fail(EINTR) : write(d, b, min(c, 1)) })) {
            try ([1, 2, 3, 4] as [UInt8]).withUnsafeBytes { try fd.writeAll($0) }
        }
        try fd.close()
        #expect(calls.count == 8)
        let back = try FileDescriptor.open(path)
        #expect(try back.read(count: 4, atAbsoluteOffset: 0) == [1, 2, 3, 4])
        try back.close()
    }

    @Test func writeReportsENOSPCWithThePath() throws {
        let path = temporaryDirectory() + "/full"
        let fd = try FileDescriptor.open(path, [.writeOnly, .create])
        defer { try? fd.close() }
        let e = withSyscalls(Syscalls(write: { _, _, _ in fail(ENOSPC) })) {
            thrownErrno { try [1].withUnsafeBytes { try fd.writeAll($0) } }
        }
        #expect(e == Errno(code: ENOSPC, call: "write", path: path))
    }

    @Test func fstatFtruncateAndFsyncReportTheirCallNames() throws {
        let path = try temporaryFile([1])
        let fd = try FileDescriptor.open(path, .readWrite)
        defer { try? fd.close() }
        try fd.resize(to: 4096)
        try fd.sync()
        let st = try fd.status()
        #expect(st.size == 4096 && st.isRegularFile && !st.isDirectory)
        let mocks = Syscalls(fstat: { _, _ in fail(EOVERFLOW) }, ftruncate: { _, _ in fail(EFBIG) }, fsync: { _ in fail(EIO) })
        withSyscalls(mocks) {
            #expect(thrownErrno { try fd.status() } == Errno(code: EOVERFLOW, call: "fstat", path: path))
            #expect(thrownErrno { try fd.resize(to: 1) } == Errno(code: EFBIG, call: "ftruncate", path: path))
            #expect(thrownErrno { try fd.sync() } == Errno(code: EIO, call: "fsync", path: path))
        }
    }

    @Test func closeIsNotRetriedAfterEINTRButReportsEIO() throws {
        let path = try temporaryFile([1])
        let fd = try FileDescriptor.open(path)
        let calls = CallCount()
        try withSyscalls(Syscalls(close: { d in _ = calls.next(); _ = close(d); return fail(EINTR) })) { try fd.close() }
        #expect(calls.count == 1)
        let e = withSyscalls(Syscalls(close: { _ in fail(EIO) })) { thrownErrno { try fd.close() } }
        #expect(e == Errno(code: EIO, call: "close", path: path))
    }

    @Test func statOfAMissingPathThrowsENOENTAndOfADirectorySaysSo() throws {
        let dir = temporaryDirectory()
        #expect(try FileStatus.of(path: dir).isDirectory)
        #expect(thrownErrno { try FileStatus.of(path: dir + "/none") } == Errno(code: ENOENT, call: "stat", path: dir + "/none"))
        let e = withSyscalls(Syscalls(stat: { _, _ in fail(EACCES) })) { thrownErrno { try FileStatus.of(path: dir) } }
        #expect(e == Errno(code: EACCES, call: "stat", path: dir))
    }

    @Test func renameUnlinkAndMkdirReportRealAndInjectedErrors() throws {
        let dir = temporaryDirectory()
        #expect(thrownErrno { try FileSystem.rename(dir + "/a", to: dir + "/b") } == Errno(code: ENOENT, call: "rename", path: dir + "/a"))
        #expect(thrownErrno { try FileSystem.unlink(dir + "/a") } == Errno(code: ENOENT, call: "unlink", path: dir + "/a"))
        try FileSystem.makeDirectory(dir + "/sub")
        try FileSystem.makeDirectory(dir + "/sub")  // EEXIST is not an error
        #expect(try FileStatus.of(path: dir + "/sub").isDirectory)
        let e = withSyscalls(Syscalls(mkdir: { _, _ in fail(EACCES) })) { thrownErrno { try FileSystem.makeDirectory(dir + "/x") } }
        #expect(e == Errno(code: EACCES, call: "mkdir", path: dir + "/x"))
    }

    @Test func aDirectoryListsItsNamesSortedAndAMissingOneThrowsENOENT() throws {
        let dir = try FileSystem.makeTemporaryDirectory(prefix: "/tmp/pbsys-list-")
        _ = try temporaryFileIn(dir, "b.so")
        _ = try temporaryFileIn(dir, "a.so")
        #expect(try FileSystem.entries(in: dir) == ["a.so", "b.so"])
        #expect(thrownErrno { try FileSystem.entries(in: dir + "/none") } == Errno(code: ENOENT, call: "opendir", path: dir + "/none"))
        let e = withSyscalls(Syscalls(opendir: { _ in errno = EMFILE; return nil })) { thrownErrno { try FileSystem.entries(in: dir) } }
        #expect(e == Errno(code: EMFILE, call: "opendir", path: dir))
    }

    @Test func aTemporaryDirectoryFailureNamesMkdtempAndTheTemplate() {
        let e = withSyscalls(Syscalls(mkdtemp: { _ in errno = EROFS; return nil })) {
            thrownErrno { try FileSystem.makeTemporaryDirectory(prefix: "/tmp/x-") }
        }
        #expect(e == Errno(code: EROFS, call: "mkdtemp", path: "/tmp/x-XXXXXX"))
    }

    func temporaryFileIn(_ dir: String, _ name: String) throws -> String {
        let path = dir + "/" + name
        let fd = try FileDescriptor.open(path, [.writeOnly, .create])
        try fd.close()
        return path
    }

    @Test func retryOnInterruptRetriesOnlyEINTR() {
        let calls = CallCount()
        let e = thrownErrno {
            try retryOnInterrupt("demo") { () -> CInt in calls.next() < 3 ? fail(EINTR) : fail(EAGAIN) }
        }
        #expect(calls.count == 3)
        #expect(e == Errno(code: EAGAIN, call: "demo"))
        #expect(e?.description == "demo: Resource temporarily unavailable (errno 11)")
    }
}
