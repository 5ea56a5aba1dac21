import ArgumentParser
import Foundation
import PlugboardCore
import PlugboardSystem

#if canImport(Glibc)
import Glibc
#endif

/// `plugboard ctl`: asks the running daemon (`plugboard serve`) through its control socket
/// (docs/operations.md, "Control socket").
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Ask or tell the running daemon: status, plugins, devices, reload (with a canary), quarantine release, call.",
        discussion: """
            Talks to `plugboard serve` through its control socket (control.socket, default
            /run/plugboard/control.sock), as root, the daemon's user or a member of control.group.
            Exit codes: 0 done, 1 the daemon refused or failed (the reason is printed), 3 a canary
            found a difference and rolled back (the running build stays), 64 usage, 69 no daemon
            answers on the socket, 77 permission denied.
            """,
        subcommands: [Status.self, Plugins.self, Devices.self, Reload.self, Quarantine.self, Call.self])

    struct Connection: ParsableArguments {
        @Option(help: ArgumentHelp("The control socket (default: $PLUGBOARD_CONTROL_SOCKET, else /run/plugboard/control.sock).", valueName: "PATH"))
        var socket: String?

        @Flag(help: "Print the daemon's answer as JSON.")
        var json = false

        var path: String {
            socket ?? ProcessInfo.processInfo.environment["PLUGBOARD_CONTROL_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
                ?? "/run/plugboard/control.sock"
        }

        /// Sends one request and prints the answer; exits with the daemon's code.
        func send(_ request: [String: Any], wait: Duration = .seconds(300)) throws {
            let stream: UnixStream
            do throws(Errno) {
                stream = try UnixStream.connect(path)
            } catch {
                switch error.code {
                case EACCES, EPERM:
                    FileHandle.standardError.write(Data("plugboard ctl: \(path): permission denied (fix: run as root, or as a member of the daemon's control.group)\n".utf8))
                    throw ExitCode(77)
                default:
                    FileHandle.standardError.write(Data("plugboard ctl: no daemon answers on \(path): \(error.reason) (fix: start `plugboard serve`, or pass its control.socket with --socket)\n".utf8))
                    throw ExitCode(69)
                }
            }
            defer { try? stream.close() }
            stream.setTimeouts(wait)
            var body = try JSONSerialization.data(withJSONObject: request)
            body.append(10)
            // A daemon that refuses the peer answers without reading the request: a failed
            // write still leaves that answer to read.
            do throws(Errno) { try stream.write(Array(body)) } catch {}
            guard let reply = stream.readToEnd(limit: 64 << 20), !reply.isEmpty,
                  let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
                  let code = object["exit"] as? Int else {
                FileHandle.standardError.write(Data("plugboard ctl: \(path): no answer from the daemon (it closed the connection or timed out)\n".utf8))
                throw ExitCode(69)
            }
            let ok = object["ok"] as? Bool ?? false
            let text = object["text"] as? String ?? ""
            if json && ok, let data = object["data"], !(data is NSNull) {
                let out = try JSONSerialization.data(withJSONObject: data, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
                FileHandle.standardOutput.write(out + Data("\n".utf8))
            } else if json, let data = object["data"], !(data is NSNull) {
                // A rolled-back canary: its report on stdout, the reason on stderr.
                let out = try JSONSerialization.data(withJSONObject: data, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                FileHandle.standardOutput.write(out + Data("\n".utf8))
                FileHandle.standardError.write(Data(("plugboard ctl: " + text).utf8))
            } else if ok {
                FileHandle.standardOutput.write(Data(text.utf8))
            } else {
                FileHandle.standardError.write(Data(("plugboard ctl: " + text).utf8))
            }
            if code != 0 { throw ExitCode(Int32(clamping: code)) }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Version, uptime, readiness, source, plugin and device counts, Redis.")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send(["command": "status"]) }
    }

    struct Plugins: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "plugins", abstract: "Every plugin: state, isolation, pid, events, errors, restarts, lag (--json: as GET /plugins).")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send(["command": "plugins"]) }
    }

    struct Devices: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "devices", abstract: "The devices present (--json: as GET /devices, the event schema's fields).")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send(["command": "devices"]) }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reload",
            abstract: "Replace a plugin with the build its plugin directory holds now, nothing lost.",
            discussion: """
                The new .so and .pbm are checked as at start (manifest, hash, signature, file trust);
                the running build hands over its cursor and state. With --canary, the new build first
                runs beside the running one for DURATION on the same events, its output captured;
                it is promoted only when both published the same records (in order) and it did not
                crash or fail more often; otherwise it is stopped, the running build stays, and the
                first differing records are printed (exit 3).
                """)
        @OptionGroup var connection: Connection
        @Argument(help: "The plugin's name.")
        var name: String
        @Option(help: ArgumentHelp("Run the new build beside the running one this long first (e.g. 30s, 5m, 1h).", valueName: "DURATION"))
        var canary: String?
        @Option(name: .customLong("allow-diff"), help: ArgumentHelp("A topic whose records may differ (repeatable; * for any record: then only crashes and errors count).", valueName: "TOPIC"))
        var allowDiff: [String] = []

        func validate() throws {
            if let canary, Self.milliseconds(canary) == nil {
                throw ValidationError("--canary \(canary): expected a duration such as 500ms, 30s, 5m or 1h")
            }
            if canary == nil && !allowDiff.isEmpty { throw ValidationError("--allow-diff needs --canary") }
        }

        static func milliseconds(_ text: String) -> Int? {
            for (suffix, scale) in [("ms", 1.0), ("s", 1000.0), ("m", 60_000.0), ("h", 3_600_000.0)] where text.hasSuffix(suffix) {
                if let v = Double(text.dropLast(suffix.count)), v > 0, v * scale <= 86_400_000 { return Int((v * scale).rounded()) }
            }
            return nil
        }

        func run() throws {
            var request: [String: Any] = ["command": "reload", "plugin": name]
            var wait = Duration.seconds(300)
            if let canary, let ms = Self.milliseconds(canary) {
                request["canary_ms"] = ms
                request["allow_diff"] = allowDiff
                wait += .milliseconds(ms)
            }
            try connection.send(request, wait: wait)
        }
    }

    struct Quarantine: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "quarantine", abstract: "Quarantined plugins.", subcommands: [Release.self])

        struct Release: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "release",
                abstract: "Give a quarantined plugin a new worker process; it reads from the newest event.")
            @OptionGroup var connection: Connection
            @Argument(help: "The plugin's name.")
            var name: String
            func run() throws { try connection.send(["command": "release", "plugin": name]) }
        }
    }

    struct Call: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "call",
            abstract: "Call a function the plugin exports ([exports] of its manifest), in a process of its own.")
        @OptionGroup var connection: Connection
        @Argument(help: "The plugin's name.")
        var name: String
        @Argument(help: "The exported function.")
        var symbol: String
        @Argument(parsing: .captureForPassthrough, help: "The arguments, one per parameter.")
        var arguments: [String] = []
        func run() throws { try connection.send(["command": "call", "plugin": name, "symbol": symbol, "args": arguments]) }
    }
}
