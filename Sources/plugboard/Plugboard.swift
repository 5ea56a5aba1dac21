import ArgumentParser
import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// The `plugboard` command: host daemon and plugin tooling.
///
/// Exit codes (docs/operations.md): 0 success, 1 runtime failure, 2 `run --strict` with a refused
/// plugin, 3 events not delivered (`run`, `serve`), 64 usage error (ArgumentParser's validation
/// exit), 70 a stuck component at shutdown.
@main
struct Plugboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugboard",
        abstract: "Host runtime and SDK tooling for USB device-event plugins.",
        version: "plugboard \(PlugboardCoreVersion.string) (plugin ABI \(PlugboardCoreVersion.abi))",
        subcommands: Plugboard.allSubcommands
    )

    /// One entry per subcommand file. Keep one line each so parallel work merges cleanly.
    static var allSubcommands: [any ParsableCommand.Type] {
        var list: [any ParsableCommand.Type] = []
        list.append(RunCommand.self)
        list.append(MonitorCommand.self)
        list.append(PackCommand.self)
        list.append(InspectCommand.self)
        list.append(ExplainCommand.self)
        list.append(TailCommand.self)
        list.append(ConfigCommand.self)
        list.append(ServeCommand.self)
        list.append(NewCommand.self)
        list.append(CallCommand.self)
        list.append(TestCommand.self)
        list.append(KeygenCommand.self)
        list.append(SignCommand.self)
        list.append(CtlCommand.self)
        return list
    }

    /// Every command ignores SIGPIPE: a peer that went away (Redis killed, a worker process that
    /// crashed, a closed pipe on stdout) is an EPIPE error its caller handles, never a silent
    /// death of the daemon (it used to end `run` with status 141 when Redis restarted).
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
