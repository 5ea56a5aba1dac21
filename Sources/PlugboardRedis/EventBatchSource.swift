import CPlugboard
import PlugboardCore

/// Where the publisher reads events from. Its requirements are exactly `RingConsumer`'s API, so the
/// core's ring consumer conforms as it is (see the extension below); tests conform with events they
/// build in their own aligned buffers.
///
/// Used from the publisher's thread only. Pointers written by `poll` are zero-copy views into the
/// source's memory, valid until `commit()`; the publisher copies what it keeps (its unacknowledged
/// window and spill buffer) and then commits.
public protocol EventBatchSource: AnyObject {
    /// Writes up to `max` pointers to the next events into `buffer`, oldest first.
    func poll(max: Int, into buffer: UnsafeMutablePointer<UnsafePointer<pb_event>?>) -> RingPoll
    /// Finishes the batch of the last `poll`. False when the producer overwrote part of it while
    /// it was being read: the publisher then discards its copies of that batch (counted as lapped).
    func commit() -> Bool
    /// Blocks until an event may be available or `timeoutNanoseconds` pass (spurious returns are fine).
    func wait(timeoutNanoseconds: UInt64)
}

/// The core's ring consumer is an event source for the publisher as it is.
extension RingConsumer: EventBatchSource {}

/// Plugin output (host API `publish(topic, bytes)`), drained by the publisher into
/// `plugboard:{HOST}:plugin:<name>`. The core's bounded, counted `OutputQueue` conforms below.
public protocol PluginOutputSource: AnyObject {
    /// Calls `body` for up to `max` of the oldest queued records and removes them.
    /// The three buffers are the plugin's name, the topic and the payload; valid only during the call.
    /// - Returns: how many records were handed over.
    func drain(max: Int, _ body: (_ plugin: UnsafeRawBufferPointer, _ topic: UnsafeRawBufferPointer,
                                  _ data: UnsafeRawBufferPointer) -> Void) -> Int
    /// No record waiting (looked at once more before the publisher sleeps).
    var isEmpty: Bool { get }
    /// Makes every record queued from now on call `hook` (nil: none). The publisher sets it to
    /// wake itself when it sleeps on an event source that can be woken (`ConsumerWakeup`);
    /// a source that cannot call it is polled every millisecond instead.
    func setPushHook(_ hook: (@Sendable () -> Void)?)
}

/// The core's output queue: bounded in records and bytes and counting refusals itself; the
/// publisher takes only what it can hold, so records wait (and overflow, counted) in the queue.
extension OutputQueue: PluginOutputSource {
    public func drain(max: Int, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) -> Int {
        let records: [OutputRecord] = drain(max: max)
        for r in records {
            var name = r.plugin
            var topic = r.topic
            name.withUTF8 { n in
                topic.withUTF8 { t in
                    r.payload.withUnsafeBytes { d in body(UnsafeRawBufferPointer(n), UnsafeRawBufferPointer(t), d) }
                }
            }
        }
        return records.count
    }
}
