import PlugboardCore

#if canImport(Glibc)
import Glibc
#endif

/// The live event source: USB devices from libudev (docs/udev.md).
///
/// At start it opens a netlink monitor (group `udev`, or `kernel` where udevd is absent),
/// filtered to subsystem `usb` in the kernel, with a large receive buffer; then it
/// enumerates the devices present and publishes them as coldplug adds; then it publishes
/// each uevent as it arrives, keeping the device table in step. On a receive overflow it
/// drains, re-enumerates and publishes the difference as `resync` events.
///
/// Only `usb_device`s become events; `usb_interface` uevents are folded into their device
/// (its interface list). Events are written straight into ring slots from `udev_device_get_*`.
public struct UdevSource: EventSource {
    public let options: UdevSourceOptions
    public let counters: UdevSourceCounters
    /// Test seam: injected receive failures (nil in production).
    public let faults: UdevFaultInjection?
    /// Called on the source thread right after each event is published, with its ring sequence
    /// and the udev device it was built from (valid during the call; nil for events built from
    /// the device table alone, such as resync removes). For tools (`plugboard monitor
    /// --properties`); keep it short.
    public let onEvent: (@Sendable (UInt64, UdevDeviceView?) -> Void)?

    public init(options: UdevSourceOptions = UdevSourceOptions(), counters: UdevSourceCounters = UdevSourceCounters(),
                faults: UdevFaultInjection? = nil, onEvent: (@Sendable (UInt64, UdevDeviceView?) -> Void)? = nil) {
        self.options = options
        self.counters = counters
        self.faults = faults
        self.onEvent = onEvent
    }

    public var name: String { "udev" }
    public var isFinite: Bool { false }

    /// The mode `run` will use: `options.mode`, with `.auto` resolved by looking for udevd's control socket.
    public var resolvedMode: UdevMode {
        switch options.mode {
        case .auto: access(options.udevControlPath, F_OK) == 0 ? .udev : .kernel
        case let m: m
        }
    }

    public func run(_ context: SourceContext) throws {
        let session = try UdevSession(source: self, context: context)
        try session.run()
    }
}
