import ArgumentParser
import PlugboardCore
import PlugboardDaemon

/// `--source udev|replay:FILE|synthetic:N`: the same parser as the `source` configuration key.
extension SourceSpec: ExpressibleByArgument {
    public init?(argument: String) {
        guard case .success(let spec) = SourceSpec.parse(argument) else { return nil }
        self = spec
    }

    public static var allValueStrings: [String] { ["udev", "replay:FILE", "synthetic:N"] }
}

/// `--plugin-config NAME.KEY=VALUE` values.
struct PluginSetting: ExpressibleByArgument, Sendable {
    var plugin: String
    var key: String
    var value: String

    init?(argument: String) {
        guard let eq = argument.firstIndex(of: "="), let dot = argument[..<eq].firstIndex(of: ".") else { return nil }
        plugin = String(argument[..<dot])
        key = String(argument[argument.index(after: dot)..<eq])
        value = String(argument[argument.index(after: eq)...])
        guard !plugin.isEmpty, !key.isEmpty else { return nil }
    }
}
