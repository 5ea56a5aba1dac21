import PlugboardSystem

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

    /// Reads and checks the ELF headers of `path` (the file header, the section headers and
    /// their name table: a few hundred bytes, read with `pread`).
    /// - Throws: `PluginLoadError` `.notELF`, `.wrongArchitecture`, `.unreadable`.
    public static func inspect(path: String) throws(PluginLoadError) -> ELFImage {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path)
        } catch {
            throw PluginLoadError(file: path, kind: .unreadable(error))
        }
        defer { try? fd.close() }
        /// `count` bytes at `offset`, or nothing when the file is shorter or unreadable there.
        func read(_ offset: Int, _ count: Int) -> [UInt8] {
            guard offset >= 0, count > 0, count <= 1 << 20 else { return [] }
            guard let bytes = try? fd.read(count: count, atAbsoluteOffset: offset), bytes.count == count else { return [] }
            return bytes
        }
        let header = read(0, 64)
        guard header.count == 64, header[0] == 0x7f, header[1] == 0x45, header[2] == 0x4c, header[3] == 0x46 else {
            throw PluginLoadError(file: path, kind: .notELF)
        }
        let is64 = header[4] == 2
        let little = header[5] == 1
        func u16(_ b: [UInt8], _ o: Int) -> UInt16 {
            guard o + 2 <= b.count else { return 0 }
            return little ? UInt16(b[o]) | UInt16(b[o + 1]) << 8 : UInt16(b[o]) << 8 | UInt16(b[o + 1])
        }
        func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
            guard o + 4 <= b.count else { return 0 }
            return (0..<4).reduce(UInt32(0)) { acc, i in acc | UInt32(b[o + (little ? i : 3 - i)]) << (8 * UInt32(i)) }
        }
        func u64(_ b: [UInt8], _ o: Int) -> UInt64 {
            guard o + 8 <= b.count else { return 0 }
            return (0..<8).reduce(UInt64(0)) { acc, i in acc | UInt64(b[o + (little ? i : 7 - i)]) << (8 * UInt64(i)) }
        }
        let machine = u16(header, 18)
        let hostIs64 = MemoryLayout<Int>.size == 8
        guard machine == hostMachine, is64 == hostIs64, little else {
            throw PluginLoadError(file: path, kind: .wrongArchitecture(
                found: "\(machineName(machine)), \(is64 ? "64" : "32")-bit, \(little ? "little" : "big")-endian",
                expected: "\(machineName(hostMachine)), \(hostIs64 ? "64" : "32")-bit, little-endian"))
        }
        // Section headers (64-bit layout: we only get here for the host's own class).
        let shoff = Int(clamping: u64(header, 40)), shentsize = Int(u16(header, 58))
        let shnum = Int(u16(header, 60)), shstrndx = Int(u16(header, 62))
        var swift = false
        if shoff > 0, shentsize >= 64, shnum > 0, shstrndx < shnum {
            let sections = read(shoff, shnum * shentsize)
            let strOff = Int(clamping: u64(sections, shstrndx * shentsize + 24))
            let strSize = Int(clamping: u64(sections, shstrndx * shentsize + 32))
            let names = read(strOff, strSize)
            let prefix = Array("swift5_".utf8)
            for i in 0..<(sections.isEmpty ? 0 : shnum) {
                let start = Int(u32(sections, i * shentsize))
                if start + prefix.count <= names.count, names[start..<start + prefix.count].elementsEqual(prefix) {
                    swift = true
                    break
                }
            }
        }
        return ELFImage(machine: machine, is64Bit: is64, containsSwift: swift)
    }
}
