import ArgumentParser

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
