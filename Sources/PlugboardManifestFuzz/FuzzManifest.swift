import CPlugboard
import PlugboardManifest

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry point for the `.pbm` reader. Properties checked on every input:
/// 1. `PBMReader.decode` returns or throws a `ManifestError`; it never traps or reads out of bounds
///    (built with `--sanitize=fuzzer`; add `--sanitize=address` to catch stray reads too);
/// 2. whatever decodes re-encodes to bytes that decode to the same manifest;
/// 3. its rules compile into a `MatchIndex` that answers a query.
///
/// `make fuzz` builds this with `swift build --sanitize=fuzzer -Xswiftc -DPLUGBOARD_FUZZ` (libFuzzer
/// supplies `main`). A normal build gets the `main` below instead: it replays files given as arguments
/// (crash reproducers, the corpus), so the target always links.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    checkOne(raw)
    // libFuzzer cannot forge a CRC, so most mutations die at the checksum. Run a second copy with the
    // length and checksum fields repaired, which takes the mutation into the section parser.
    if size >= PBMFormat.headerSize && size <= PBMFormat.maxFileSize {
        var copy = Array(raw)
        copy.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(size).littleEndian, toByteOffset: 8, as: UInt32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(b), skippingFieldAt: PBMFormat.checksumOffset)
            b.storeBytes(of: crc.littleEndian, toByteOffset: PBMFormat.checksumOffset, as: UInt32.self)
        }
        copy.withUnsafeBytes { checkOne($0) }
    }
    return 0
}

func checkOne(_ raw: UnsafeRawBufferPointer) {
    let manifest: Manifest
    do {
        manifest = try PBMReader.decode(raw, file: "fuzz-input")
    } catch {
        guard error is ManifestError else { fatalError("reader threw a non-ManifestError: \(error)") }
        return
    }
    let again = PBMWriter.encode(manifest)
    guard let back = try? PBMReader.decode(again, file: "re-encoded"), back == manifest else {
        fatalError("round trip failed for a manifest the reader accepted")
    }
    let index = MatchIndex(plugins: [manifest.rules])
    var event = pb_event()
    event.size = UInt32(MemoryLayout<pb_event>.size)
    event.total_size = event.size
    event.action = UInt16(PB_ACTION_ADD)
    event.vendor_id = manifest.rules.first?.vendor?.lowerBound ?? 0
    event.product_id = manifest.rules.first?.product?.upperBound ?? 0
    _ = withUnsafePointer(to: &event) { index.firstMatch(plugin: 0, event: $0) }
}

#if !PLUGBOARD_FUZZ
@main
struct ReplayMain {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        if args.isEmpty {
            print("usage: plugboard-manifest-fuzz FILE... (replays inputs; `make fuzz` builds the libFuzzer binary)")
            return
        }
        for path in args {
            guard let map = try? MappedFile(path: path, check: .format, field: "file") else {
                print("cannot read \(path)")
                exit(1)
            }
            checkOne(map.bytes)
            print("ok \(path) (\(map.count) bytes)")
        }
    }
}
#endif
