import CPlugboard
import Logging

/// Events from the ring and plugin output into the stores: back-pressure while connected,
/// spilling (and dropping what does not fit, counted and logged) while Redis is down.
extension PublisherLoop {
    /// Takes events from the source into the store. Connected: only as many as surely fit
    /// (back-pressure; the ring laps us if Redis is too slow, and says so). Down: everything,
    /// dropping what does not fit in the spill buffer, counted and logged.
    func intake() -> Int {
        var room = config.maxBatch
        if connected {
            let free = UInt64(events.capacity) - eventWindow.bytesInUse
            room = min(room, Int(free / UInt64(Int(PB_EVENT_MAX_SIZE) + RecordStore.headerSize + 16)))
            if room == 0 { return 0 }
        }
        switch source.poll(max: room, into: batch) {
        case .events(let n):
            guard n > 0 else { return 0 }
            let storedBefore = eventWindow.stored
            let sequenceBefore = lastStoredSequence
            var dropped: UInt64 = 0
            for i in 0..<n {
                guard let e = batch[i] else { continue }
                if let next = events.storeEvent(e, stored: eventWindow.stored.byte, acked: eventWindow.acked.byte) {
                    eventWindow.didStore(next: next)
                    lastStoredSequence = max(lastStoredSequence, e.pointee.sequence)
                } else {
                    dropped += 1
                }
            }
            if !source.commit() {
                // The producer overwrote the batch while we copied it: the copies may be torn.
                eventWindow.dropStored(after: storedBefore)
                lastStoredSequence = sequenceBefore
                control.lapped.add(UInt64(n), ordering: .relaxed)
                logger.warning("the Redis publisher was lapped while reading a batch; the batch is skipped",
                               metadata: ["missed": "\(n)", "redis": "\(server)"])
                return n
            }
            // Only now, after the commit: the ring file (`state.ring_dir`) still holds whatever
            // the state file does not claim yet, should the daemon die in between.
            persistState()
            if !connected {
                let spilled = UInt64(n) - dropped
                spilledThisOutage += spilled
                control.spilled.add(spilled, ordering: .relaxed)
            }
            if dropped > 0 {
                control.dropped.add(dropped, ordering: .relaxed)
                let before = droppedThisOutage
                droppedThisOutage += dropped
                // The first drop of an outage, then each time the count doubles: loud, not a flood.
                if before == 0 || before.leadingZeroBitCount != droppedThisOutage.leadingZeroBitCount {
                    logger.error("Redis is down and the spill buffer is full: dropping events (fix: bring Redis back, or point redis.url at one that is up; the buffer holds about \(byteCount(events.capacity)) of events)", metadata: [
                        "redis": "\(server)", "spill_bytes": "\(events.capacity)",
                        "spilled_this_outage": "\(spilledThisOutage)",
                        "dropped_this_outage": "\(droppedThisOutage)",
                        "dropped_total": "\(control.dropped.load(ordering: .relaxed))"])
                }
            }
            return n
        case .empty:
            return 0
        case .lapped(let missed):
            control.lapped.add(missed, ordering: .relaxed)
            logger.warning("the Redis publisher fell a whole ring behind; events skipped",
                           metadata: ["missed": "\(missed)", "redis": "\(server)"])
            return 1
        case .finished:
            sourceFinished = true
            return 0
        }
    }

    /// Takes plugin output records into their store, as many as surely fit.
    func drainPlugins() -> Int {
        guard let pluginSource else { return 0 }
        // Take only what surely fits; the OutputQueue holds (and counts) the rest.
        let worst = UInt64(PluginRecord.headerSize + config.pluginMaxRecord + RecordStore.headerSize + 16)
        let room = min(config.maxBatch, Int((UInt64(plugins.capacity) - pluginWindow.bytesInUse) / worst))
        if room <= 0 { return 0 }
        return pluginSource.drain(max: room) { name, topic, data in
            pluginSequence += 1
            let size = PluginRecord.size(name: name.count, topic: topic.count, data: data.count)
            guard size - PluginRecord.headerSize <= config.pluginMaxRecord, name.count <= Int(UInt16.max),
                  topic.count <= Int(UInt16.max),
                  let (slot, next) = plugins.reserve(length: size, stored: pluginWindow.stored.byte,
                                                     acked: pluginWindow.acked.byte) else {
                control.pluginRejected.add(1, ordering: .relaxed)
                logger.error("plugin output record larger than the Redis publisher accepts; dropped", metadata: [
                    "plugin": "\(String(decoding: name, as: UTF8.self))", "bytes": "\(size - PluginRecord.headerSize)",
                    "limit": "\(config.pluginMaxRecord)"])
                return
            }
            PluginRecord.write(into: slot, sequence: pluginSequence, name: name, topic: topic, data: data)
            pluginWindow.didStore(next: next)
        }
    }
}
