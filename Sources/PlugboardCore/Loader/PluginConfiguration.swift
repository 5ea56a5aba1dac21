/// A plugin's configuration: key/value pairs in the order they reach `init` as
/// `pb_config.entries` (docs/manifest.md: "in file order").
///
/// A dictionary would lose that order, so every layer (manifest, overrides, runtime
/// options, the context that builds `pb_config`) passes this instead. Keys are unique:
/// setting an existing key replaces its value in place; a new key is appended.
public struct PluginConfiguration: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral,
    CustomStringConvertible
{
    public typealias Entry = (key: String, value: String)

    /// The entries, in order.
    public private(set) var entries: [Entry] = []

    public init() {}

    /// The pairs in order; a repeated key replaces the earlier value where it stood.
    public init<S: Sequence>(_ pairs: S) where S.Element == Entry {
        for (k, v) in pairs { self[k] = v }
    }

    /// A literal keeps its written order (`["zeta": "1", "alpha": "2"]` stays zeta, alpha).
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements.map { (key: $0.0, value: $0.1) })
    }

    /// The value for `key`. Setting an existing key replaces its value in place; a new key
    /// is appended; `nil` removes the key.
    public subscript(key: String) -> String? {
        get { entries.first { $0.key == key }?.value }
        set {
            let i = entries.firstIndex { $0.key == key }
            switch (i, newValue) {
            case let (i?, v?): entries[i].value = v
            case let (nil, v?): entries.append((key: key, value: v))
            case let (i?, nil): entries.remove(at: i)
            case (nil, nil): break
            }
        }
    }

    /// This configuration with `overrides` applied in their order: existing keys keep
    /// their place, new keys follow.
    public func overridden(by overrides: PluginConfiguration) -> PluginConfiguration {
        var c = self
        for (k, v) in overrides.entries { c[k] = v }
        return c
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map(\.key) }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }

    public static func == (a: PluginConfiguration, b: PluginConfiguration) -> Bool {
        a.entries.elementsEqual(b.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    public var description: String {
        "[" + entries.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "]"
    }
}
