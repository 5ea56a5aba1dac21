import CFFI
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A C type `plugboard call` can build from text and print back.
public enum CValueType: Equatable, Sendable, CustomStringConvertible {
    case void
    case bool
    case signed(bits: Int)
    case unsigned(bits: Int)
    case float, double
    /// `const char *` / `char *`: a NUL-terminated string.
    case string

    public var description: String {
        switch self {
        case .void: "void"
        case .bool: "bool"
        case .signed(let b): "int\(b)_t"
        case .unsigned(let b): "uint\(b)_t"
        case .float: "float"
        case .double: "double"
        case .string: "const char *"
        }
    }

    /// The C spellings understood (LP64: long is 64 bits), after `const` and parameter names are dropped.
    static let spellings: [String: CValueType] = {
        var m: [String: CValueType] = [
            "void": .void, "bool": .bool, "_Bool": .bool, "float": .float, "double": .double,
            "char*": .string, "constchar*": .string, "charconst*": .string,
            "char": .signed(bits: 8), "signedchar": .signed(bits: 8), "unsignedchar": .unsigned(bits: 8),
            "short": .signed(bits: 16), "unsignedshort": .unsigned(bits: 16),
            "int": .signed(bits: 32), "signed": .signed(bits: 32), "unsigned": .unsigned(bits: 32), "unsignedint": .unsigned(bits: 32),
            "long": .signed(bits: 64), "unsignedlong": .unsigned(bits: 64), "longlong": .signed(bits: 64),
            "unsignedlonglong": .unsigned(bits: 64), "size_t": .unsigned(bits: 64), "ssize_t": .signed(bits: 64),
            "pb_status": .signed(bits: 32),
        ]
        for b in [8, 16, 32, 64] { m["int\(b)_t"] = .signed(bits: b); m["uint\(b)_t"] = .unsigned(bits: b) }
        return m
    }()

    var ffi: UnsafeMutablePointer<ffi_type> {
        switch self {
        case .void: pbffi_void()
        case .bool: pbffi_uint8()
        case .signed(8): pbffi_sint8()
        case .signed(16): pbffi_sint16()
        case .signed(32): pbffi_sint32()
        case .signed: pbffi_sint64()
        case .unsigned(8): pbffi_uint8()
        case .unsigned(16): pbffi_uint16()
        case .unsigned(32): pbffi_uint32()
        case .unsigned: pbffi_uint64()
        case .float: pbffi_float()
        case .double: pbffi_double()
        case .string: pbffi_pointer()
        }
    }
}

/// A parsed `[exports]` signature: `return-type (parameter, ...)`.
public struct CSignature: Equatable, Sendable {
    public var returns: CValueType
    public var parameters: [CValueType]

    /// Why a signature cannot be called from text: what, and the fix.
    public struct Unsupported: Error, Sendable, CustomStringConvertible {
        public let problem: String
        public let fix: String
        public var description: String { "\(problem) (fix: \(fix))" }
    }

    public static func parse(_ text: String) -> Result<CSignature, Unsupported> {
        guard let open = text.firstIndex(of: "("), text.hasSuffix(")") else {
            return .failure(.init(problem: "\"\(text)\" is not 'return-type (parameters)'", fix: "write e.g. \"int32_t (int32_t a, int32_t b)\""))
        }
        func type(_ raw: Substring, isParameter: Bool) -> CValueType? {
            var words = raw.replacingOccurrences(of: "*", with: " * ").split(separator: " ").map(String.init)
            words.removeAll { $0 == "const" }
            // A trailing parameter name ("int32_t a"): drop it unless it is part of the type.
            if isParameter, words.count > 1, let last = words.last, last != "*", CValueType.spellings[last] == nil,
               !["int", "char", "long", "short"].contains(last) {
                words.removeLast()
            }
            let key = words.joined()
            return CValueType.spellings[key] ?? CValueType.spellings[key.replacingOccurrences(of: "const", with: "")]
        }
        let returnText = text[..<open].trimmingCharacters(in: .whitespaces)
        guard let returns = type(Substring(returnText), isParameter: false) else {
            return .failure(.init(problem: "the return type '\(returnText)' cannot be printed",
                                  fix: "export a wrapper returning a number, bool, string or void"))
        }
        let inside = text[text.index(after: open)..<text.index(before: text.endIndex)].trimmingCharacters(in: .whitespaces)
        var parameters: [CValueType] = []
        if !inside.isEmpty && inside != "void" {
            for (i, p) in inside.split(separator: ",").enumerated() {
                guard let t = type(p, isParameter: true), t != .void else {
                    return .failure(.init(problem: "parameter \(i + 1) has type '\(p.trimmingCharacters(in: .whitespaces))', which cannot be built from text",
                                          fix: "export a wrapper taking numbers, bools or strings"))
                }
                parameters.append(t)
            }
        }
        return .success(CSignature(returns: returns, parameters: parameters))
    }
}

/// Calls one exported C function through libffi with arguments given as text.
public struct ForeignCall {
    public let symbol: String
    public let signature: CSignature
    let address: UnsafeMutableRawPointer

