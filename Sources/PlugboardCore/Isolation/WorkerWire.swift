import Synchronization
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// The messages between the host and a worker process, on a stream socket pair: a frame is
/// `[u32 length][u8 type][payload]`, little-endian, length counting type and payload.
///
/// Rare and control traffic only (setup, ready, device table, state handover, shutdown, and the
/// runner's own log notes). A plugin's frequent host calls (publish, metrics, log) go through its
/// shared-memory queue (`HostCallRecord`), never here: any other message kills the worker.
public enum WireType: UInt8, Sendable {
    // host -> worker
    case setup = 1, go = 2, deviceTable = 3, shutdown = 4, handoff = 5
    // worker -> host
    case ready = 10, initFailed = 11, log = 12
    case deviceTableRequest = 17, state = 18, done = 20, snapshot = 21
    /// The worker read its last event and waits for `shutdown` (its activity is `.drained`):
    /// the host need not wait for its watchdog tick to notice.
    case drained = 22
}

/// Appends little-endian fields to a frame payload.
public struct WireWriter {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func f64(_ v: Double) { u64(v.bitPattern) }
    public mutating func data(_ d: UnsafeRawBufferPointer) {
        u32(UInt32(d.count))
        bytes.append(contentsOf: d)
    }
    public mutating func data(_ d: [UInt8]) { d.withUnsafeBytes { data($0) } }
    public mutating func string(_ s: String) { data(Array(s.utf8)) }
}

/// Reads fields of a frame payload; any read past the end fails (a peer's frame is never trusted).
public struct WireReader {
    let bytes: [UInt8]
    var offset = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public struct Truncated: Error {}

    mutating func take(_ n: Int) throws(Truncated) -> ArraySlice<UInt8> {
        guard n >= 0, bytes.count - offset >= n else { throw Truncated() }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }
    public mutating func u8() throws(Truncated) -> UInt8 { try take(1).first! }
    public mutating func u16() throws(Truncated) -> UInt16 { UInt16(try uint(2)) }
    public mutating func u32() throws(Truncated) -> UInt32 { UInt32(try uint(4)) }
    public mutating func u64() throws(Truncated) -> UInt64 { try uint(8) }
    public mutating func f64() throws(Truncated) -> Double { Double(bitPattern: try u64()) }
    mutating func uint(_ n: Int) throws(Truncated) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }
    public mutating func data() throws(Truncated) -> [UInt8] { Array(try take(Int(try u32()))) }
    public mutating func string() throws(Truncated) -> String { String(decoding: try data(), as: UTF8.self) }
}

/// One end of the host/worker socket: whole frames in, whole frames out.
public final class WireChannel: @unchecked Sendable {
    // @unchecked: writes are serialised by `writeLock` (plugin threads may publish at once);
    // reads happen on one thread (the worker's main thread, or the host's monitor thread).
    public let fd: FileDescriptor
    let writeLock = Mutex<Void>(())
    /// Largest frame accepted from the peer (a state handover is the largest message).
    public static let maxFrame = 64 << 20

    public init(fd: FileDescriptor) { self.fd = fd }

    // The socket goes with its channel (a restarted or replaced worker's old one included): a
    // channel owns its descriptor, and nobody else may close it.
    deinit { try? fd.close() }

    /// Sends one frame. Blocks while the socket buffer is full.
    public func send(_ type: WireType, _ payload: [UInt8] = []) throws(Errno) {
        var frame = WireWriter()
        frame.u32(UInt32(payload.count + 1))
        frame.u8(type.rawValue)
        frame.bytes.append(contentsOf: payload)
        try writeLock.withLock { (_) throws(Errno) in try Self.sendAll(fd.rawValue, frame.bytes) }
    }

    /// send(2) with MSG_NOSIGNAL: a peer that died (a crashed worker, a host gone) is an EPIPE
    /// error here, never a SIGPIPE that would end this process.
    static func sendAll(_ fd: CInt, _ bytes: [UInt8]) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno.current("send")
            }
            done += n
        }
    }

    public enum ReadError: Error, CustomStringConvertible {
        case closed
        case malformed(String)
        case system(Errno)
        public var description: String {
            switch self {
            case .closed: "the peer closed the connection"
            case .malformed(let why): "malformed frame: \(why)"
            case .system(let e): "\(e)"
            }
        }
    }

    /// Reads one whole frame (blocking).
    public func receive() throws(ReadError) -> (type: UInt8, payload: [UInt8]) {
        var header = [UInt8](repeating: 0, count: 5)
        try readExactly(&header)
        let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
        guard length >= 1, length <= Self.maxFrame else { throw .malformed("length \(length)") }
        var payload = [UInt8](repeating: 0, count: length - 1)
        try readExactly(&payload)
        return (header[4], payload)
    }

    func readExactly(_ buffer: inout [UInt8]) throws(ReadError) {
        var got = 0
        while got < buffer.count {
            let r = buffer.withUnsafeMutableBytes { raw -> Result<Int, Errno> in
                do throws(Errno) {
                    return .success(try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[got...])))
                } catch {
                    return .failure(error)
                }
            }
            let n: Int
            switch r {
            case .success(let k): n = k
            case .failure(let e) where e.code == EINTR: continue
            case .failure(let e): throw .system(e)
            }
            if n == 0 { throw .closed }
            got += n
        }
    }
}
