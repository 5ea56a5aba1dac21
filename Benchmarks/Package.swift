// swift-tools-version:6.1
//
// Plugboard's benchmarks (ordo-one package-benchmark). Run from the repository root with
// `make bench`, or here with `swift package benchmark`. Each suite measures a baseline in
// the same run (raw dlopen, memcpy...) so that figures are read as ratios on noisy machines.
import PackageDescription

let package = Package(
    name: "PlugboardBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Plugboard", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "RingBenchmarks",
            dependencies: [
                .product(name: "PlugboardCore", package: "Plugboard"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Ring",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "PluginLoadBenchmarks",
            dependencies: [
                .product(name: "PlugboardCore", package: "Plugboard"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/PluginLoad",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "ManifestBenchmarks",
            dependencies: [
                .product(name: "PlugboardManifest", package: "Plugboard"),
                .product(name: "PlugboardManifestTools", package: "Plugboard"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Manifests",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
