import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

// Every wrapper in this module reaches C through one of the `system_*` functions below (learn
// from swift-system's Internals/Syscalls.swift). In debug builds (`ENABLE_MOCKING`, set in
// Package.swift) each first asks the task-local `Syscalls.mocks` table for a replacement, so a
// test can make one call fail with the errno it chooses:
//
//     try Syscalls.$mocks.withValue(Syscalls(open: { _, _, _ in errno = EMFILE; return -1 })) { ... }
//
// The table is task-local (Swift Testing runs tests in parallel, each in its own task), internal
// (tests reach it with `@testable import`), and compiled out of release builds, where each
// function is a direct call to C.

/// Replacements for the C functions the system layer calls; nil means the real one.
struct Syscalls: Sendable {
    var open: (@Sendable (UnsafePointer<CChar>, CInt, mode_t) -> CInt)? = nil
    var close: (@Sendable (CInt) -> CInt)? = nil
    var read: (@Sendable (CInt, UnsafeMutableRawPointer?, Int) -> Int)? = nil
    var pread: (@Sendable (CInt, UnsafeMutableRawPointer?, Int, off_t) -> Int)? = nil
    var write: (@Sendable (CInt, UnsafeRawPointer?, Int) -> Int)? = nil
    var fstat: (@Sendable (CInt, UnsafeMutablePointer<Glibc.stat>) -> CInt)? = nil
    var stat: (@Sendable (UnsafePointer<CChar>, UnsafeMutablePointer<Glibc.stat>) -> CInt)? = nil
    var ftruncate: (@Sendable (CInt, off_t) -> CInt)? = nil
    var fsync: (@Sendable (CInt) -> CInt)? = nil
    var rename: (@Sendable (UnsafePointer<CChar>, UnsafePointer<CChar>) -> CInt)? = nil
    var unlink: (@Sendable (UnsafePointer<CChar>) -> CInt)? = nil
    var mkdir: (@Sendable (UnsafePointer<CChar>, mode_t) -> CInt)? = nil
    var mmap: (@Sendable (UnsafeMutableRawPointer?, Int, CInt, CInt, CInt, off_t) -> UnsafeMutableRawPointer?)? = nil
    var munmap: (@Sendable (UnsafeMutableRawPointer?, Int) -> CInt)? = nil
    var memfdCreate: (@Sendable (UnsafePointer<CChar>) -> CInt)? = nil
    var addSeals: (@Sendable (CInt, CInt) -> CInt)? = nil
    var eventfd: (@Sendable () -> CInt)? = nil
    var futexWait: (@Sendable (UnsafeMutablePointer<UInt32>, UInt32, UInt64) -> CInt)? = nil
    var futexWake: (@Sendable (UnsafeMutablePointer<UInt32>, CInt) -> CInt)? = nil
    var inotifyInit: (@Sendable (CInt) -> CInt)? = nil
    var inotifyAddWatch: (@Sendable (CInt, UnsafePointer<CChar>, UInt32) -> CInt)? = nil
    var poll: (@Sendable (UnsafeMutablePointer<pollfd>?, nfds_t, CInt) -> CInt)? = nil
    var socket: (@Sendable (CInt, CInt, CInt) -> CInt)? = nil
    var sendto: (@Sendable (CInt, UnsafeRawPointer?, Int, CInt, UnsafePointer<sockaddr>?, socklen_t) -> Int)? = nil
    var opendir: (@Sendable (UnsafePointer<CChar>) -> OpaquePointer?)? = nil
    var mkdtemp: (@Sendable (UnsafeMutablePointer<CChar>) -> UnsafeMutablePointer<CChar>?)? = nil
    var dlopen: (@Sendable (UnsafePointer<CChar>?, CInt) -> UnsafeMutableRawPointer?)? = nil
    var dlsym: (@Sendable (UnsafeMutableRawPointer, UnsafePointer<CChar>) -> UnsafeMutableRawPointer?)? = nil
    var dlclose: (@Sendable (UnsafeMutableRawPointer) -> CInt)? = nil
    var dlerror: (@Sendable () -> String?)? = nil

    /// The replacements in force for the current task (nil: none, every call is real).
    @TaskLocal static var mocks: Syscalls? = nil
}

func system_open(_ path: UnsafePointer<CChar>, _ flags: CInt, _ mode: mode_t) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.open { return mock(path, flags, mode) }
    #endif
    return open(path, flags, mode)
}

func system_close(_ fd: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.close { return mock(fd) }
    #endif
    return close(fd)
}

func system_read(_ fd: CInt, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.read { return mock(fd, buffer, count) }
    #endif
    return read(fd, buffer, count)
}

func system_pread(_ fd: CInt, _ buffer: UnsafeMutableRawPointer?, _ count: Int, _ offset: off_t) -> Int {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.pread { return mock(fd, buffer, count, offset) }
    #endif
    return pread(fd, buffer, count, offset)
}

func system_write(_ fd: CInt, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.write { return mock(fd, buffer, count) }
    #endif
    return write(fd, buffer, count)
}

func system_fstat(_ fd: CInt, _ st: UnsafeMutablePointer<stat>) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.fstat { return mock(fd, st) }
    #endif
    return fstat(fd, st)
}

func system_stat(_ path: UnsafePointer<CChar>, _ st: UnsafeMutablePointer<stat>) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.stat { return mock(path, st) }
    #endif
    return stat(path, st)
}

