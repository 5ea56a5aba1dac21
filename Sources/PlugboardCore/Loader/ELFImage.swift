import CPlugboard
import PlugboardSystem

/// What the loader learns from a shared object's ELF headers before `dlopen`, and the checks that
/// keep `dlopen` from ever seeing a file it would crash on.
///
/// `dlopen` can report "invalid ELF header" or "wrong ELF class", but not in words an operator can
/// act on, and it cannot tell whether an image contains Swift (which must never be `dlclose`d).
/// Worse, `ld.so` maps each segment as the program headers describe it: a segment that reaches past
/// the end of a truncated file is mapped anyway, and the first touch of the missing pages ends the
/// process with SIGBUS (issue 12: the first 1,000 bytes of a real plugin crashed the host). Reading
/// the headers first answers all three: `inspect` refuses, with the reason, any file whose program
/// headers, segments or section headers lie outside it, that has no dynamic section, or that does
/// not export the entry point.
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

    /// `pb_plugin_entry(const pb_negotiate_in *, pb_negotiate_out *)` as the Itanium C++ ABI
    /// mangles it (g++ and clang++): what a C++ plugin exports when its entry point lacks C linkage.
    public static let mangledEntrySymbol = "_Z15pb_plugin_entryPK15pb_negotiate_inP16pb_negotiate_out"

    /// The most bytes one header table or symbol table may span (a plugin's `.dynsym` is a few
    /// hundred KiB at most): more is refused rather than read.
    static let maximumTableBytes = 64 << 20

    /// Reads and checks the ELF headers of `path` before anything maps it: the file header; the
    /// program header table and every segment it describes lie within the file; there is a loadable
    /// segment and a `PT_DYNAMIC`; the section header table and the sections read here lie within
    /// the file; and the dynamic symbol table defines `pb_plugin_entry`. Only headers and the
    /// dynamic symbol and string tables are read (with `pread`); nothing is mapped or executed.
    /// - Throws: `PluginLoadError` `.notELF`, `.wrongArchitecture`, `.unreadable`, `.malformedELF`
    ///   (naming the table or segment and where it ends against the file's size), `.noEntryPoint`
    ///   or `.mangledEntryPoint`.
    public static func inspect(path: String) throws(PluginLoadError) -> ELFImage {
        let fd: FileDescriptor
        let size: Int
        do throws(Errno) {
            fd = try FileDescriptor.open(path)
        } catch {
            throw PluginLoadError(file: path, kind: .unreadable(error))
        }
        defer { try? fd.close() }
        do throws(Errno) {
            size = try fd.status().size
        } catch {
            throw PluginLoadError(file: path, kind: .unreadable(error))
        }
        let reader = ELFReader(size: size) { offset, count in
            guard let bytes = try? fd.read(count: count, atAbsoluteOffset: offset), bytes.count == count else { return nil }
            return bytes
        }
        do throws(ELFReader.Refusal) {
            return try reader.validate()
        } catch {
            switch error {
            case .notELF: throw PluginLoadError(file: path, kind: .notELF)
            case .wrongArchitecture(let found, let expected):
                throw PluginLoadError(file: path, kind: .wrongArchitecture(found: found, expected: expected))
            case .malformed(let reason): throw PluginLoadError(file: path, kind: .malformedELF(reason: reason))
            case .noEntryPoint: throw PluginLoadError(file: path, kind: .noEntryPoint)
            case .mangledEntryPoint: throw PluginLoadError(file: path, kind: .mangledEntryPoint(symbol: mangledEntrySymbol))
            }
        }
    }

    /// The same checks over bytes already in memory (the fuzz pass, and tools that hold the file).
    /// - Throws: as `inspect(path:)`, naming `file`.
    public static func inspect(bytes: [UInt8], file: String) throws(PluginLoadError) -> ELFImage {
        let reader = ELFReader(size: bytes.count) { offset, count in
            guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else { return nil }
            return Array(bytes[offset..<(offset + count)])
        }
        do throws(ELFReader.Refusal) {
            return try reader.validate()
        } catch {
            switch error {
            case .notELF: throw PluginLoadError(file: file, kind: .notELF)
            case .wrongArchitecture(let found, let expected):
                throw PluginLoadError(file: file, kind: .wrongArchitecture(found: found, expected: expected))
            case .malformed(let reason): throw PluginLoadError(file: file, kind: .malformedELF(reason: reason))
            case .noEntryPoint: throw PluginLoadError(file: file, kind: .noEntryPoint)
            case .mangledEntryPoint: throw PluginLoadError(file: file, kind: .mangledEntryPoint(symbol: mangledEntrySymbol))
            }
        }
    }
}

