import Dispatch
import Foundation
import Synchronization

/// The one SIGINT/SIGTERM handler of `run`, `serve` and `monitor`: the first signal starts the
/// graceful shutdown (`onFirst`), a second one exits at once with 128 + the signal number.
///
/// Signals are taken off the default disposition (`SIG_IGN`) and delivered to a dispatch source,
/// so no code runs in signal-handler context.
public final class ShutdownSignals {
    private final class Counts: Sendable {
        let received = Atomic<Int>(0)
        let first = Atomic<Int32>(0)
    }
    private let counts = Counts()
    // Kept for as long as the handler lives; not Sendable, so this class is not either.
    private let sources: [any DispatchSourceSignal]

    /// Starts handling `signals`.
    /// - Parameter onFirst: called once, on a dispatch queue, with the first signal's number.
    public init(_ signals: [Int32] = [SIGINT, SIGTERM], onFirst: @escaping @Sendable (Int32) -> Void) {
        sources = signals.map { s in
            signal(s, SIG_IGN)
            return DispatchSource.makeSignalSource(signal: s, queue: .global())
        }
        for (s, src) in zip(signals, sources) {
            src.setEventHandler { [counts] in
                if counts.received.add(1, ordering: .relaxed).newValue >= 2 {
                    FileHandle.standardError.write(Data("plugboard: second \(Self.name(s)) during shutdown: stopping at once\n".utf8))
                    _exit(128 + s)
                }
                counts.first.store(s, ordering: .relaxed)
                onFirst(s)
            }
            src.resume()
        }
    }

    /// The first signal received, if any.
    public var firstSignal: Int32? {
        let s = counts.first.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }

    public static func name(_ s: Int32) -> String {
        switch s {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(s)"
        }
    }
}
