import ArgumentParser
import Foundation
import Logging
import PlugboardCore
import PlugboardHost

/// The options `run`, `serve` and `monitor` share: where the configuration comes from and the
/// flags every one of them understands. Each command adds its own flags as `ConfigOverride`s, so
/// one loader, one set of defaults (`ConfigSchema`) and one mapping (`HostSettings`) serve all three.
struct HostOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Configuration file (default: $PLUGBOARD_CONFIG, else /etc/plugboard/plugboard.toml, else ./plugboard.toml).",
                               valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override any configuration key (repeatable).", valueName: "KEY=VALUE"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Event source (key `source`): udev (live USB devices), replay:FILE or synthetic:N.", valueName: "SOURCE"))
    var source: String?

    @Option(name: .customLong("plugins"), help: ArgumentHelp("A plugin directory (key `plugins.dirs`; repeatable).", valueName: "DIR"))
    var pluginDirectories: [String] = []

    @Option(name: .customLong("plugin-config"),
            help: ArgumentHelp("Configuration for one plugin, over its manifest's [config] (repeatable).", valueName: "NAME.KEY=VALUE"))
    var pluginSettings: [PluginSetting] = []

    @Flag(help: "Let finite sources lap slow plugins instead of waiting for them (as a live source does).")
    var lossy = false

    @Option(help: ArgumentHelp("Replay pace (key `replay.pace`): recorded (each line's delay_ms), fast (no waits), or a speed-up like 10x.",
                               valueName: "PACE"))
    var pace: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(help: ArgumentHelp("Log format: auto (journal under systemd, else text), text, journal (syslog priorities), json (a JSON object per line); also PLUGBOARD_LOG_FORMAT.",
                               valueName: "FORMAT"))
    var logFormat: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if let logFormat, LogFormat(rawValue: logFormat) == nil {
            throw ValidationError("--log-format must be one of " + LogFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
        for text in overrides where ConfigOverride.parse(text) == nil {
            throw ValidationError("--set \(text): expected KEY=VALUE, e.g. --set performance.batch_size=20")
        }
    }

    /// The overrides these options describe, in the order they apply (later wins).
    var configOverrides: [ConfigOverride] {
        var parsed = overrides.compactMap(ConfigOverride.parse)
        if let source { parsed.append(ConfigOverride(key: "source", value: source, flag: "--source \(source)")) }
        if let pace { parsed.append(ConfigOverride(key: "replay.pace", value: pace, flag: "--pace \(pace)")) }
        if !pluginDirectories.isEmpty {
            parsed.append(ConfigOverride(key: "plugins.dirs", value: pluginDirectories.joined(separator: ","),
                                         flag: "--plugins \(pluginDirectories.joined(separator: " --plugins "))"))
        }
        return parsed
    }

    /// `--plugin-config` values per plugin, in the order given on the command line.
    var pluginConfiguration: [String: PluginConfiguration] {
        var c: [String: PluginConfiguration] = [:]
        for s in pluginSettings { c[s.plugin, default: [:]][s.key] = s.value }
        return c
    }

    /// Loads the configuration (file, environment, these flags, then `extra`, the command's own
    /// flags) and maps it to the host's settings. A bad configuration is printed with every
    /// problem and exits 64.
    func load(extra: [ConfigOverride] = [], logger: Logger) throws -> (EffectiveConfig, HostSettings) {
        let loader = ConfigLoader()
        for warning in loader.unknownEnvironmentVariables() {
            logger.warning("environment variable \(warning) is not a configuration key; ignored")
        }
        let effective: EffectiveConfig
        do {
            effective = try loader.load(file: config, overrides: configOverrides + extra)
        } catch {
            FileHandle.standardError.write(Data("plugboard: \(error)\n".utf8))
            throw ExitCode(64)
        }
        do {
            return (effective, try HostSettings(config: effective, pluginConfiguration: pluginConfiguration, lossy: lossy))
        } catch {
            FileHandle.standardError.write(Data("plugboard: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }
}