/// The ELF checks over a file of `size` bytes read through `read(offset, count)`. Every offset and
/// count comes from the file and is untrusted: all arithmetic on them is checked, and a read is
/// only made once its range has been checked against `size`.
struct ELFReader {
    enum Refusal: Error {
        case notELF
        case wrongArchitecture(found: String, expected: String)
        case malformed(String)
        case noEntryPoint
        case mangledEntryPoint
    }

    let size: Int
    let read: (Int, Int) -> [UInt8]?

    init(size: Int, read: @escaping (Int, Int) -> [UInt8]?) {
        self.size = size
        self.read = read
    }

    // ELF constants (elf.h).
    static let ptLoad: UInt32 = 1, ptDynamic: UInt32 = 2
    static let shtNobits: UInt32 = 8, shtDynsym: UInt32 = 11
    static let dtNull: UInt64 = 0, dtHash: UInt64 = 4, dtStrtab: UInt64 = 5, dtSymtab: UInt64 = 6
    static let dtStrsz: UInt64 = 10, dtSyment: UInt64 = 11
    static let symbolSize = 24  // Elf64_Sym

    static func u16(_ b: [UInt8], _ o: Int) -> UInt16 {
        guard o >= 0, o + 2 <= b.count else { return 0 }
        return UInt16(b[o]) | UInt16(b[o + 1]) << 8
    }
    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        guard o >= 0, o + 4 <= b.count else { return 0 }
        return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
    static func u64(_ b: [UInt8], _ o: Int) -> UInt64 {
        UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32
    }

    /// `offset + count` when both fit an `Int` and the range lies within the file; nil otherwise.
    func end(_ offset: UInt64, _ count: UInt64) -> Int? {
        guard offset <= UInt64(Int.max), count <= UInt64(Int.max) else { return nil }
        let (sum, overflow) = Int(offset).addingReportingOverflow(Int(count))
        guard !overflow, sum <= size else { return nil }
        return sum
    }

    /// `entries * entrySize` bytes at `offset`, after checking the whole table lies within the file.
    func table(_ what: String, offset: UInt64, entries: Int, entrySize: Int) throws(Refusal) -> [UInt8] {
        let (bytes, overflow) = entries.multipliedReportingOverflow(by: entrySize)
        guard !overflow, bytes <= ELFImage.maximumTableBytes else {
            throw .malformed("the \(what) (\(entries) entries of \(entrySize) bytes) is implausibly large")
        }
        guard let e = end(offset, UInt64(bytes)) else {
            throw .malformed("the \(what) (offset \(offset), \(bytes) bytes) ends beyond the end of the file (\(size) bytes): the file is truncated or damaged")
        }
        guard bytes > 0 else { return [] }
        guard let b = read(Int(offset), e - Int(offset)) else {
            throw .malformed("the \(what) (offset \(offset), \(bytes) bytes) could not be read")
        }
        return b
    }

    struct Segment { var type: UInt32; var offset: UInt64; var vaddr: UInt64; var filesz: UInt64 }

