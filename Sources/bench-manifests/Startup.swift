// `plugboard-bench-manifests --startup`: the whole process, start → exit, with 100 plugins and a
// warm registry (`plugboard run --source synthetic:1`), against the floor a user could not beat: a
// C program that `dlopen`s and `dlsym`s the same 100 files. Issue 16's row "whole process, 100
// plugins"; figures for docs/benchmarks.md, "Whole process start-up with 100 plugins".
//
// Measured in one run, round-robin (each round runs every command once, so all see the same
// load), medians:
//   - `plugboard --version`: the binary's own start (dynamic linking, the Swift runtime);
//   - `plugboard run` with no plugins, and with 100 in thread isolation, in process isolation (the
//     default: copies of the fork server) and in process isolation with `plugins.fork_server=false`;
//   - the C floor with 0 and with the 100 files.
// Per extra plugin = (run with 100 − run with 0) / 100, against (floor with 100 − floor with 0) / 100.
import Foundation

func startupBenchmark(plugins count: Int, iterations: Int) throws {
    let (plugboard, root) = builtDaemon(target: "bench-startup")
    umask(0o022)
    let work = "/tmp/plugboard-bench-startup-\(getpid())"
    let dir = work + "/plugins", empty = work + "/none"
    for d in [dir, empty] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    defer { try? FileManager.default.removeItem(atPath: work) }
    try makeBenchPlugins(count: count, into: dir, work: work, root: root, prefix: "start", signedWith: nil)
    let libraries = (0..<count).map { "\(dir)/libstart\($0).so" }

    // The floor: dlopen (RTLD_NOW | RTLD_LOCAL, as the loader) + dlsym of the entry point, per file.
    let floorSource = """
        #include <dlfcn.h>
        #include <stdio.h>
        int main(int argc, char **argv) {
            for (int i = 1; i < argc; i++) {
                void *h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
                if (!h || !dlsym(h, "pb_plugin_entry")) { fprintf(stderr, "%s\\n", dlerror()); return 1; }
            }
            return 0;
        }
        """
    try floorSource.write(toFile: work + "/floor.c", atomically: true, encoding: .utf8)
    let cc = Process()
    cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
    cc.arguments = ["-O2", "-o", work + "/floor", work + "/floor.c"]
    try cc.run()
    cc.waitUntilExit()
    precondition(cc.terminationStatus == 0, "cc failed for the floor program")

    let cache = work + "/registry.pbr"
    let user = String(cString: getpwuid(geteuid())!.pointee.pw_name)
    func time(_ path: String, _ arguments: [String], expect plugins: Int? = nil) -> Double {
        timeCommand(path, arguments, output: work + "/out.txt", expectPlugins: plugins)
    }
    func run(_ plugins: String, _ extra: [String]) -> [String] {
        ["run", "--plugins", plugins, "--source", "synthetic:1", "--registry-cache", cache, "--log-level", "error",
         "--set", "plugins.worker_user=\(user)"] + extra
    }
    let commands: [(String, () -> Double)] = [
        ("`plugboard --version`", { time(plugboard, ["--version"]) }),
        ("C floor, no file", { time(work + "/floor", []) }),
        ("C floor, dlopen + dlsym of the \(count) files", { time(work + "/floor", libraries) }),
        ("`plugboard run`, no plugins", { time(plugboard, run(empty, []), expect: 0) }),
        ("`plugboard run`, \(count) plugins, thread isolation", { time(plugboard, run(dir, ["--set", "plugins.isolation=thread"]), expect: count) }),
        ("`plugboard run`, \(count) plugins, process isolation (fork server, the default)", { time(plugboard, run(dir, ["--set", "plugins.isolation=process"]), expect: count) }),
        ("`plugboard run`, \(count) plugins, process isolation, `plugins.fork_server=false`", { time(plugboard, run(dir, ["--set", "plugins.isolation=process", "--set", "plugins.fork_server=false"]), expect: count) }),
    ]
    for (_, c) in commands { _ = c() }  // warm the registry cache and the page cache
    var samples = [[Double]](repeating: [], count: commands.count)
    for _ in 0..<iterations {
        for (i, (_, c)) in commands.enumerated() { samples[i].append(c()) }
    }
    let m = samples.map { percentile($0, 0.5) }
    print("## whole process start → exit, \(count) plugins, warm registry cache (\(iterations) rounds, round-robin, medians)\n")
    print("| command | median ms | p90 ms |")
    print("|---|---:|---:|")
    for (i, (label, _)) in commands.enumerated() { print("| \(label) | \(fmt(m[i], 2)) | \(fmt(percentile(samples[i], 0.9), 2)) |") }
    let floorPer = (m[2] - m[1]) / Double(count) * 1000
    print("\nfloor per file (dlopen + dlsym): \(fmt(floorPer, 1)) µs")
    for (i, mode) in [(4, "thread"), (5, "process (fork server)"), (6, "process (posix_spawn)")] {
        let per = (m[i] - m[3]) / Double(count) * 1000
        print("\(mode): whole \(fmt(m[i], 2)) ms = \(fmt(m[i] / m[2], 2))x the floor (goal <= 2x); "
              + "per extra plugin \(fmt(per, 1)) µs = \(fmt(per / floorPer, 2))x dlopen (goal <= 1.5x)")
    }
}

