import ArgumentParser
import PlugboardHost

/// Options of the udev source, shared by `run` and `monitor` (docs/udev.md); each sets a `udev.*` key.
struct UdevOptions: ParsableArguments {
    @Option(name: .customLong("udev-mode"),
            help: ArgumentHelp("Netlink group (key udev.mode): auto (udev when udevd runs, else kernel), udev or kernel.", valueName: "MODE"))
    var mode: String?

    @Option(name: .customLong("udev-receive-buffer"),
            help: ArgumentHelp("Receive buffer of the uevent socket, MiB (key udev.receive_buffer; bursts larger than this overflow and are resynced).",
                               valueName: "MIB"))
    var receiveBufferMiB: Int?

    func validate() throws {
        // Checked here, in the flag's own unit, rather than as udev.receive_buffer in bytes.
        if let receiveBufferMiB, !(1...1024).contains(receiveBufferMiB) {
            throw ValidationError("--udev-receive-buffer must be from 1 to 1024 (MiB); the default is 128")
        }
    }

    var overrides: [ConfigOverride] {
        var o: [ConfigOverride] = []
        if let mode { o.append(.init(key: "udev.mode", value: mode, flag: "--udev-mode \(mode)")) }
        if let receiveBufferMiB {
            o.append(.init(key: "udev.receive_buffer", value: "\(receiveBufferMiB)MiB", flag: "--udev-receive-buffer \(receiveBufferMiB)"))
        }
        return o
    }
}
