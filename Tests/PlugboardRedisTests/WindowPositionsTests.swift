@testable import PlugboardRedis
import Testing

@Suite("Publisher window positions")
struct WindowPositionsTests {
    /// Stores `n` records of 64 bytes each into `w`.
    private func store(_ n: Int, into w: inout WindowPositions) {
        for _ in 0..<n { w.didStore(next: w.stored.byte + 64) }
    }

    @Test("records move from waiting to in flight to answered to acknowledged, counted at each step")
    func recordsMoveThroughTheWindow() {
        var w = WindowPositions()
        store(3, into: &w)
        #expect(w.unsent == 3 && w.unsettled == 3 && w.bytesInUse == 192)

        w.didSend(count: 2, next: 128)
        #expect(w.unsent == 1 && w.unacknowledgedSent == 2)

        w.didRead(next: 64)
        #expect(w.hasAnsweredUnacked)
        w.didAck(next: 64)
        #expect(!w.hasAnsweredUnacked)
        #expect(w.acked == .init(byte: 64, count: 1))
        #expect(w.unsettled == 2 && w.unacknowledgedSent == 1 && w.bytesInUse == 128)
    }

    @Test("a reconnect sends again everything unacknowledged, and keeps what waits")
    func rewindReplaysFromAcked() {
        var w = WindowPositions()
        store(4, into: &w)
        w.didSend(count: 3, next: 192)
        w.didRead(next: 64)
        w.didRead(next: 128)
        w.didAck(next: 64)  // the second record's reply was a retryable error: not acknowledged

        w.rewindToAcked()
        #expect(w.sent == w.acked && w.read == w.acked)
        #expect(w.stored == .init(byte: 256, count: 4))
        #expect(w.unsent == 3 && w.unacknowledgedSent == 0)
    }

    @Test("a torn batch is forgotten back to where the store stood before it")
    func dropStoredForgetsUnsentRecords() {
        var w = WindowPositions()
        store(1, into: &w)
        w.didSend(count: 1, next: 64)
        let before = w.stored
        store(5, into: &w)
        w.dropStored(after: before)
        #expect(w.stored == before && w.unsent == 0 && w.unsettled == 1)
    }

    @Test("sending past what is stored breaks the order and stops the process")
    func sendingPastStoredIsRefused() async {
        await #expect(processExitsWith: .failure) {
            var w = WindowPositions()
            w.didStore(next: 64)
            w.didSend(count: 2, next: 128)
        }
    }

    @Test("a position whose bytes moved without a record is refused")
    func bytesWithoutRecordsAreRefused() async {
        await #expect(processExitsWith: .failure) {
            var w = WindowPositions()
            w.didStore(next: 64)
            w.didSend(count: 0, next: 64)
        }
    }
}
