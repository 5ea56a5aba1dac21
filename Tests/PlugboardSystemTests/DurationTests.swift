import Testing
import PlugboardSystem

@Suite("Duration conversions")
struct DurationTests {
    @Test func aDurationConvertsToWholeNanosecondsAndMilliseconds() {
        #expect(Duration.milliseconds(1500).nanoseconds == 1_500_000_000)
        #expect(Duration.nanoseconds(7).nanoseconds == 7)
        #expect(Duration.microseconds(-3).nanoseconds == -3000)
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        #expect(Duration.microseconds(999).milliseconds == 0)
        #expect(Duration.milliseconds(250).inSeconds == 0.25)
    }

    @Test func hugeDurationsSaturateInsteadOfTrapping() {
        #expect(Duration.seconds(Int64.max / 2).nanoseconds == .max)
        #expect(Duration.seconds(Int64.min / 2).nanoseconds == .min)
    }

    @Test func aDurationConvertsToTimespecAndTimevalAndBack() {
        let ts = Duration.milliseconds(2500).timespec
        #expect(ts.tv_sec == 2 && ts.tv_nsec == 500_000_000)
        let tv = Duration.milliseconds(2500).timeval
        #expect(tv.tv_sec == 2 && tv.tv_usec == 500_000)
        #expect(Duration.seconds(-1).timespec.tv_sec == 0)
        #expect(Duration(ts) == .milliseconds(2500))
        #expect(ts.nanoseconds == 2_500_000_000)
    }
}
