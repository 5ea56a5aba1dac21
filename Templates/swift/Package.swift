// swift-tools-version:6.0
//
// {{name}}: a Plugboard plugin in Swift (made by `plugboard new --language swift`).
// `make` builds lib{{name}}.so with `swift build` and packs its manifest.
//
// The SDK dependency is a path dependency on the Swift SDK package of a Plugboard checkout or
// installation (SDK/swift: PlugboardSDK and the C header, no other dependency). Moved the SDK?
// Change the path below. Build with the same Swift toolchain as the `plugboard` that loads the
// plugin: plugin and host share one Swift runtime in one process.
import PackageDescription

let package = Package(
    name: "{{name}}",
    products: [
        .library(name: "{{name}}", type: .dynamic, targets: ["Plugin"]),
    ],
    dependencies: [
        .package(name: "PlugboardSDK", path: "{{sdk_swift}}"),
    ],
    targets: [
        .target(name: "Plugin", dependencies: [.product(name: "PlugboardSDK", package: "PlugboardSDK")]),
    ]
)