    func validate() throws(Refusal) -> ELFImage {
        guard size >= 64, let header = read(0, 64), header.count == 64,
              header[0] == 0x7f, header[1] == 0x45, header[2] == 0x4c, header[3] == 0x46 else { throw .notELF }
        let is64 = header[4] == 2
        let little = header[5] == 1
        // Big-endian files are refused below, so every field is read little-endian.
        let machine = little ? Self.u16(header, 18) : UInt16(header[18]) << 8 | UInt16(header[19])
        let hostIs64 = MemoryLayout<Int>.size == 8
        guard machine == ELFImage.hostMachine, is64 == hostIs64, little else {
            throw .wrongArchitecture(
                found: "\(ELFImage.machineName(machine)), \(is64 ? "64" : "32")-bit, \(little ? "little" : "big")-endian",
                expected: "\(ELFImage.machineName(ELFImage.hostMachine)), \(hostIs64 ? "64" : "32")-bit, little-endian")
        }
        // 64-bit layout from here: we only get here for the host's own class.
        let type = Self.u16(header, 16)
        guard type == 3 else {
            throw .malformed("e_type is \(type), not ET_DYN (3): the file is not a shared object (build it with -shared -fPIC)")
        }

        // Program headers: every segment must lie within the file, or ld.so maps pages past its end.
        let phoff = Self.u64(header, 32), phentsize = Int(Self.u16(header, 54)), phnum = Int(Self.u16(header, 56))
        guard phnum > 0 else { throw .malformed("the file has no program headers (e_phnum is 0), so nothing can be loaded") }
        guard phentsize >= 56 else { throw .malformed("e_phentsize is \(phentsize), smaller than an Elf64_Phdr (56 bytes)") }
        let phdrs = try table("program header table", offset: phoff, entries: phnum, entrySize: phentsize)
        var segments: [Segment] = []
        for i in 0..<phnum {
            let o = i * phentsize
            let s = Segment(type: Self.u32(phdrs, o), offset: Self.u64(phdrs, o + 8), vaddr: Self.u64(phdrs, o + 16),
                            filesz: Self.u64(phdrs, o + 32))
            guard end(s.offset, s.filesz) != nil else {
                throw .malformed("segment \(i + 1) of \(phnum) (\(Self.segmentName(s.type)), offset \(s.offset), \(s.filesz) bytes) ends beyond the end of the file (\(size) bytes): the file is truncated or damaged")
            }
            segments.append(s)
        }
        guard segments.contains(where: { $0.type == Self.ptLoad }) else {
            throw .malformed("no PT_LOAD segment: nothing of the file would be mapped")
        }
        guard let dynamic = segments.first(where: { $0.type == Self.ptDynamic }) else {
            throw .malformed("no PT_DYNAMIC segment: not a dynamically linked shared object")
        }

        // Section headers: optional for ld.so, but when present they must lie within the file.
        let shoff = Self.u64(header, 40), shentsize = Int(Self.u16(header, 58))
        let shnum = Int(Self.u16(header, 60)), shstrndx = Int(Self.u16(header, 62))
        var sections: [UInt8] = []
        if shnum > 0 {
            guard shentsize >= 64 else { throw .malformed("e_shentsize is \(shentsize), smaller than an Elf64_Shdr (64 bytes)") }
            sections = try table("section header table", offset: shoff, entries: shnum, entrySize: shentsize)
        } else if shoff != 0 && end(shoff, 0) == nil {
            throw .malformed("e_shoff (\(shoff)) lies beyond the end of the file (\(size) bytes)")
        }
        func section(_ i: Int) -> (name: UInt32, type: UInt32, offset: UInt64, size: UInt64, link: Int, entsize: UInt64) {
            let o = i * shentsize
            return (Self.u32(sections, o), Self.u32(sections, o + 4), Self.u64(sections, o + 24), Self.u64(sections, o + 32),
                    Int(Self.u32(sections, o + 40)), Self.u64(sections, o + 56))
        }

        // Swift metadata (`swift5_*` section names): such an image must never be dlclosed.
        var swift = false
        if shnum > 0, shstrndx < shnum {
            let names = section(shstrndx)
            if names.type != Self.shtNobits, end(names.offset, names.size) != nil, names.size <= UInt64(ELFImage.maximumTableBytes),
               let text = read(Int(names.offset), Int(names.size)) {
                let prefix = Array("swift5_".utf8)
                for i in 0..<shnum {
                    let start = Int(section(i).name)
                    if start + prefix.count <= text.count, text[start..<start + prefix.count].elementsEqual(prefix) {
                        swift = true
                        break
                    }
                }
            }
        }

        // The dynamic symbol table, from the section headers when there are any, else from PT_DYNAMIC.
        var symbols: [UInt8], strings: [UInt8], entrySize: Int
        if let dynsym = (0..<shnum).first(where: { section($0).type == Self.shtDynsym }) {
            let sym = section(dynsym)
            guard sym.link < shnum else { throw .malformed("the .dynsym section's string table link (\(sym.link)) names no section") }
            let str = section(sym.link)
            entrySize = sym.entsize == 0 ? Self.symbolSize : Int(clamping: sym.entsize)
            guard entrySize >= Self.symbolSize else { throw .malformed(".dynsym's entry size is \(entrySize), smaller than an Elf64_Sym (24 bytes)") }
            symbols = try table(".dynsym section", offset: sym.offset, entries: Int(clamping: sym.size) / entrySize, entrySize: entrySize)
            strings = try table(".dynstr section", offset: str.offset, entries: Int(clamping: min(str.size, UInt64(Int32.max))), entrySize: 1)
        } else {
            (symbols, strings, entrySize) = try dynamicSymbols(dynamic, segments: segments)
        }
        switch Self.entryPoint(symbols: symbols, strings: strings, entrySize: entrySize) {
        case .defined: break
        case .mangled: throw .mangledEntryPoint
        case .missing: throw .noEntryPoint
        }
        return ELFImage(machine: machine, is64Bit: is64, containsSwift: swift)
    }

