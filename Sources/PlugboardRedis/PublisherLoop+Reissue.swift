import CPlugboard
import Logging

/// Records Redis refused with a retryable error after it stored a later entry of the same
/// stream: they are copied to the end of their store, to be sent again under a new ID epoch.
extension PublisherLoop {
    /// A later entry of the events stream was stored: the events whose XADD got a retryable
    /// error before it can never be stored under their IDs (a stream only takes IDs above its
    /// top), and their replay would be answered "equal or smaller", like a true duplicate. So
    /// each is copied to the end of the store, to be sent again under a new epoch, and the
    /// original is settled as moved.
    func reissueFailedEvents() {
        for position in failedEvents {
            let settled = reissue(in: events, at: position, window: &eventWindow,
                                  keep: .channelSettled, settle: [.streamSettled, .channelSettled])
            if !settled {
                control.dropped.add(1, ordering: .relaxed)
                let seq = events.record(at: position).payload.assumingMemoryBound(to: pb_event.self).pointee.sequence
                logger.error("no room to reissue an event Redis refused with a retryable error; dropped",
                             metadata: ["redis": "\(server)", "sequence": "\(seq)"])
            }
        }
        failedEvents.removeAll()
    }

    /// The same for plugin records, per plugin stream.
    func reissueFailedPlugins(stream name: [UInt8]) {
        failedPlugins.removeAll { failed in
            guard failed.name == name else { return false }
            if !reissue(in: plugins, at: failed.position, window: &pluginWindow, keep: [], settle: .streamSettled) {
                control.pluginRejected.add(1, ordering: .relaxed)
                logger.error("no room to reissue a plugin record Redis refused with a retryable error; dropped",
                             metadata: ["redis": "\(server)", "plugin": "\(String(decoding: name, as: UTF8.self))"])
            }
            return true
        }
    }

    /// Copies the record at `position` to the end of `store` (flags: its own `keep` ones; epoch:
    /// unset, so its first send picks one) and settles the original as moved. False when the
    /// store had no room (the original is settled anyway: the caller counts it as dropped).
    func reissue(in store: RecordStore, at position: UInt64, window: inout WindowPositions,
                 keep: RecordFlags, settle: RecordFlags) -> Bool {
        let r = store.record(at: position)
        let flags = RecordStore.flags(r.payload)
        defer { RecordStore.setFlags(r.payload, flags.union(settle).union(.moved)) }
        guard let (slot, next) = store.reserve(length: r.length, stored: window.stored.byte, acked: window.acked.byte)
        else { return false }
        slot.copyMemory(from: r.payload, byteCount: r.length)
        RecordStore.setFlags(slot, flags.intersection(keep))
        window.didStore(next: next)
        control.reissued.add(1, ordering: .relaxed)
        return true
    }
}
