import Logging
import PlugboardCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Which netlink group the udev source listens to.
public enum UdevMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `udev` when udevd runs (its control socket exists), else `kernel`.
    case auto
    /// Events after udevd processed them: with udev properties (ID_VENDOR_ID, ID_SERIAL_SHORT...).
    case udev
    /// Raw kernel uevents (containers, initramfs, no udevd): attributes come from sysfs.
    case kernel

    public var description: String { rawValue }
}

/// Settings of the udev source.
public struct UdevSourceOptions: Sendable {
    /// The netlink group; `.auto` picks `udev` when `udevControlPath` exists.
    public var mode: UdevMode = .auto
    /// The receive buffer to ask for, bytes (default 128 MiB). Root (CAP_NET_ADMIN) gets it
    /// whatever `net.core.rmem_max` says; others are capped there (a warning says so).
    public var receiveBufferBytes: Int = 128 << 20
    /// udevd's control socket: its presence means udevd runs.
    public var udevControlPath: String = "/run/udev/control"
    /// Enumerate present devices at start and publish them as coldplug adds.
    public var coldplug: Bool = true
    /// Most messages handled per wake-up before the ring is flushed.
    public var batch: Int = 64
    /// Budget for reading what is already queued when a stop is requested, milliseconds.
    public var drainOnStopMilliseconds: Int = 200

    public init() {}
}

/// Counters of one udev source, readable from any thread.
public final class UdevSourceCounters: Sendable {
    /// uevents read from the monitor (after the kernel's BPF filter).
    public let received = Atomic<UInt64>(0)
    /// Devices published by the start-up enumeration.
    public let coldplugged = Atomic<UInt64>(0)
    /// Removes of a device the table did not have (duplicate removes, or adds never seen): not published.
    public let unknownRemoves = Atomic<UInt64>(0)
    /// Adds of a device already present with the same identity (coldplug/hotplug race): not published.
    public let duplicateAdds = Atomic<UInt64>(0)
    /// Adds at a syspath whose device had another identity (a replug whose remove was missed):
    /// a resync remove of the old device was published first.
    public let replacedDevices = Atomic<UInt64>(0)
    /// `usb_interface` uevents folded into their device (published as a `change` only when
    /// the device's interface list grew).
    public let interfaceEvents = Atomic<UInt64>(0)
    /// uevents refused as libudev refuses them (a sender that is not root or not the kernel, a
    /// malformed message): consumed and not published (docs/udev.md, "Reading uevents").
    public let refusedMessages = Atomic<UInt64>(0)
    /// Values that were present but unusable (non-hex ids, out-of-range numbers): left 0.
    public let badValues = Atomic<UInt64>(0)
    /// Receive errors (ENOBUFS, POLLERR) that started a resync.
    public let overflows = Atomic<UInt64>(0)
    /// Messages discarded while draining after an overflow.
    public let drained = Atomic<UInt64>(0)
    /// Resync passes (re-enumerate and diff) done.
    public let resyncPasses = Atomic<UInt64>(0)
    /// Times the monitor socket was closed and opened again after repeated errors.
    public let monitorReopens = Atomic<UInt64>(0)
    /// The receive buffer the kernel granted (getsockopt SO_RCVBUF), bytes.
    public let effectiveReceiveBuffer = Atomic<Int>(0)
    /// The mode in use: 0 until started, 1 udev, 2 kernel.
    let modeValue = Atomic<UInt8>(0)
    /// True once the monitor receives and the start-up enumeration was published.
    public let ready = Atomic<Bool>(false)

    public init() {}

    /// The mode the source runs in, once started.
    public var mode: UdevMode? {
        switch modeValue.load(ordering: .acquiring) {
        case 1: .udev
        case 2: .kernel
        default: nil
        }
    }
}

/// The one fault-injection seam of the udev source: tests make receives fail as a real
/// netlink overflow would, since umockdev cannot overflow a socket (its sender aborts first).
public final class UdevFaultInjection: Sendable {
    let receiveErrors = Atomic<Int>(0)
    let receiveErrno = Atomic<Int32>(ENOBUFS)
    let pollErrors = Atomic<Int>(0)

    public init() {}

    /// The next `count` receives fail with `errno` (ENOBUFS by default: what
    /// `udev_monitor_receive_device` reports after the kernel dropped messages) without
    /// reading the socket.
    public func failNextReceives(_ count: Int = 1, errno code: Int32 = ENOBUFS) {
        receiveErrno.store(code, ordering: .relaxed)
        receiveErrors.store(count, ordering: .releasing)
    }

    /// The next `count` waits report POLLERR at once, like a socket with an error latched.
    public func failNextPolls(_ count: Int) { pollErrors.store(count, ordering: .releasing) }

    /// Clears everything injected.
    public func clear() {
        receiveErrors.store(0, ordering: .releasing)
        pollErrors.store(0, ordering: .releasing)
    }

    @inline(__always) func take(_ a: borrowing Atomic<Int>) -> Bool {
        var v = a.load(ordering: .acquiring)
        while v > 0 {
            let (done, now) = a.compareExchange(expected: v, desired: v - 1, ordering: .acquiringAndReleasing)
            if done { return true }
            v = now
        }
        return false
    }
}

extension UdevSourceCounters {
    /// Logs every counter in one line (at the end of `plugboard run`).
    public func log(to logger: Logger, context: SourceContext?) {
        func v(_ a: borrowing Atomic<UInt64>) -> String { "\(a.load(ordering: .relaxed))" }
        let meta: Logger.Metadata = [
            "mode": "\(mode.map(\.rawValue) ?? "not started")", "received": "\(v(received))", "coldplug": "\(v(coldplugged))",
            "published": "\(context?.published.load(ordering: .relaxed) ?? 0)",
            "truncated": "\(context?.truncated.load(ordering: .relaxed) ?? 0)",
            "resync_events": "\(context?.resynced.load(ordering: .relaxed) ?? 0)", "overflows": "\(v(overflows))",
            "resync_passes": "\(v(resyncPasses))", "drained": "\(v(drained))", "unknown_removes": "\(v(unknownRemoves))",
            "duplicate_adds": "\(v(duplicateAdds))", "replaced_devices": "\(v(replacedDevices))",
            "interface_events": "\(v(interfaceEvents))", "bad_values": "\(v(badValues))",
            "refused_messages": "\(v(refusedMessages))", "monitor_reopens": "\(v(monitorReopens))",
        ]
        logger.info("udev source counters", metadata: meta)
    }
}