func system_ftruncate(_ fd: CInt, _ length: off_t) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.ftruncate { return mock(fd, length) }
    #endif
    return ftruncate(fd, length)
}

func system_fsync(_ fd: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.fsync { return mock(fd) }
    #endif
    return fsync(fd)
}

func system_rename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.rename { return mock(from, to) }
    #endif
    return rename(from, to)
}

func system_unlink(_ path: UnsafePointer<CChar>) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.unlink { return mock(path) }
    #endif
    return unlink(path)
}

func system_mkdir(_ path: UnsafePointer<CChar>, _ mode: mode_t) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.mkdir { return mock(path, mode) }
    #endif
    return mkdir(path, mode)
}

func system_mmap(_ address: UnsafeMutableRawPointer?, _ length: Int, _ protection: CInt, _ flags: CInt,
                 _ fd: CInt, _ offset: off_t) -> UnsafeMutableRawPointer? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.mmap { return mock(address, length, protection, flags, fd, offset) }
    #endif
    return mmap(address, length, protection, flags, fd, offset)
}

func system_munmap(_ address: UnsafeMutableRawPointer?, _ length: Int) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.munmap { return mock(address, length) }
    #endif
    return munmap(address, length)
}

func system_memfd_create(_ name: UnsafePointer<CChar>) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.memfdCreate { return mock(name) }
    #endif
    return pbs_memfd_create(name)
}

func system_add_seals(_ fd: CInt, _ seals: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.addSeals { return mock(fd, seals) }
    #endif
    return pbs_add_seals(fd, seals)
}

func system_eventfd() -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.eventfd { return mock() }
    #endif
    return pbs_eventfd()
}

// The futex pair is on the ring's wakeup path. In release builds these are direct calls (and
// inlined into `Futex`); in debug builds the mock lookup runs only when a consumer actually
// sleeps or a producer wakes a sleeper, never per event.
@usableFromInline
func system_futex_wait(_ word: UnsafeMutablePointer<UInt32>, _ expected: UInt32, _ timeout: UInt64) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.futexWait { return mock(word, expected, timeout) }
    #endif
    return pbs_futex_wait(word, expected, timeout)
}

/// A wait as a waiter with `bits` (FUTEX_WAIT_BITSET); the `futexWait` mock stands in for it too.
@usableFromInline
func system_futex_wait_bits(_ word: UnsafeMutablePointer<UInt32>, _ expected: UInt32, _ timeout: UInt64, _ bits: UInt32) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.futexWait { return mock(word, expected, timeout) }
    #endif
    return pbs_futex_wait_bits(word, expected, timeout, bits)
}

@usableFromInline
func system_futex_wake_bits(_ word: UnsafeMutablePointer<UInt32>, _ count: CInt, _ bits: UInt32) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.futexWake { return mock(word, count) }
    #endif
    return pbs_futex_wake_bits(word, count, bits)
}

@usableFromInline
func system_futex_wake(_ word: UnsafeMutablePointer<UInt32>, _ count: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.futexWake { return mock(word, count) }
    #endif
    return pbs_futex_wake(word, count)
}

func system_inotify_init1(_ flags: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.inotifyInit { return mock(flags) }
    #endif
    return inotify_init1(flags)
}

func system_inotify_add_watch(_ fd: CInt, _ path: UnsafePointer<CChar>, _ mask: UInt32) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.inotifyAddWatch { return mock(fd, path, mask) }
    #endif
    return inotify_add_watch(fd, path, mask)
}

func system_poll(_ fds: UnsafeMutablePointer<pollfd>?, _ count: nfds_t, _ timeout: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.poll { return mock(fds, count, timeout) }
    #endif
    return poll(fds, count, timeout)
}

func system_socket(_ domain: CInt, _ type: CInt, _ proto: CInt) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.socket { return mock(domain, type, proto) }
    #endif
    return socket(domain, type, proto)
}

func system_sendto(_ fd: CInt, _ buffer: UnsafeRawPointer?, _ count: Int, _ flags: CInt,
                   _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.sendto { return mock(fd, buffer, count, flags, address, length) }
    #endif
    return sendto(fd, buffer, count, flags, address, length)
}

func system_opendir(_ path: UnsafePointer<CChar>) -> OpaquePointer? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.opendir { return mock(path) }
    #endif
    return opendir(path)
}

func system_mkdtemp(_ template: UnsafeMutablePointer<CChar>) -> UnsafeMutablePointer<CChar>? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.mkdtemp { return mock(template) }
    #endif
    return mkdtemp(template)
}

func system_dlopen(_ path: UnsafePointer<CChar>?, _ flags: CInt) -> UnsafeMutableRawPointer? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.dlopen { return mock(path, flags) }
    #endif
    return dlopen(path, flags)
}

func system_dlsym(_ handle: UnsafeMutableRawPointer, _ symbol: UnsafePointer<CChar>) -> UnsafeMutableRawPointer? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.dlsym { return mock(handle, symbol) }
    #endif
    return dlsym(handle, symbol)
}

func system_dlclose(_ handle: UnsafeMutableRawPointer) -> CInt {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.dlclose { return mock(handle) }
    #endif
    return dlclose(handle)
}

/// `dlerror()` as a Swift string (nil when no error is pending); clears the pending error.
func system_dlerror() -> String? {
    #if ENABLE_MOCKING
    if let mock = Syscalls.mocks?.dlerror { return mock() }
    #endif
    return dlerror().map { String(cString: $0) }
}
