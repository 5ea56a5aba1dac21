import CPlugboardSupport
import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("MappedRegion and MemoryFile")
struct MappingTests {
    @Test func aFileIsMappedReadOnlyWithItsBytes() throws {
        let path = try temporaryFile([1, 2, 3, 4])
        let fd = try FileDescriptor.open(path)
        let region = try fd.closeAfter { () throws(Errno) in try MappedRegion(fd: fd, count: 4) }
        #expect(Array(region.bytes) == [1, 2, 3, 4])
    }

    @Test func mappingMoreThanTheFileHoldsThrowsInsteadOfFaultingLater() throws {
        let path = try temporaryFile([1, 2, 3])
        let fd = try FileDescriptor.open(path)
        defer { try? fd.close() }
        let e = thrownErrno { try MappedRegion(fd: fd, count: 4096) }
        #expect(e?.code == EINVAL && e?.call == "mmap" && e?.path == path)
        #expect(e?.detail == "the file is 3 bytes, shorter than the 4096 bytes to map")
    }

    @Test(arguments: [ENOMEM, EACCES, EAGAIN])
    func mmapReportsTheInjectedErrnoWithThePath(_ code: CInt) throws {
        let path = try temporaryFile([1, 2, 3, 4])
        let fd = try FileDescriptor.open(path)
        defer { try? fd.close() }
        let e = withSyscalls(Syscalls(mmap: { _, _, _, _, _, _ in errno = code; return MAP_FAILED })) {
            thrownErrno { try MappedRegion(fd: fd, count: 4) }
        }
        #expect(e == Errno(code: code, call: "mmap", path: path))
    }

    @Test func aRegionIsUnmappedWhenReleased() throws {
        let path = try temporaryFile([1, 2, 3, 4])
        let fd = try FileDescriptor.open(path)
        defer { try? fd.close() }
        let unmapped = CallCount()
        withSyscalls(Syscalls(munmap: { p, n in _ = unmapped.next(); return munmap(p, n) })) {
            _ = try? MappedRegion(fd: fd, count: 4)
        }
        #expect(unmapped.count == 1)
    }

    @Test func aMemoryFileIsSizedAndSealedAgainstShrinkingAndGrowing() throws {
        let fd = try MemoryFile.create(name: "pbsys-test", size: 8192)
        defer { try? fd.close() }
        #expect(try fd.status().size == 8192)
        let seals = pbs_memfd_seals(fd.rawValue)
        #expect(seals == pbs_seal_seal() | pbs_seal_shrink() | pbs_seal_grow())
        #expect(thrownErrno { try fd.resize(to: 4096) }?.code == EPERM)
        let region = try MappedRegion(fd: fd, count: 8192, protection: [.read, .write], shared: true)
        region.baseAddress.storeBytes(of: 42, as: UInt8.self)
        #expect(region.bytes[0] == 42)
    }

    @Test(arguments: [EMFILE, ENFILE, ENOMEM])
    func memfdCreateReportsTheInjectedErrno(_ code: CInt) {
        let e = withSyscalls(Syscalls(memfdCreate: { _ in fail(code) })) {
            thrownErrno { try MemoryFile.create(name: "ring", size: 4096) }
        }
        #expect(e == Errno(code: code, call: "memfd_create", path: "memfd:ring"))
    }

    @Test func aFailedSizingOrSealingClosesTheMemoryFile() {
        let closed = CallCount()
        let sizing = Syscalls(close: { d in _ = closed.next(); return close(d) }, ftruncate: { _, _ in fail(ENOMEM) })
        let e1 = withSyscalls(sizing) { thrownErrno { try MemoryFile.create(name: "ring", size: 4096) } }
        #expect(e1 == Errno(code: ENOMEM, call: "ftruncate", path: "memfd:ring"))
        let sealing = Syscalls(close: { d in _ = closed.next(); return close(d) }, addSeals: { _, _ in fail(EPERM) })
        let e2 = withSyscalls(sealing) { thrownErrno { try MemoryFile.create(name: "ring", size: 4096) } }
        #expect(e2 == Errno(code: EPERM, call: "fcntl(F_ADD_SEALS)", path: "memfd:ring"))
        #expect(closed.count == 2)
    }
}
