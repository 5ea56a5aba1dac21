import ArgumentParser
import PlugboardCore

/// `plugboard run`: the host daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the host daemon.")

    func run() async throws {}
}
