import Foundation

/// Where the package's source tree and build products are, for tests that use the real thing
/// (the built `plugboard` executable and plugin `.so` files, files of the source tree).
/// The one place test targets find them; each target's helpers build on it.
public enum PackagePaths {
    /// The package root: the nearest directory above this file that holds Package.swift.
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    /// The build products directory (`.build/<triple>/<configuration>`): where `swift build` puts
    /// `plugboard` and the plugin `.so` files, and where `swift test` runs the test binary from
    /// (inside a `.xctest` bundle on some layouts: then the directory above it).
    public static let products: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while dir.path.contains(".xctest"), dir.path != "/" { dir.deleteLastPathComponent() }
        return dir.path
    }()

    /// A build product by file name: `product("plugboard")`. It may not exist (not built).
    public static func product(_ name: String) -> String { products + "/" + name }

    /// A plugin library product: `plugin("usb-logger")` is `<products>/libusb-logger.so`.
    public static func plugin(_ name: String) -> String { product("lib\(name).so") }
}
