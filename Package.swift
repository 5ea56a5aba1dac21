// swift-tools-version:6.1
//
// Plugboard: a Swift plugin SDK and host runtime for Linux USB device events.
// Layout (see docs/architecture.md): C modules are prefixed `C`; each Swift
// module holds one idea; plugins are C dynamic libraries built from SamplePlugins/.
import PackageDescription

/// A plugin written in C against SDK/include/plugboard.h, built as `lib<name>.so`.
func plugin(_ name: String, target: String, path: String) -> (Product, Target) {
    (
        .library(name: name, type: .dynamic, targets: [target]),
        .target(name: target, dependencies: ["CPlugboard"], path: path,
                cSettings: [.unsafeFlags(["-fvisibility=hidden"])])
    )
}

let plugins = [
    plugin("usb-logger", target: "UsbLogger", path: "SamplePlugins/usb-logger"),
    plugin("device-counter", target: "DeviceCounter", path: "SamplePlugins/device-counter"),
    // Test-only plugins for the loader's failure cases and for tests that read what a plugin saw.
    plugin("pbtest-wrong-abi", target: "PBTestWrongABI", path: "Tests/TestPlugins/wrong-abi"),
    plugin("pbtest-no-entry", target: "PBTestNoEntry", path: "Tests/TestPlugins/no-entry"),
    plugin("pbtest-init-fails", target: "PBTestInitFails", path: "Tests/TestPlugins/init-fails"),
    plugin("pbtest-unresolved", target: "PBTestUnresolved", path: "Tests/TestPlugins/unresolved"),
    plugin("pbtest-recorder", target: "PBTestRecorder", path: "Tests/TestPlugins/recorder"),
    plugin("pbtest-slow", target: "PBTestSlow", path: "Tests/TestPlugins/slow"),
]

let package = Package(
    name: "Plugboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "plugboard", targets: ["plugboard"]),
        .library(name: "PlugboardCore", targets: ["PlugboardCore"]),
        .library(name: "PlugboardManifest", targets: ["PlugboardManifest"]),
        .library(name: "PlugboardManifestTools", targets: ["PlugboardManifestTools"]),
        // libFuzzer target for the .pbm reader: `make fuzz` builds it with `--sanitize=fuzzer`.
        .executable(name: "plugboard-manifest-fuzz", targets: ["PlugboardManifestFuzz"]),
        // Release-mode figures for docs/benchmarks.md `## Manifests` (`make bench-manifests`).
        .executable(name: "plugboard-manifest-bench", targets: ["PlugboardManifestBench"]),
    ] + plugins.map(\.0),
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // The plugin ABI: SDK/include/plugboard.h is the single source of truth, imported here.
        .target(name: "CPlugboard", path: "SDK", sources: ["src"], publicHeadersPath: "include"),
        // C helpers Swift cannot express: futex, sealed memfd, atomics on shared memory.
        .target(name: "CPlugboardSupport"),
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),

        // The core runtime: event ring, loader, workers, host API, replay/synthetic sources.
        .target(name: "PlugboardCore", dependencies: [
            "CPlugboard", "CPlugboardSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "plugboard", dependencies: [
            "PlugboardCore", "PlugboardManifest", "PlugboardManifestTools",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Manifests: the .pbm format (reader/writer), match index, registry cache, dependency order,
        // plugin catalog. Dependency-free (only the ABI header) so the fuzz target links just this.
        .target(name: "PlugboardManifest", dependencies: ["CPlugboard"]),
        // plugin.toml -> Manifest (TOMLKit) and the packer; kept out of PlugboardManifest for the fuzz build.
        .target(name: "PlugboardManifestTools", dependencies: [
            "PlugboardManifest",
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        .executableTarget(name: "PlugboardManifestFuzz", dependencies: ["PlugboardManifest"]),
        .executableTarget(name: "PlugboardManifestBench", dependencies: ["PlugboardManifest", "PlugboardManifestTools", "CPlugboard"]),
        .testTarget(name: "PlugboardManifestTests",
                    dependencies: ["PlugboardManifest", "PlugboardManifestTools", "CPlugboard"],
                    resources: [.copy("Fixtures"), .copy("FuzzCorpus")]),

        .testTarget(name: "PlugboardCoreTests", dependencies: ["PlugboardCore", "CPlugboard", "CPlugboardSupport"]),
    ] + plugins.map(\.1)
)
