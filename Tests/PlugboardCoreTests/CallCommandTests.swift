import Foundation
import Testing

/// `plugboard call`: a plugin's [exports] called through libffi (the real binary, a real .so,
/// a real packed manifest).
@Suite("plugboard call (libffi)")
struct CallCommandTests {
    var plugboard: String { "\(TestSupport.productsDir)/plugboard" }

    /// The test plugin and its packed manifest in a fresh directory.
    private func packed() throws -> String {
        let dir = try TestSupport.pluginDir([(TestSupport.plugin("pbtest-exports"), "libexports.so")])
        try FileManager.default.copyItem(atPath: "\(TestSupport.packageRoot)/Tests/TestPlugins/exports/plugin.toml.txt",
                                         toPath: "\(dir)/plugin.toml")
        let r = try TestSupport.run(plugboard, ["pack", "\(dir)/plugin.toml"])
        guard r.status == 0 else { throw TestFailure("pack failed: \(r.output)") }
        return "\(dir)/exports.pbm"
    }

    @Test("numbers, bools, floats and strings go in and come back as the C function returns them", arguments: [
        (["pbtest_add", "2", "40"], "42"),
        (["pbtest_mean3", "1", "2", "4.5"], "2.5"),
        (["pbtest_greet", "Ada Lovelace"], "hello, Ada Lovelace"),
        (["pbtest_shift", "1", "40"], "1099511627776"),
        (["pbtest_negate8", "5"], "-5"),
        (["pbtest_negate8", "-128"], "-128"),
        (["pbtest_is_even", "10"], "true"),
        (["pbtest_is_even", "-7"], "false"),
        (["pbtest_half", "3"], "1.5"),
        (["pbtest_touch"], ""),
    ])
    func calls(arguments: [String], result: String) throws {
        let manifest = try packed()
        let r = try TestSupport.run(plugboard, ["call", manifest] + arguments)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output == result + "\n", "\(r.output)")
    }

    @Test("what cannot be called is refused with the export, the reason and the fix", arguments: [
        (["pbtest_add", "1"], "pbtest_add takes 2 argument(s) (int32_t, int32_t), got 1"),
        (["pbtest_add", "x", "2"], "argument 1 of pbtest_add (int32_t): \"x\" is not an integer"),
        (["pbtest_add", "3000000000", "1"], "\"3000000000\" is out of range for 32 bits"),
        (["pbtest_shift", "-1", "2"], "\"-1\" is not a non-negative integer"),
        (["pbtest_is_even", "maybe"], "\"maybe\" is not an integer"),
        (["pbtest_fill", "1"], "exports.pbtest_fill: parameter 1 has type 'pb_event *e', which cannot be built from text (fix: export a wrapper"),
        (["pbtest_missing"], "exports.pbtest_missing: the library does not export it"),
        (["pbtest_ad", "1", "2"], "exports.pbtest_ad: not declared in [exports] (did you mean \"pbtest_add\"?)"),
    ])
    func refused(arguments: [String], message: String) throws {
        let manifest = try packed()
        let r = try TestSupport.run(plugboard, ["call", manifest] + arguments)
        #expect(r.status != 0)
        #expect(r.output.contains(message), "\(r.output)")
    }
}

