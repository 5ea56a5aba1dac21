import CPlugboard
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// Finds plugin files and opens them: ELF check, `dlopen(RTLD_NOW | RTLD_LOCAL)`,
/// entry point, version negotiation. `init` is left to the plugin's worker thread.
public enum PluginLoader {
    /// Every `*.so` file directly inside `directories`, sorted by path.
    /// - Throws: `PlugboardError` naming a directory that cannot be read.
    public static func discover(in directories: [String]) throws -> [String] {
        var found: [String] = []
        for dir in directories {
            let names: [String]
            do throws(Errno) {
                names = try FileSystem.entries(in: dir)
            } catch {
                throw PlugboardError(code: "plugins.dir", file: dir,
                                     reason: "cannot read plugin directory: \(error.reason)",
                                     fix: "create it, or correct the plugin directory's path")
            }
            for name in names {
                guard name.hasSuffix(".so"), !name.hasPrefix(".") else { continue }
                let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
                if (try? FileStatus.of(path: path))?.isRegularFile == true { found.append(path) }
            }
        }
        return found.sorted()
    }

    /// `pb_plugin_entry(const pb_negotiate_in *, pb_negotiate_out *)` as the Itanium C++ ABI
    /// mangles it (g++ and clang++): what a C++ plugin exports when its entry point lacks C linkage.
    static let mangledEntrySymbol = ELFImage.mangledEntrySymbol

    /// Opens and negotiates one plugin. The ELF headers are checked first (`ELFImage.inspect`): a
    /// truncated or malformed file, or one without the entry point, never reaches `dlopen`.
    /// - Throws: `PluginLoadError` naming the file and the cause.
    public static func open(_ path: String) throws(PluginLoadError) -> LoadedPlugin {
        let image = try ELFImage.inspect(path: path)
        let library: DynamicLibrary
        do throws(DynamicLinkError) {
            library = try DynamicLibrary.open(path, [.now, .local])
        } catch {
            if let symbol = error.undefinedSymbol {
                throw PluginLoadError(file: path, kind: .unresolvedSymbol(symbol: symbol, dlerror: error.message))
            }
            throw PluginLoadError(file: path, kind: .openFailed(dlerror: error.message))
        }
        func fail(_ kind: PluginLoadError.Kind) -> PluginLoadError {
            if !image.containsSwift { try? library.close() }
            return PluginLoadError(file: path, kind: kind)
        }
        guard let sym = try? library.symbol(PB_ENTRY_SYMBOL) else {
            if (try? library.symbol(mangledEntrySymbol)) != nil { throw fail(.mangledEntryPoint(symbol: mangledEntrySymbol)) }
            throw fail(.noEntryPoint)
        }
        let entry = unsafeBitCast(sym, to: pb_entry_fn.self)
        var input = pb_negotiate_in(size: UInt32(MemoryLayout<pb_negotiate_in>.size),
                                    host_major: UInt16(PB_ABI_MAJOR), host_minor: UInt16(PB_ABI_MINOR),
                                    host_api: UnsafePointer(HostAPI.table))
        var output = pb_negotiate_out(size: UInt32(MemoryLayout<pb_negotiate_out>.size), plugin_major: 0,
                                      plugin_minor: 0, plugin_api: nil)
        let status = entry(&input, &output)
        guard status == PB_OK else {
            if status == PB_ERR_ABI, output.plugin_major != 0, output.plugin_major != UInt16(PB_ABI_MAJOR) {
                throw fail(.abiMismatch(pluginMajor: output.plugin_major, pluginMinor: output.plugin_minor))
            }
            throw fail(.negotiationRefused(status: status))
        }
        guard output.plugin_major == UInt16(PB_ABI_MAJOR), output.plugin_minor <= UInt16(PB_ABI_MINOR) else {
            throw fail(.abiMismatch(pluginMajor: output.plugin_major, pluginMinor: output.plugin_minor))
        }
        guard let api = output.plugin_api else { throw fail(.invalidTable(reason: "plugin_api is NULL")) }
        let minimum = MemoryLayout<pb_plugin_api>.offset(of: \pb_plugin_api.shutdown)! + MemoryLayout<UnsafeRawPointer>.size
        guard Int(api.pointee.size) >= minimum else {
            throw fail(.invalidTable(reason: "size \(api.pointee.size) is smaller than the ABI 1.0 table (\(minimum) bytes)"))
        }
        guard api.pointee.events != nil else { throw fail(.invalidTable(reason: "the events callback is NULL")) }
        let name = api.pointee.name.map { String(cString: $0) } ?? ""
        guard !name.isEmpty else { throw fail(.invalidTable(reason: "name is NULL or empty")) }
        let version = api.pointee.version.map { String(cString: $0) } ?? "0.0.0"
        return LoadedPlugin(path: path, image: image, library: library, api: api, abiMinor: output.plugin_minor,
                            name: name, version: version)
    }
}
