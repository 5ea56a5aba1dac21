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

/// A plugin written in Swift with the Swift SDK (PlugboardSDK), built as `lib<name>.so`.
func swiftPlugin(_ name: String, target: String, path: String, exclude: [String] = []) -> (Product, Target) {
    (
        .library(name: name, type: .dynamic, targets: [target]),
        .target(name: target, dependencies: ["PlugboardSDK"], path: path, exclude: exclude)
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
    // Notes callback-entry times for the udev latency figures (plugboard-demo-bed --measure).
    plugin("pbtest-latency-probe", target: "PBTestLatencyProbe", path: "Tests/TestPlugins/latency-probe"),
    plugin("pbtest-slow", target: "PBTestSlow", path: "Tests/TestPlugins/slow"),
    // Functions for `plugboard call` (libffi), declared in exports/plugin.toml.txt.
    plugin("pbtest-exports", target: "PBTestExports", path: "Tests/TestPlugins/exports"),
    // Deliberately bad plugins for the isolation tests: one bug chosen by [config] (crash, hang,
    // writes to shared memory, unload itself...; keys in misbehave.c), and one whose ELF
    // constructor ends the process that loads it.
    plugin("pbtest-misbehave", target: "PBTestMisbehave", path: "Tests/TestPlugins/misbehave"),
    plugin("pbtest-ctor-exit", target: "PBTestCtorExit", path: "Tests/TestPlugins/ctor-exit"),
    swiftPlugin("swift-counter", target: "SwiftCounter", path: "SamplePlugins/swift-counter", exclude: ["plugin.toml"]),
    // The Swift SDK's error paths (init refused, callbacks throwing).
    swiftPlugin("pbtest-swift-throws", target: "PBTestSwiftThrows", path: "Tests/TestPlugins/swift-throws"),
]

let package = Package(
    name: "Plugboard",
    products: [
        .executable(name: "plugboard", targets: ["plugboard"]),
        .library(name: "PlugboardCore", targets: ["PlugboardCore"]),
        .library(name: "PlugboardUdev", targets: ["PlugboardUdev"]),
        .executable(name: "plugboard-demo-bed", targets: ["plugboard-demo-bed"]),
        // A fleet of `plugboard run` hosts on a real Redis Cluster with a failover (make bench-fleet).
        .executable(name: "plugboard-fleet-bed", targets: ["plugboard-fleet-bed"]),
        // Runs one plugin in a process of its own (isolation = "process"); started by the host.
        .executable(name: "plugboard-worker", targets: ["plugboard-worker"]),
        .library(name: "PlugboardManifest", targets: ["PlugboardManifest"]),
        .library(name: "PlugboardManifestTools", targets: ["PlugboardManifestTools"]),
        .library(name: "PlugboardHost", targets: ["PlugboardHost"]),
        // libFuzzer target for the .pbm reader: `make fuzz` builds it with `--sanitize=fuzzer`.
        .executable(name: "plugboard-manifest-fuzz", targets: ["PlugboardManifestFuzz"]),
        // Benchmark tools (release builds, figures for docs/benchmarks.md): Sources/bench-<area>,
        // product plugboard-bench-<area>, run by `make bench-<area>`.
        .executable(name: "plugboard-bench-manifests", targets: ["bench-manifests"]),
        .executable(name: "plugboard-bench-redis", targets: ["bench-redis"]),
        .executable(name: "plugboard-bench-ops", targets: ["bench-ops"]),
        .executable(name: "plugboard-bench-isolation", targets: ["bench-isolation"]),
        .executable(name: "plugboard-bench-settle", targets: ["bench-settle"]),
        .executable(name: "plugboard-bench-batching", targets: ["bench-batching"]),
        .library(name: "PlugboardRedis", targets: ["PlugboardRedis"]),
        .library(name: "PlugboardSDK", targets: ["PlugboardSDK"]),
    ] + plugins.map(\.0),
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Daemon wiring (issue 6): config, lifecycle, HTTP, metrics.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // Already in the graph through Hummingbird; named for the HTTP request-deadline handler.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // Signed plugins (issue 12): Ed25519 over the .pbm (Curve25519.Signing).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // The plugin ABI: SDK/include/plugboard.h is the single source of truth, imported here.
        .target(name: "CPlugboard", path: "SDK", sources: ["src"], publicHeadersPath: "include"),
        // The Swift plugin SDK: PlugboardPlugin over the C ABI (docs/plugin-guide.md, "In Swift").
        .target(name: "PlugboardSDK", dependencies: ["CPlugboard"]),
        // Calling a plugin's [exports] through libffi (`plugboard call`).
        .target(name: "PlugboardFFI", dependencies: ["CFFI"]),
        // C helpers Swift cannot express: futex, sealed memfd, atomics on shared memory.
        .target(name: "CPlugboardSupport"),
        // The system layer: typed wrappers over the C calls (fds, errno, mmap/memfd, futex, inotify,
        // poll, dlopen); debug builds let tests replace each call (Internals/Syscalls.swift).
        .target(name: "PlugboardSystem", dependencies: ["CPlugboardSupport"],
                swiftSettings: [.define("ENABLE_MOCKING", .when(configuration: .debug))]),
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),
        // The system's OpenSSL (Debian's libssl3, patched by Debian security updates) for rediss://.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // The TLS bridge for rediss://: hiredis 0.14 (no TLS) on one end of a socketpair, a pump
        // thread carrying its bytes over an OpenSSL connection (docs/redis.md, "TLS").
        .target(name: "CPlugboardTLS", dependencies: ["COpenSSL"]),

        // The core runtime: event ring, loader, workers, host API, replay/synthetic sources.
        .target(name: "PlugboardCore", dependencies: [
            "CPlugboard", "CPlugboardSupport", "PlugboardSystem",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Replaying a recorded session (JSON Lines): the one part of the runtime that needs Foundation
        // (its JSON parser); kept out of PlugboardCore so the worker process does not load Foundation.
        .target(name: "PlugboardReplay", dependencies: ["PlugboardCore", "CPlugboard", "PlugboardSystem"]),

        // The udev source: libudev monitor + enumeration, overflow resync, kernel-group fallback.
        .target(name: "PlugboardUdev", dependencies: [
            "CUdev", "PlugboardCore", "CPlugboard", "CPlugboardSupport", "PlugboardSystem",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // umockdev (tests and `make demo` only; never linked into `plugboard`).
        .systemLibrary(name: "CUmockdev", pkgConfig: "umockdev-1.0", providers: [.apt(["libumockdev-dev"])]),
        // A simulated USB bus on umockdev: shared by the udev tests and the demo bed.
        .target(name: "PlugboardTestbed", dependencies: ["CUmockdev"]),
        // `make demo`: plays a scripted hotplug session through a umockdev testbed into `plugboard run`.
        .executableTarget(name: "plugboard-demo-bed", dependencies: ["PlugboardTestbed"]),

        // Redis publishing (hiredis 0.14.1): pipelined XADD with explicit IDs, reconnect, spill; `plugboard tail`.
        .target(name: "PlugboardRedis", dependencies: [
            "CHiredis", "CPlugboardTLS", "CPlugboard", "PlugboardCore", "PlugboardSystem",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Publish-rate and latency benchmark against a real redis-server (Benchmarks/scripts/redis.sh).
        .executableTarget(name: "bench-redis", dependencies: ["PlugboardRedis", "CPlugboard"]),
        // N `plugboard run` hosts, 6 redis-server cluster nodes, 3 `plugboard tail` consumers; kills a
        // master and a consumer mid-run and checks that nothing was lost (FleetBedTests, make bench-fleet).
        .executableTarget(name: "plugboard-fleet-bed", dependencies: ["PlugboardRedis"]),
        // Process mode against thread mode: ring throughput, latency, start-up, publish (make bench-isolation).
        .executableTarget(name: "bench-isolation", dependencies: ["PlugboardCore", "PlugboardSystem",
                                                                  .product(name: "Logging", package: "swift-log")]),
        // The settle window's cost per event against plugins without one, same run (make bench-settle).
        .executableTarget(name: "bench-settle", dependencies: ["PlugboardCore", "CPlugboard", "CPlugboardSupport",
                                                               .product(name: "Logging", package: "swift-log")]),
        // Adaptive batching against fixed batch sizes: idle latency and burst throughput (make bench-batching).
        .executableTarget(name: "bench-batching", dependencies: ["PlugboardCore", "PlugboardSystem", "CPlugboard", "CPlugboardSupport",
                                                                 .product(name: "Logging", package: "swift-log")]),

        // The one host of run, serve and monitor: configuration -> settings, plugin discovery
        // (manifests), the source, the sinks (Redis), start, the shutdown coordinator and signals.
        .target(name: "PlugboardHost", dependencies: [
            "PlugboardCore", "CPlugboard", "PlugboardManifest", "PlugboardUdev", "PlugboardRedis", "PlugboardSystem", "PlugboardReplay",
            "PlugboardSigning",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        // The host as a service: service lifecycle, HTTP endpoints, metrics, systemd notify.
        .target(name: "PlugboardDaemon", dependencies: [
            "PlugboardCore", "PlugboardHost", "PlugboardSystem",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        ]),

        .executableTarget(name: "plugboard", dependencies: [
            "PlugboardCore", "PlugboardManifest", "PlugboardManifestTools", "PlugboardHost", "PlugboardReplay",
            "PlugboardUdev",
            "PlugboardRedis",
            "PlugboardDaemon",
            "PlugboardFFI",
            "PlugboardSystem",
            "PlugboardSigning",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // The worker process: one plugin, the ring mapped read-only, its host calls sent back.
        .executableTarget(name: "plugboard-worker", dependencies: [
            "PlugboardCore", "PlugboardManifest", "PlugboardSystem", "CPlugboard", "CPlugboardSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Manifests: the .pbm format (reader/writer), match index, registry cache, dependency order,
        // plugin catalog. Dependency-free (only the ABI header) so the fuzz target links just this.
        .target(name: "PlugboardManifest", dependencies: ["CPlugboard", "PlugboardSystem"]),
        // plugin.toml -> Manifest (TOMLKit) and the packer; kept out of PlugboardManifest for the fuzz build.
        .target(name: "PlugboardManifestTools", dependencies: [
            "PlugboardManifest", "PlugboardCore",
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        .executableTarget(name: "PlugboardManifestFuzz", dependencies: ["PlugboardManifest"]),
        // Plugin signatures: keys, the detached .pbm.sig file, the trusted-keys directory (swift-crypto).
        // Kept out of PlugboardManifest so the fuzz target and the worker do not link BoringSSL.
        .target(name: "PlugboardSigning", dependencies: [
            "PlugboardManifest", "PlugboardSystem",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "bench-manifests", dependencies: ["PlugboardManifest", "PlugboardManifestTools", "CPlugboard", "PlugboardSigning"]),
        // Where the package root and the build products are, for every test target (PackagePaths).
        .target(name: "PlugboardTestSupport", path: "Tests/PlugboardTestSupport"),
        .testTarget(name: "PlugboardManifestTests",
                    dependencies: ["PlugboardManifest", "PlugboardManifestTools", "CPlugboard", "PlugboardTestSupport",
                                   "PlugboardSigning", "PlugboardCore", "PlugboardSystem"],
                    resources: [.copy("Fixtures"), .copy("FuzzCorpus")]),

        .testTarget(name: "PlugboardSystemTests", dependencies: ["PlugboardSystem", "CPlugboardSupport"]),
        .testTarget(name: "PlugboardCoreTests", dependencies: ["PlugboardCore", "PlugboardReplay", "CPlugboard", "CPlugboardSupport", "PlugboardSystem",
                                                               "PlugboardTestSupport"]),
        .testTarget(name: "PlugboardUdevTests", dependencies: [
            "PlugboardUdev", "PlugboardCore", "PlugboardTestbed", "CPlugboard", "CUdev", "PlugboardTestSupport",
        ], exclude: ["Fixtures"]),
        .testTarget(name: "PlugboardRedisTests", dependencies: ["PlugboardRedis", "PlugboardCore", "CHiredis", "CPlugboard",
                                                                 "PlugboardTestSupport"]),
        // The operations figures in docs/benchmarks.md (`make bench-ops`).
        .executableTarget(name: "bench-ops", dependencies: ["PlugboardCore", "PlugboardDaemon",
                                                                   .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PlugboardDaemonTests", dependencies: ["PlugboardDaemon", "PlugboardHost", "PlugboardCore", "CPlugboard",
                                                                  "PlugboardSystem", "PlugboardTestSupport"]),
    ] + plugins.map(\.1)
)
