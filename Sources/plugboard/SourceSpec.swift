import ArgumentParser
import PlugboardCore

/// A `--source` value: `replay:FILE`, `synthetic:N` (and `udev` once that source is built).
enum SourceSpec: ExpressibleByArgument, Sendable, Equatable {
    case replay(path: String)
    case synthetic(count: UInt64)
    case udev

    init?(argument: String) {
        if argument == "udev" {
            self = .udev
        } else if argument.hasPrefix("replay:"), argument.count > 7 {
            self = .replay(path: String(argument.dropFirst(7)))
        } else if argument.hasPrefix("synthetic:"), let n = UInt64(argument.dropFirst(10)), n > 0 {
            self = .synthetic(count: n)
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { ["udev", "replay:FILE", "synthetic:N"] }
    static var defaultCompletionKind: CompletionKind { .default }
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
