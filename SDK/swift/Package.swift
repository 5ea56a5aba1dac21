// swift-tools-version:6.0
//
// The Swift plugin SDK as a package of its own, for plugins built outside the Plugboard repository:
// PlugboardSDK (Sources/PlugboardSDK of the repository) over the C ABI header (SDK/include), with no
// other dependency. The directories under Sources/ are links into the repository, so this package is
// the same code the host's tests build. A plugin depends on it by path (docs/plugin-guide.md):
//
//     .package(name: "PlugboardSDK", path: "/path/to/plugboard/SDK/swift"),
//     ... dependencies: [.product(name: "PlugboardSDK", package: "PlugboardSDK")]
//
// Build the plugin with the same Swift toolchain as the `plugboard` that loads it: the plugin and the
// host share one Swift runtime in one process.
import PackageDescription

let package = Package(
    name: "PlugboardSDK",
    products: [
        .library(name: "PlugboardSDK", targets: ["PlugboardSDK"]),
    ],
    targets: [
        .target(name: "CPlugboard"),
        .target(name: "PlugboardSDK", dependencies: ["CPlugboard"]),
    ]
)
