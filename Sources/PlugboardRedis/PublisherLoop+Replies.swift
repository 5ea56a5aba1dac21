import CPlugboard
import Logging
import PlugboardCore

/// Reading a batch's replies in order, settling each record by what its reply means
/// (`ReplyOutcome`), and moving the acknowledged position over the settled records.
extension PublisherLoop {
    /// Reads every reply of the oldest batch in flight, in order, and acknowledges its records.
    func readOldestBatch() throws {
        guard let connection else { return }
        let oldest = batches.oldest
        let stream = config.mode.usesStream
        let channel = config.mode.usesChannel
        var published: UInt64 = 0, duplicates: UInt64 = 0, rejected: UInt64 = 0, channelAcks: UInt64 = 0
        defer {
            control.published.add(published, ordering: .relaxed)
            control.duplicates.add(duplicates, ordering: .relaxed)
            control.rejected.add(rejected, ordering: .relaxed)
            control.channelPublished.add(channelAcks, ordering: .relaxed)
        }
        for _ in 0..<oldest.events {
            let r = events.record(at: eventWindow.read.byte)
            let before = RecordStore.flags(r.payload)
            var flags = before
            let e = r.payload.assumingMemoryBound(to: pb_event.self)
            // What was sent for this record is what its flags said then: they change only here.
            if stream && !before.contains(.streamSettled) {
                switch try connection.withNextReply(ReplyOutcome.ofXADD) {
                case .ok:
                    flags.insert(.streamSettled)
                    reissueFailedEvents()
                case .duplicate:
                    duplicates += 1
                    flags.insert(.streamSettled)
                    reissueFailedEvents()
                case .retry(let why):
                    failedEvents.append(eventWindow.read.byte)
                    retryReason = retryReason ?? "XADD \(keys.events): \(why)"
                case .moved(let text):
                    failedEvents.append(eventWindow.read.byte)
                    redirected(text, command: "XADD \(keys.events)")
                case .rejected(let why):
                    flags.formUnion([.streamSettled, .refused])
                    logRejected("XADD \(keys.events): \(why)", sequence: e.pointee.sequence)
                }
            }
            if channel && !before.contains(.channelSettled) {
                switch try connection.withNextReply(ReplyOutcome.ofPUBLISH) {
                case .ok, .duplicate:
                    channelAcks += 1
                    flags.insert(.channelSettled)
                case .retry(let why), .moved(let why):
                    retryReason = retryReason ?? "PUBLISH \(keys.channel): \(why)"
                case .rejected(let why):
                    flags.formUnion([.channelSettled, .refused])
                    logRejected("PUBLISH \(keys.channel): \(why)", sequence: e.pointee.sequence)
                }
            }
            RecordStore.setFlags(r.payload, flags)
            if eventSettled(flags) && !eventSettled(before) && !flags.contains(.moved) {
                if flags.contains(.refused) {
                    rejected += 1
                } else {
                    published += 1
                    if let observer = config.ackObserver { observer(e, monotonicNanos()) }
                }
            }
            eventWindow.didRead(next: r.next)
        }
        for _ in 0..<oldest.plugins {
            let r = plugins.record(at: pluginWindow.read.byte)
            var flags = RecordStore.flags(r.payload)
            if !flags.contains(.streamSettled) {
                let rec = PluginRecord(reading: r.payload)
                // Only the error paths need the name as bytes of their own.
                func name() -> [UInt8] { Array(UnsafeRawBufferPointer(start: rec.name.0, count: rec.name.1)) }
                switch try connection.withNextReply(ReplyOutcome.ofXADD) {
                case .ok, .duplicate:
                    flags.insert(.streamSettled)
                    control.pluginPublished.add(1, ordering: .relaxed)
                    if !failedPlugins.isEmpty { reissueFailedPlugins(stream: name()) }
                case .retry(let why):
                    failedPlugins.append((pluginWindow.read.byte, name()))
                    retryReason = retryReason ?? "XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self)): \(why)"
                case .moved(let text):
                    failedPlugins.append((pluginWindow.read.byte, name()))
                    redirected(text, command: "XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self))")
                case .rejected(let why):
                    flags.formUnion([.streamSettled, .refused])
                    control.pluginRejected.add(1, ordering: .relaxed)
                    logRejected("XADD \(keys.pluginPrefix)\(String(decoding: name(), as: UTF8.self)): \(why)", sequence: rec.sequence)
                }
                RecordStore.setFlags(r.payload, flags)
            }
            pluginWindow.didRead(next: r.next)
        }
        // With WAIT, only a batch enough replicas have is acknowledged (and all before it); the
        // records of a batch that fell short stay in the window, to be sent again.
        let vouched = oldest.wait ? try readWaitReply() : true
        if vouched {
            while eventWindow.hasAnsweredUnacked {
                let r = events.record(at: eventWindow.acked.byte)
                guard eventSettled(RecordStore.flags(r.payload)) else { break }
                eventWindow.didAck(next: r.next)
            }
            while pluginWindow.hasAnsweredUnacked {
                let r = plugins.record(at: pluginWindow.acked.byte)
                guard RecordStore.flags(r.payload).contains(.streamSettled) else { break }
                pluginWindow.didAck(next: r.next)
            }
        }
        // Round trip of the whole pipelined batch: queued for the socket → last reply read.
        control.publishLatency.record(monotonicNanos() &- oldest.sentAt)
        batches.removeOldest()
    }

    /// Settled: nothing of the record is left to send in this mode.
    func eventSettled(_ flags: RecordFlags) -> Bool {
        (!config.mode.usesStream || flags.contains(.streamSettled)) && (!config.mode.usesChannel || flags.contains(.channelSettled))
    }

    func logRejected(_ what: String, sequence: UInt64) {
        rejectedLogged += 1
        if rejectedLogged <= 10 || rejectedLogged % 1000 == 0 {
            logger.error("Redis refused an entry; it is counted and skipped", metadata: [
                "redis": "\(server)", "reply": "\(what)", "sequence": "\(sequence)",
                "rejected_so_far": "\(rejectedLogged)"])
        }
    }
}
