import Foundation
import PlugboardTestbed
import Testing

@testable import PlugboardUdev

/// Devices recorded on real machines with `umockdev-record` (Fixtures/README.md), loaded with
/// umockdev's own parser, read in both modes. In the one serialized umockdev suite (see
/// UdevSourceTests).
extension UdevSourceTests {
    // MARK: recordings of real devices

    static func recording(_ name: String) throws -> String {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        return try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
    }

    /// The coldplug events of `usbkbd.umockdev` in `mode`, by vendor:product.
    func recordedColdplug(_ mode: UdevMode) throws -> [String: RecordedEvent] {
        let text = try Self.recording("usbkbd.umockdev")
        let h = try UdevHarness(mode: mode) { bed in try bed.addRecording(text) }
        defer { h.stop() }
        // Five usb_devices: the root hub, three hubs, the keyboard.
        let events = try h.waitForEvents(5)
        var byID: [String: RecordedEvent] = [:]
        for e in events { if let id = e.value("id") { byID[id] = e } }
        return byID
    }

    @Test("a USB 2.0 hub listing two alternate settings of its one interface has num_interfaces 1 in both modes",
          arguments: [UdevMode.udev, .kernel])
    func hubWithAlternateSettings(mode: UdevMode) throws {
        let events = try recordedColdplug(mode)
        // Lenovo 17ef:1005: bNumInterfaces 1; ID_USB_INTERFACES and its descriptors list
        // interface 0 twice (alternate settings 0 and 1: single-TT 090001, multi-TT 090002).
        let hub = try #require(events["17ef:1005"], "\(mode): \(events.values)")
        #expect(hub.value("nif") == "1", "\(mode): \(hub)")
        #expect(hub.value("ifs") == "090001,090002", "\(mode): \(hub)")
        #expect(hub.value("class") == "09/00/02")
    }

    @Test("the recorded keyboard and the other hubs report the same interfaces in both modes")
    func bothModesAgreeOnTheRecording() throws {
        let udev = try recordedColdplug(.udev)
        let kernel = try recordedColdplug(.kernel)
        let expected = ["05f3:0007": ("2", "030101,030000"), "05f3:0081": ("1", "090000"), "8087:0020": ("1", "090000"),
                        "1d6b:0002": ("1", "090000"), "17ef:1005": ("1", "090001,090002")]
        for (id, (nif, ifs)) in expected {
            for (mode, events) in [("udev", udev), ("kernel", kernel)] {
                let e = try #require(events[id], "\(mode) \(id): \(events.values)")
                #expect(e.value("nif") == nif && e.value("ifs") == ifs, "\(mode) \(id): \(e)")
            }
        }
    }
}
