import Benchmark
import Foundation
import Logging
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// Builds SDK/examples/minimal_plugin.c with the system C compiler: a pure C image, so both
/// the raw baseline and Plugboard's loader really unload and reload it every iteration.
func buildMinimalPlugin() -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("pb-bench-libminimal.so").path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
    p.arguments = ["-std=c99", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-I", root.path + "/SDK/include",
                   root.path + "/SDK/examples/minimal_plugin.c", "-o", out]
    try! p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "cc failed to build the minimal plugin")
    return out
}

let benchmarks: @Sendable () -> Void = {
    let path = buildMinimalPlugin()
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .microseconds,
        maxDuration: .seconds(10),
        maxIterations: 5000
    )
    Benchmark("Baseline: raw dlopen+dlsym+dlclose", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            let h = dlopen(path, RTLD_NOW | RTLD_LOCAL)!
            blackHole(dlsym(h, "pb_plugin_entry"))
            dlclose(h)
        }
    }
    let queue = OutputQueue()
    let table = DeviceTable()
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    Benchmark("Plugboard load: ELF check+dlopen+negotiate+init+shutdown+dlclose", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            let plugin = try PluginLoader.open(path)
            let context = PluginContext(name: plugin.name, configuration: [:], outputQueue: queue,
                                        deviceTable: table, logger: logger)
            try plugin.initialize(context: context)
            plugin.shutdown()
            plugin.unload()
        }
        blackHole(queue.drain())
    }
}
