/// Layout constants of the binary manifest (`.pbm`), format version 1. docs/manifest.md has the
/// byte-by-byte description; this file is its single source in code. All integers little-endian.
public enum PBMFormat {
    /// "PBMF"
    public static let magic: [UInt8] = [0x50, 0x42, 0x4D, 0x46]
    public static let formatMajor: UInt16 = 1
    /// 0 for a file a 1.0 reader understands whole; 1 when it carries a `tuning` section (optional,
    /// so a 1.0 reader skips it and runs the plugin without those settings).
    public static let formatMinor: UInt16 = 0
    public static let formatMinorTuning: UInt16 = 1
    public static let headerSize = 32
    public static let sectionEntrySize = 16
    /// Offset of the CRC-32C field in the header; the checksum covers the file with this field zeroed.
    public static let checksumOffset = 12
    /// Larger files are refused before anything else is read.
    public static let maxFileSize = 1 << 20
    public static let maxSections = 64

    /// Section kinds. A kind with `optionalFlag` set in the section entry may be skipped by readers that
    /// do not know it; an unknown kind without the flag is an error (written by a newer plugboard).
    public enum Kind: UInt32, CaseIterable, Sendable {
        case strings = 1
        case plugin = 2
        case libraryHash = 3
        case worker = 4
        case match = 5
        case config = 6
        case exports = 7
        case after = 8
        case authors = 9
        /// Format 1.1: settle window, nice, CPU affinity. Written flagged optional.
        case tuning = 10

        public var name: String {
            switch self {
            case .strings: "strings"
            case .plugin: "plugin"
            case .libraryHash: "library-hash"
            case .worker: "worker"
            case .match: "match"
            case .config: "config"
            case .exports: "exports"
            case .after: "after"
            case .authors: "authors"
            case .tuning: "tuning"
            }
        }

        /// Size of one record; 0 for the variable-size string table.
        public var recordSize: Int {
            switch self {
            case .strings: 0
            case .plugin: 48
            case .libraryHash: 36
            case .worker: 16
            case .match: 24
            case .config: 16
            case .exports: 16
            case .after: 8
            case .authors: 8
            case .tuning: 16
            }
        }

        /// Sections holding exactly one record.
        public var isSingle: Bool { self == .plugin || self == .libraryHash || self == .worker || self == .tuning }
    }

    public static let optionalFlag: UInt32 = 1

    /// `match` record `fields` bits: which optional fields are set.
    public enum MatchField {
        public static let vendor: UInt16 = 1 << 0
        public static let product: UInt16 = 1 << 1
        public static let deviceClass: UInt16 = 1 << 2
        public static let interfaceClass: UInt16 = 1 << 3
        public static let serial: UInt16 = 1 << 4
        public static let all: UInt16 = 0x1F
    }

    /// `match` record subsystem code.
    public static let subsystemUSB: UInt8 = 1
    /// `tuning` record `flags` bits.
    public enum TuningField {
        /// `settle_ms = "default"` (the record's settle_ms is then 0).
        public static let settleDefault: UInt16 = 1 << 0
        public static let nice: UInt16 = 1 << 1
        public static let cpuAffinity: UInt16 = 1 << 2
        public static let all: UInt16 = 0x7
    }

    /// `library-hash` algorithm code.
    public static let hashSHA256: UInt32 = 1
}
