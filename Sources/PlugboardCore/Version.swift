import CPlugboard

/// Versions reported by `plugboard --version`.
public enum PlugboardCoreVersion {
    /// The host's own version.
    public static let string = "0.1.0"
    /// The plugin ABI this host speaks, from SDK/include/plugboard.h.
    public static let abi = "\(PB_ABI_MAJOR).\(PB_ABI_MINOR)"
}
