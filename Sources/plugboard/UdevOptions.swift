import ArgumentParser
import PlugboardUdev

/// Options of the udev source, shared by `run` and `monitor` (docs/udev.md).
struct UdevOptions: ParsableArguments {
    @Option(name: .customLong("udev-mode"),
            help: ArgumentHelp("Netlink group: auto (udev when udevd runs, else kernel), udev or kernel.", valueName: "MODE"))
    var mode: UdevMode = .auto

    @Option(name: .customLong("udev-receive-buffer"),
            help: ArgumentHelp("Receive buffer of the uevent socket, MiB (bursts larger than this overflow and are resynced).",
                               valueName: "MIB"))
    var receiveBufferMiB: Int = 128

    func validate() throws {
        if receiveBufferMiB < 1 || receiveBufferMiB > 2047 {
            throw ValidationError("--udev-receive-buffer must be from 1 to 2047 (MiB); the default is 128")
        }
    }

    var sourceOptions: UdevSourceOptions {
        var o = UdevSourceOptions()
        o.mode = mode
        o.receiveBufferBytes = receiveBufferMiB << 20
        return o
    }
}

extension UdevMode: ExpressibleByArgument {}