/// `plugboard-bench-manifests --scaling`: issue 16's row "synthetic source, time per event per
/// plugin, 16 → 64 plugins" through the whole daemon (`plugboard run --source synthetic:E`, default
/// settings, flow control: nothing lost), 1, 16 and 64 plugins, thread and process isolation. The
/// figure: (run with N plugins − run with none) / (E × N); the baseline is the 1-plugin figure of
/// the same run. Round-robin, medians.
func daemonScalingBenchmark(events: Int, iterations: Int) throws {
    let (plugboard, root) = builtDaemon(target: "bench-scaling")
    umask(0o022)
    let work = "/tmp/plugboard-bench-scaling-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: work) }
    let counts = [0, 1, 16, 64]
    for n in counts {
        try FileManager.default.createDirectory(atPath: "\(work)/p\(n)", withIntermediateDirectories: true)
        try makeBenchPlugins(count: n, into: "\(work)/p\(n)", work: "\(work)/build\(n)", root: root, prefix: "start", signedWith: nil)
    }
    let user = String(cString: getpwuid(geteuid())!.pointee.pw_name)
    func run(_ n: Int, _ isolation: String) -> Double {
        let args = ["run", "--plugins", "\(work)/p\(n)", "--source", "synthetic:\(events)", "--registry-cache", "\(work)/registry\(n).pbr",
                    "--log-level", "error", "--set", "plugins.isolation=\(isolation)", "--set", "plugins.worker_user=\(user)"]
        return timeCommand(plugboard, args, output: work + "/out.txt", expectPlugins: n)
    }
    var samples: [String: [Double]] = [:]
    for isolation in ["thread", "process"] { for n in counts { _ = run(n, isolation) } }  // warm caches
    for _ in 0..<iterations {
        for isolation in ["thread", "process"] {
            for n in counts { samples["\(isolation)\(n)", default: []].append(run(n, isolation)) }
        }
    }
    print("## time per event per plugin through `plugboard run --source synthetic:\(events)` (\(iterations) rounds, medians)\n")
    print("| plugins | thread: run ms | ns per event per plugin | × 1 plugin | process: run ms | ns per event per plugin | × 1 plugin |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    var base: [String: Double] = [:]
    for n in counts {
        var cells: [String] = []
        for isolation in ["thread", "process"] {
            let ms = percentile(samples["\(isolation)\(n)"]!, 0.5), none = percentile(samples["\(isolation)0"]!, 0.5)
            guard n > 0 else { cells += [fmt(ms, 1), "—", "—"]; continue }
            let per = (ms - none) * 1e6 / Double(events * n)
            if n == 1 { base[isolation] = per }
            cells += [fmt(ms, 1), fmt(per, 1), fmt(per / base[isolation]!, 2)]
        }
        print("| \(n) | " + cells.joined(separator: " | ") + " |")
    }
}

/// Wall time of one command, start to exit, ms; it must exit 0 and, given `expectPlugins`, show
/// that many plugins (named `start…`) in `run`'s summary. `posix_spawn` and `waitpid` directly:
/// Foundation's `Process` added ~50 ms to every launch.
func timeCommand(_ path: String, _ arguments: [String], output: String, expectPlugins plugins: Int? = nil) -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let t = now()
    let r = posix_spawn(&pid, path, &actions, nil, argv, environ)
    precondition(r == 0, "posix_spawn \(path): \(r)")
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let ms = Double(now() - t) / 1e6
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    precondition(status == 0 && !text.contains("rejected"), "\(path) \(arguments) failed (\(status)): \(text.suffix(800))")
    if let plugins {
        // `run` prints a summary line per plugin ("NAME  stopped  EVENTS ..."): all ran.
        let ran = text.split(separator: "\n").filter { $0.hasPrefix("start") && $0.contains(" stopped ") }.count
        precondition(ran == plugins, "expected \(plugins) plugins in the summary, found \(ran): \(text.suffix(800))")
    }
    return ms
}
