import Testing
@testable import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("DynamicLibrary")
struct DynamicLibraryTests {
    func thrownLinkError<R>(_ body: () throws -> R) -> DynamicLinkError? {
        do {
            _ = try body()
            Issue.record("expected a DynamicLinkError")
        } catch let e as DynamicLinkError {
            return e
        } catch {
            Issue.record("expected a DynamicLinkError, got \(error)")
        }
        return nil
    }

    @Test func openingAFileThatIsNotELFCarriesTheDlerrorText() throws {
        let path = try temporaryFile(Array("not a library\n".utf8), name: "fake.so")
        let e = thrownLinkError { try DynamicLibrary.open(path) }
        #expect(e?.call == "dlopen" && e?.path == path)
        #expect(e?.message.contains(path) == true)
        #expect(e?.message.contains("ELF") == true || e?.message.contains("too short") == true)
    }

    @Test func lookingUpAMissingSymbolNamesItWithTheDlerrorText() throws {
        let libc = try DynamicLibrary.open("libc.so.6")
        _ = try libc.symbol("getpid")
        let e = thrownLinkError { try libc.symbol("pb_no_such_symbol") }
        #expect(e?.call == "dlsym" && e?.symbol == "pb_no_such_symbol")
        #expect(e?.message.contains("undefined symbol: pb_no_such_symbol") == true)
        #expect(e?.undefinedSymbol == "pb_no_such_symbol")
    }

    @Test func injectedDlopenAndDlcloseFailuresCarryTheInjectedText() throws {
        let mocks = Syscalls(dlopen: { _, _ in nil }, dlclose: { _ in 1 },
                             dlerror: { "/x/p.so: undefined symbol: pb_log_missing, version 1" })
        let e = withSyscalls(mocks) { thrownLinkError { try DynamicLibrary.open("/x/p.so") } }
        #expect(e == DynamicLinkError(call: "dlopen", path: "/x/p.so", message: "/x/p.so: undefined symbol: pb_log_missing, version 1"))
        #expect(e?.undefinedSymbol == "pb_log_missing")
        let libc = try DynamicLibrary.open("libc.so.6")
        let c = withSyscalls(mocks) { thrownLinkError { try libc.close() } }
        #expect(c?.call == "dlclose" && c?.path == "libc.so.6")
    }
}
