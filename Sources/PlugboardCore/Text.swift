/// Small text helpers shared by every module that reports to people or writes JSON by hand.
public enum Text {
    /// `s` as a JSON string literal, escaped as `JSONWriter` escapes every string.
    public static func jsonQuoted(_ s: String) -> String {
        var w = JSONWriter()
        w.string(s)
        return w.text
    }

    /// `s` with the password of every URL in it replaced by `***` (`redis://alice:***@host`; a
    /// user-info without a colon, which may be a password typed without its colon, becomes `***`
    /// whole). For any text that may hold a URL the operator wrote: configuration values, the
    /// flags they came from, error messages.
    public static func redactingCredentials(_ s: String) -> String {
        guard s.contains("@") else { return s }
        var out = ""
        var rest = Substring(s)
        while let scheme = rest.firstRange(of: "://") {
            out += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            // The authority ends at the path, or at whitespace (a URL inside a sentence).
            let end = rest.firstIndex { $0 == "/" || $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" } ?? rest.endIndex
            guard let at = rest[..<end].lastIndex(of: "@") else { continue }
            let info = rest[..<at]
            if let colon = info.firstIndex(of: ":") { out += info[..<colon] + ":***" } else { out += "***" }
            rest = rest[at...]
        }
        return out + rest
    }

    /// A plugin's log message made safe for one record of the host's log: control characters,
    /// line and paragraph separators and bidirectional overrides escaped (`\n`, `\u{1B}`), and
    /// backslashes doubled, so the record cannot be mistaken for two, nor a typed backslash-n
    /// for a newline it sent. At most `limit` UTF-8 bytes of `s` are kept (cut on a character
    /// boundary); a longer message ends with `...[N bytes cut]`.
    public static func logRecord(_ s: String, limit: Int) -> String {
        var out = ""
        var kept = 0
        let total = s.utf8.count
        for u in s.unicodeScalars {
            let size = UTF8.width(u)
            if kept + size > limit { break }
            kept += size
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let category = u.properties.generalCategory
                let bidi = (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
                    || u.value == 0x200E || u.value == 0x200F || u.value == 0x061C
                if category == .control || category == .lineSeparator || category == .paragraphSeparator || bidi {
                    out += "\\u{\(String(u.value, radix: 16, uppercase: true))}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        if kept < total { out += "...[\(total - kept) bytes cut]" }
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
