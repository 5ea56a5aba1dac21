import CPlugboardSupport

#if canImport(Glibc)
import Glibc
#endif

/// A set of CPUs the host's hot threads (the event source and the plugin workers) are pinned
/// to: `performance.cpu_affinity`, `--cpu-affinity`. Empty means not pinned (the default).
///
/// Why pin: a worker asleep on the ring's futex is woken by the source. Unpinned, the scheduler
/// wakes it on an idle CPU, and waking an idle CPU (an IPI, and on a VM the hypervisor scheduling
/// the halted vCPU again) is the tail of the source-to-callback latency. Pinned to the source's
/// CPU, the worker runs as soon as the source goes back to its poll, on a CPU that is already
/// awake. The cost: the pinned threads share those CPUs, so plugins that need more than one CPU
/// between them should get a longer list, or none (docs/benchmarks.md, "## udev").
public struct CPUAffinity: Sendable, Equatable, CustomStringConvertible {
    /// Ascending, without duplicates.
    public let cpus: [Int]

    public init(_ cpus: [Int]) { self.cpus = Array(Set(cpus)).sorted() }

    public static let none = CPUAffinity([])

    public var isEmpty: Bool { cpus.isEmpty }

    /// The list in the kernel's cpulist form ("0-2,5"), as `taskset -c` and
    /// /proc/PID/status (Cpus_allowed_list) write it; "" when empty.
    public var description: String { Self.format(cpus) }

    static func format(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < cpus.count {
            var j = i
            while j + 1 < cpus.count && cpus[j + 1] == cpus[j] + 1 { j += 1 }
            parts.append(j == i ? "\(cpus[i])" : "\(cpus[i])-\(cpus[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// Parses a cpulist: CPU numbers and ranges separated by commas ("1", "0-3", "0,2-3").
    /// "" is no pinning. The reason names what is wrong in the text.
    public static func parse(_ text: String) -> Result<CPUAffinity, CPUAffinityError> {
        let limit = Int(pbs_cpu_setsize())
        var cpus: [Int] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let part = raw.trimmingSpaces
            if part.isEmpty {
                if text.trimmingSpaces.isEmpty { return .success(.none) }
                return .failure(.init("\"\(text)\" has an empty entry"))
            }
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, let lo = Int(bounds[0]), let hi = Int(bounds[bounds.count - 1]),
                  bounds.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) })
            else {
                return .failure(.init("\"\(part)\" is not a CPU number or a range like 0-3"))
            }
            guard lo <= hi else { return .failure(.init("the range \"\(part)\" runs backwards")) }
            guard hi < limit else { return .failure(.init("CPU \(hi) is past the largest CPU number Linux supports (\(limit - 1))")) }
            cpus.append(contentsOf: lo...hi)
        }
        return .success(CPUAffinity(cpus))
    }

    /// The CPUs this process may run on now (its own affinity, as systemd's CPUAffinity= or
    /// a cpuset left it).
    public static var allowed: CPUAffinity {
        let max = Int(pbs_cpu_setsize())
        var out = [Int32](repeating: 0, count: max)
        let n = out.withUnsafeMutableBufferPointer { pbs_allowed_cpus($0.baseAddress, Int32(max)) }
        return n <= 0 ? .none : CPUAffinity(out.prefix(Int(n)).map(Int.init))
    }

    /// Throws unless every CPU in the set is one this process may run on (pinning to a CPU
    /// outside it fails, or with a partial list silently runs on fewer CPUs than configured).
    public func validate() throws {
        if isEmpty { return }
        let allowed = Self.allowed
        let missing = cpus.filter { !allowed.cpus.contains($0) }
        if missing.isEmpty { return }
        throw PlugboardError(
            code: "config.cpu_affinity",
            reason: "CPU \(Self.format(missing)) is not one this process may run on (allowed: \(allowed))",
            fix: "list CPUs from \(allowed) (for example \"\(allowed.cpus.last ?? 0)\"), or \"\" not to pin")
    }

    /// Pins the calling thread. Returns 0 or an errno value.
    @discardableResult
    func pinCurrentThread() -> Int32 {
        if isEmpty { return 0 }
        let list = cpus.map(Int32.init)
        return list.withUnsafeBufferPointer { pbs_pin_current_thread($0.baseAddress, Int32($0.count)) }
    }
}

/// Why a cpulist did not parse.
public struct CPUAffinityError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private extension StringProtocol {
    var trimmingSpaces: Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
