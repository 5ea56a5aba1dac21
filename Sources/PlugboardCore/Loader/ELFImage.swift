#if canImport(Glibc)
import Glibc
#endif

/// What the loader learns from a shared object's ELF headers before `dlopen`.
///
/// `dlopen` can report "invalid ELF header" or "wrong ELF class", but not in words
/// an operator can act on, and it cannot tell whether an image contains Swift
/// (which must never be `dlclose`d). Reading the headers first answers both.
public struct ELFImage: Sendable {
    /// `e_machine` of the file.
    public var machine: UInt16
    /// 64-bit (ELFCLASS64) or not.
    public var is64Bit: Bool
    /// The image contains Swift metadata (`swift5_*` sections) or links libswiftCore.
    public var containsSwift: Bool

    /// The host's own `e_machine`.
    public static var hostMachine: UInt16 {
        #if arch(x86_64)
        return 62  // EM_X86_64
        #elseif arch(arm64)
        return 183  // EM_AARCH64
        #else
        return 0
        #endif
    }

    /// A readable name for common `e_machine` values.
    public static func machineName(_ m: UInt16) -> String {
        switch m {
        case 3: "x86 (32-bit)"
        case 40: "ARM (32-bit)"
        case 62: "x86-64"
        case 183: "AArch64"
        case 243: "RISC-V"
        default: "machine \(m)"
        }
    }

    /// Reads and checks the ELF headers of `path`.
    /// - Throws: `PluginLoadError` `.notELF`, `.wrongArchitecture`, `.unreadable`.
    public static func inspect(path: String) throws(PluginLoadError) -> ELFImage {
        let bytes: [UInt8]
        do { bytes = try readFile(path) } catch { throw PluginLoadError(file: path, kind: .unreadable(error)) }
        guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw PluginLoadError(file: path, kind: .notELF)
        }
        let is64 = bytes[4] == 2
        let little = bytes[5] == 1
        func u16(_ o: Int) -> UInt16 {
            guard o + 2 <= bytes.count else { return 0 }
            return little ? UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 : UInt16(bytes[o]) << 8 | UInt16(bytes[o + 1])
        }
        func u32(_ o: Int) -> UInt32 {
            guard o + 4 <= bytes.count else { return 0 }
            return (0..<4).reduce(UInt32(0)) { acc, i in
                acc | UInt32(bytes[o + (little ? i : 3 - i)]) << (8 * UInt32(i))
            }
        }
        func u64(_ o: Int) -> UInt64 {
            guard o + 8 <= bytes.count else { return 0 }
            return (0..<8).reduce(UInt64(0)) { acc, i in
                acc | UInt64(bytes[o + (little ? i : 7 - i)]) << (8 * UInt64(i))
            }
        }
        let machine = u16(18)
        let hostIs64 = MemoryLayout<Int>.size == 8
        guard machine == hostMachine, is64 == hostIs64, little else {
            throw PluginLoadError(file: path, kind: .wrongArchitecture(
                found: "\(machineName(machine)), \(is64 ? "64" : "32")-bit, \(little ? "little" : "big")-endian",
                expected: "\(machineName(hostMachine)), \(hostIs64 ? "64" : "32")-bit, little-endian"))
        }
        // Section headers (64-bit layout; we only get here for the host's own class).
        let shoff = Int(u64(40)), shentsize = Int(u16(58)), shnum = Int(u16(60)), shstrndx = Int(u16(62))
        var swift = false
        if shoff > 0, shentsize >= 64, shstrndx < shnum, shoff + shnum * shentsize <= bytes.count {
            let strOff = Int(u64(shoff + shstrndx * shentsize + 24))
            let strSize = Int(u64(shoff + shstrndx * shentsize + 32))
            if strOff >= 0, strSize >= 0, strOff + strSize <= bytes.count {
                for i in 0..<shnum {
                    let nameOff = Int(u32(shoff + i * shentsize))
                    guard nameOff < strSize else { continue }
                    let start = strOff + nameOff
                    let prefix = Array("swift5_".utf8)
                    if start + prefix.count <= bytes.count, Array(bytes[start..<start + prefix.count]) == prefix {
                        swift = true
                        break
                    }
                }
            }
        }
        return ELFImage(machine: machine, is64Bit: is64, containsSwift: swift)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PlugboardError(code: "io.open", file: path, reason: errnoDescription(errno)) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PlugboardError(code: "io.stat", file: path, reason: errnoDescription(errno)) }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PlugboardError(code: "io.read", file: path, reason: errnoDescription(errno))
            }
            if n == 0 { break }
            done += n
        }
        return Array(out[0..<done])
    }
}
