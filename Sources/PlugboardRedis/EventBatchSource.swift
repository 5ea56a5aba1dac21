import CPlugboard

/// What one call to `EventBatchSource.next(max:into:)` produced.
public enum EventBatch: Sendable, Equatable {
    /// `count` event pointers were written to the front of the buffer (0: nothing new right now).
    case events(Int)
    /// The reader fell a whole ring behind and `missed` events are gone (counted, logged).
    case lapped(missed: UInt64)
    /// No event will ever come again (the ring was closed and drained).
    case finished
}

/// Where the publisher reads events from: the core's `RingConsumer` (see `RingConsumer+EventBatchSource`
/// once the core lands) or, in tests, buffers of events the test built itself.
///
/// Used from the publisher's thread only. Pointers written by `next` are zero-copy views into the
/// source's memory and are valid only until the next call to `next`; the publisher copies what it
/// keeps (its unacknowledged window and spill buffer) before calling again.
public protocol EventBatchSource: AnyObject {
    /// Writes up to `max` pointers to the oldest unread events into `buffer` and advances past them.
    func next(max: Int, into buffer: UnsafeMutableBufferPointer<UnsafePointer<pb_event>>) -> EventBatch
    /// Blocks until an event may be available or `timeout` passes (spurious returns are fine).
    func wait(timeout: Duration)
}

/// Plugin output (host API `publish(topic, bytes)`), drained by the publisher into
/// `plugboard:{HOST}:plugin:<name>`. The core's bounded, counted `OutputQueue` conforms once it lands.
public protocol PluginOutputSource: AnyObject {
    /// Calls `body` for up to `max` of the oldest queued records and removes them.
    /// The three buffers are the plugin's name, the topic and the payload; valid only during the call.
    /// - Returns: how many records were handed over.
    func drain(max: Int, _ body: (_ plugin: UnsafeRawBufferPointer, _ topic: UnsafeRawBufferPointer,
                                  _ data: UnsafeRawBufferPointer) -> Void) -> Int
}