    /// Why a call was refused (bad argument text or count, or libffi refusing the signature).
    public struct Refused: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public init(symbol: String, signature: CSignature, address: UnsafeMutableRawPointer) {
        self.symbol = symbol
        self.signature = signature
        self.address = address
    }

    /// Calls the function with `arguments` converted to the parameter types; returns the result
    /// as text ("" for void; strings as the function returned them).
    public func call(_ arguments: [String]) throws(Refused) -> String {
        let params = signature.parameters
        guard arguments.count == params.count else {
            throw Refused(description: "\(symbol) takes \(params.count) argument(s) (\(params.map(\.description).joined(separator: ", "))), got \(arguments.count)")
        }
        // One 8-byte, 8-aligned cell per argument (every supported type fits).
        let cells = UnsafeMutableRawPointer.allocate(byteCount: max(1, params.count) * 8, alignment: 8)
        defer { cells.deallocate() }
        var strings: [UnsafeMutablePointer<CChar>] = []
        defer { strings.forEach { free($0) } }
        for (i, (type, text)) in zip(params, arguments).enumerated() {
            let cell = cells + i * 8
            func bad(_ why: String) -> Refused {
                Refused(description: "argument \(i + 1) of \(symbol) (\(type)): \"\(text)\" \(why)")
            }
            switch type {
            case .bool:
                switch text.lowercased() {
                case "true", "1": cell.storeBytes(of: UInt8(1), as: UInt8.self)
                case "false", "0": cell.storeBytes(of: UInt8(0), as: UInt8.self)
                default: throw bad("is not true or false")
                }
            case .signed(let bits):
                guard let v = Int64(text) else { throw bad("is not an integer") }
                let limit = bits == 64 ? Int64.max : (Int64(1) << (bits - 1)) - 1
                guard v <= limit && v >= -limit - 1 else { throw bad("is out of range for \(bits) bits") }
                switch bits {
                case 8: cell.storeBytes(of: Int8(v), as: Int8.self)
                case 16: cell.storeBytes(of: Int16(v), as: Int16.self)
                case 32: cell.storeBytes(of: Int32(v), as: Int32.self)
                default: cell.storeBytes(of: v, as: Int64.self)
                }
            case .unsigned(let bits):
                guard let v = UInt64(text) else { throw bad("is not a non-negative integer") }
                guard bits == 64 || v < (UInt64(1) << bits) else { throw bad("is out of range for \(bits) bits") }
                switch bits {
                case 8: cell.storeBytes(of: UInt8(v), as: UInt8.self)
                case 16: cell.storeBytes(of: UInt16(v), as: UInt16.self)
                case 32: cell.storeBytes(of: UInt32(v), as: UInt32.self)
                default: cell.storeBytes(of: v, as: UInt64.self)
                }
            case .float:
                guard let v = Float(text) else { throw bad("is not a number") }
                cell.storeBytes(of: v, as: Float.self)
            case .double:
                guard let v = Double(text) else { throw bad("is not a number") }
                cell.storeBytes(of: v, as: Double.self)
            case .string:
                let s = strdup(text)!
                strings.append(s)
                cell.storeBytes(of: s, as: UnsafeMutablePointer<CChar>.self)
            case .void:
                throw bad("cannot be passed")
            }
        }
        var types: [UnsafeMutablePointer<ffi_type>?] = params.map { $0.ffi }
        var values: [UnsafeMutableRawPointer?] = (0..<params.count).map { cells + $0 * 8 }
        var cif = ffi_cif()
        let prepared = types.withUnsafeMutableBufferPointer { t in
            ffi_prep_cif(&cif, FFI_DEFAULT_ABI, UInt32(params.count), signature.returns.ffi, t.baseAddress)
        }
        guard prepared == FFI_OK else { throw Refused(description: "libffi refused the signature of \(symbol) (status \(prepared.rawValue))") }
        // Integer results narrower than a register come back widened to ffi_arg (8 bytes).
        var result: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &result) { r in
            values.withUnsafeMutableBufferPointer { v in
                ffi_call(&cif, unsafeBitCast(address, to: (@convention(c) () -> Void).self), r.baseAddress, v.baseAddress)
            }
        }
        return withUnsafeBytes(of: &result) { r -> String in
            switch signature.returns {
            case .void: return ""
            case .bool: return r.load(as: UInt64.self) & 0xff != 0 ? "true" : "false"
            case .signed(let bits):
                let raw = r.load(as: UInt64.self)
                let shift = UInt64(64 - bits)
                return String(Int64(bitPattern: raw << shift) >> Int64(shift))
            case .unsigned(let bits):
                let raw = r.load(as: UInt64.self)
                return String(bits == 64 ? raw : raw & ((UInt64(1) << UInt64(bits)) - 1))
            case .float: return String(r.load(as: Float.self))
            case .double: return String(r.load(as: Double.self))
            case .string:
                guard let p = r.load(as: UnsafePointer<CChar>?.self) else { return "(null)" }
                return String(cString: p)
            }
        }
    }
}
