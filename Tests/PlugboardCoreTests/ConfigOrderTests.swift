import Foundation
import PlugboardCore
import Testing

@Suite("Plugin configuration order")
struct ConfigOrderTests {
    @Test("pb_config reaches init in the order the runtime was given, not sorted by key")
    func runtimeKeepsConfigurationOrder() throws {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-recorder"), "librecorder.so")])
        let out = "\(dir)/recorder.out"
        let config: PluginConfiguration = ["zeta": "z", "output": out, "alpha": "a", "dump_config": "1", "mid": "m"]
        _ = try TestSupport.runToEnd(pluginDirs: [dir], source: SyntheticSource(count: 1), config: ["recorder": config])
        let got = TestSupport.lines(out).filter { $0.hasPrefix("CONFIG ") }
        #expect(got == ["CONFIG zeta=z", "CONFIG output=\(out)", "CONFIG alpha=a", "CONFIG dump_config=1", "CONFIG mid=m"])
    }

    @Test("an override replaces a key in place; new keys are appended in the order given")
    func overridesKeepPlaceAndAppend() {
        let base: PluginConfiguration = ["zeta": "z", "alpha": "a", "mid": "m"]
        let merged = base.overridden(by: ["mid": "M", "new": "n", "beta": "b", "zeta": "Z"])
        #expect(merged.entries.map(\.key) == ["zeta", "alpha", "mid", "new", "beta"])
        #expect(merged["zeta"] == "Z" && merged["mid"] == "M" && merged["beta"] == "b")
        var removed = merged
        removed["alpha"] = nil
        #expect(removed.keys == ["zeta", "mid", "new", "beta"])
    }
}