    /// The dynamic symbol and string tables found through `PT_DYNAMIC` (`DT_SYMTAB`, `DT_STRTAB`,
    /// `DT_STRSZ`, and `DT_HASH`'s chain count or the gap up to the string table for the size).
    func dynamicSymbols(_ dynamic: Segment, segments: [Segment]) throws(Refusal) -> ([UInt8], [UInt8], Int) {
        let dyn = try table("dynamic section", offset: dynamic.offset, entries: Int(clamping: dynamic.filesz / 16), entrySize: 16)
        var tags: [UInt64: UInt64] = [:]
        var o = 0
        while o + 16 <= dyn.count {
            let tag = Self.u64(dyn, o)
            if tag == Self.dtNull { break }
            if tags[tag] == nil { tags[tag] = Self.u64(dyn, o + 8) }
            o += 16
        }
        /// The file offset of a virtual address inside a loaded segment.
        func fileOffset(_ address: UInt64) -> UInt64? {
            for s in segments where s.type == Self.ptLoad && address >= s.vaddr && address - s.vaddr < s.filesz {
                return s.offset + (address - s.vaddr)
            }
            return nil
        }
        guard let symtab = tags[Self.dtSymtab].flatMap(fileOffset), let strtab = tags[Self.dtStrtab].flatMap(fileOffset) else {
            throw .malformed("the dynamic section has no DT_SYMTAB or DT_STRTAB inside a loaded segment, so no symbol can be found")
        }
        let entrySize = Int(clamping: tags[Self.dtSyment] ?? UInt64(Self.symbolSize))
        guard entrySize >= Self.symbolSize else { throw .malformed("DT_SYMENT is \(entrySize), smaller than an Elf64_Sym (24 bytes)") }
        var count: Int
        if let hash = tags[Self.dtHash].flatMap(fileOffset) {
            count = Int(Self.u32(try table("DT_HASH table", offset: hash, entries: 2, entrySize: 4), 4))
        } else if strtab > symtab {
            count = Int(clamping: (strtab - symtab) / UInt64(entrySize))
        } else {
            throw .malformed("the dynamic symbol table's size cannot be told (no section headers, no DT_HASH)")
        }
        count = min(count, ELFImage.maximumTableBytes / entrySize)
        let symbols = try table("dynamic symbol table", offset: symtab, entries: count, entrySize: entrySize)
        let strings = try table("dynamic string table", offset: strtab, entries: Int(clamping: min(tags[Self.dtStrsz] ?? 0, UInt64(Int32.max))), entrySize: 1)
        return (symbols, strings, entrySize)
    }

    enum EntryPoint { case defined, mangled, missing }

    /// Whether the symbol table defines (`st_shndx` not `SHN_UNDEF`) `pb_plugin_entry`, or only its
    /// C++-mangled name.
    static func entryPoint(symbols: [UInt8], strings: [UInt8], entrySize: Int) -> EntryPoint {
        let wanted = Array(PB_ENTRY_SYMBOL.utf8) + [0]
        let mangled = Array(ELFImage.mangledEntrySymbol.utf8) + [0]
        var found = EntryPoint.missing
        var o = 0
        while o + symbolSize <= symbols.count {
            defer { o += entrySize }
            let name = Int(u32(symbols, o)), shndx = u16(symbols, o + 6)
            guard shndx != 0, name > 0, name < strings.count else { continue }
            func named(_ n: [UInt8]) -> Bool {
                name + n.count <= strings.count && strings[name..<(name + n.count)].elementsEqual(n)
            }
            if named(wanted) { return .defined }
            if named(mangled) { found = .mangled }
        }
        return found
    }

    static func segmentName(_ type: UInt32) -> String {
        switch type {
        case 0: "PT_NULL"
        case 1: "PT_LOAD"
        case 2: "PT_DYNAMIC"
        case 3: "PT_INTERP"
        case 4: "PT_NOTE"
        case 6: "PT_PHDR"
        case 7: "PT_TLS"
        case 0x6474e550: "PT_GNU_EH_FRAME"
        case 0x6474e551: "PT_GNU_STACK"
        case 0x6474e552: "PT_GNU_RELRO"
        case 0x6474e553: "PT_GNU_PROPERTY"
        default: "type 0x\(String(type, radix: 16))"
        }
    }
}
