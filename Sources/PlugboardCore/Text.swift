/// Small text helpers shared by every module that reports to people or writes JSON by hand.
public enum Text {
    /// `s` as a JSON string literal, escaped as `JSONWriter` escapes every string.
    public static func jsonQuoted(_ s: String) -> String {
        var w = JSONWriter()
        w.string(s)
        return w.text
    }

    /// `s` with control characters (newline, ESC...) written as `\n`, `\u{1B}`: a plugin's message
    /// then cannot start a forged log line or move the terminal's cursor.
    public static func printable(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.properties.generalCategory == .control { out += "\\u{\(String(u.value, radix: 16, uppercase: true))}" } else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    /// Levenshtein distance between `a` and `b`.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = Array(repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }

    /// The candidate nearest to `word` (case-insensitive), if close enough to be a plausible typo:
    /// at most `max(2, word.count / 3)` edits. For did-you-mean hints.
    public static func closestMatch(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, word.count / 3) ? best.0 : nil
    }
}
