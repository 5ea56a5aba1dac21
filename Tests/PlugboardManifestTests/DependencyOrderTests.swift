import PlugboardManifest
import Synchronization
import Testing

@Suite("Dependency order")
struct DependencyOrderTests {
    @Test("independent plugins share a level; dependents come in later levels")
    func levels() {
        let plan = DependencyOrder.plan([
            ("logger", []), ("counter", []), ("alerts", ["logger", "counter"]), ("report", ["alerts"]), ("solo", []),
        ])
        #expect(plan.levels == [["counter", "logger", "solo"], ["alerts"], ["report"]])
        #expect(plan.skipped.isEmpty)
    }

    @Test("a cycle is an error naming the cycle, for each member and for their dependents")
    func cycle() throws {
        let plan = DependencyOrder.plan([("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", ["a"]), ("ok", [])],
                                        files: ["a": "/p/a.pbm"])
        #expect(plan.levels == [["ok"]])
        let a = try #require(plan.skipped["a"])
        #expect(a.check == .dependency)
        #expect(a.problem == "dependency cycle: a -> c -> b -> a")
        #expect(a.file == "/p/a.pbm")
        #expect(a.field == "plugin.after")
        #expect(plan.skipped["b"]?.problem == a.problem && plan.skipped["c"]?.problem == a.problem)
        #expect(plan.skipped["d"]?.problem.contains("dependency \"a\" cannot start (dependency cycle: a -> c -> b -> a)") == true)
    }

    @Test("a plugin that lists itself is a one-member cycle")
    func selfCycle() {
        let plan = DependencyOrder.plan([("a", ["a"])])
        #expect(plan.skipped["a"]?.problem == "dependency cycle: a -> a")
    }

    @Test("a missing dependency skips the plugin and its dependents, naming the missing one")
    func missing() throws {
        let plan = DependencyOrder.plan([("a", ["ghost"]), ("b", ["a"]), ("c", [])])
        let a = try #require(plan.skipped["a"])
        #expect(a.problem.contains("needs \"ghost\", which is not installed"))
        #expect(a.fix.contains("install and pack \"ghost\""))
        #expect(plan.skipped["b"]?.problem.contains("dependency \"a\" cannot start") == true)
        #expect(plan.levels == [["c"]])
    }

    @Test("init runs in dependency order; a failed init skips its dependents with the reason")
    func runSkipsDependentsOfFailure() async throws {
        let plan = DependencyOrder.plan([("base", []), ("mid", ["base"]), ("top", ["mid"]), ("other", [])])
        let order = Mutex<[String]>([])
        struct InitFailed: Error, CustomStringConvertible { var description: String { "init returned PB_ERR_CONFIG" } }
        let outcomes = await DependencyOrder.run(plan, dependencies: ["mid": ["base"], "top": ["mid"]]) { name in
            order.withLock { $0.append(name) }
            if name == "mid" { throw InitFailed() }
        }
        #expect(outcomes["base"] == .initialised)
        #expect(outcomes["other"] == .initialised)
        #expect(outcomes["mid"] == .failed("init returned PB_ERR_CONFIG"))
        guard case .skipped(let why)? = outcomes["top"] else { Issue.record("top was not skipped: \(String(describing: outcomes["top"]))"); return }
        #expect(why.problem == "dependency \"mid\" failed to initialise: init returned PB_ERR_CONFIG")
        let seen = order.withLock { $0 }
        #expect(!seen.contains("top"))
        #expect(seen.firstIndex(of: "base")! < seen.firstIndex(of: "mid")!)
    }

    @Test("the plugins of one level initialise concurrently")
    func levelRunsInParallel() async {
        // Four independent plugins whose init waits until all four are inside init at once: this can
        // only finish if the level runs them concurrently (a serial runner would time out instead).
        let plan = DependencyOrder.plan([("a", []), ("b", []), ("c", []), ("d", [])])
        let inside = Atomic<Int>(0)
        let outcomes = await DependencyOrder.run(plan, dependencies: [:], maxConcurrent: 4) { _ in
            inside.add(1, ordering: .sequentiallyConsistent)
            let deadline = ContinuousClock.now + .seconds(10)
            while inside.load(ordering: .sequentiallyConsistent) < 4 {
                if ContinuousClock.now > deadline { throw CancellationError() }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        #expect(outcomes.values.allSatisfy { $0 == .initialised }, "\(outcomes)")
    }
}
