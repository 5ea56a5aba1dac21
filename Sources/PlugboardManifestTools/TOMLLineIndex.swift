/// Where each key of a TOML document is, by line, so that errors found after parsing (a bad value, a
/// missing field) can name the line. TOMLKit reports positions only for syntax errors, so this scans
/// the text the same way a person would: table headers (`[a]`, `[[a]]`, counting array tables from 1)
/// and `key =` lines. It only needs to be right for documents TOMLKit already accepted.
struct TOMLLineIndex {
    /// "plugin.name" -> 3, "match[2].vendor" -> 17, "match[2]" -> 15 (the header line), "config" -> 20.
    private(set) var lines: [String: Int] = [:]

    init(_ text: String) {
        var table = ""
        var arrayCounts: [String: Int] = [:]
        var inMultiline: String?
        var lineNo = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(rawLine)
            if let delim = inMultiline {
                if line.contains(delim) { inMultiline = nil }
                continue
            }
            while let f = line.first, f == " " || f == "\t" { line.removeFirst() }
            if line.isEmpty || line.first == "#" { continue }
            if line.hasPrefix("[[") {
                let name = Self.headerName(line.dropFirst(2), close: "]]")
                let n = (arrayCounts[name] ?? 0) + 1
                arrayCounts[name] = n
                table = "\(name)[\(n)]"
                lines[table] = lines[table] ?? lineNo
                lines[name] = lines[name] ?? lineNo // the array as a whole: its first header
                continue
            }
            if line.hasPrefix("[") {
                table = Self.headerName(line.dropFirst(), close: "]")
                lines[table] = lines[table] ?? lineNo
                continue
            }
            guard let eq = Self.equalsOutsideQuotes(line) else { continue }
            let key = Self.unquote(line[..<eq])
            if key.isEmpty { continue }
            let full = table.isEmpty ? key : "\(table).\(key)"
            lines[full] = lines[full] ?? lineNo
            let value = line[line.index(after: eq)...]
            for delim in ["\"\"\"", "'''"] where value.contains(delim) {
                if value.components(delim).count == 2 { inMultiline = delim }
            }
        }
    }

    /// The line of `field` or, failing that, of its closest enclosing table.
    func line(of field: String) -> Int? {
        var f = field
        while true {
            if let l = lines[f] { return l }
            guard let dot = f.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            f = String(f[..<dot])
        }
    }

    private static func headerName(_ s: Substring, close: String) -> String {
        let end = s.range(of: close)?.lowerBound ?? s.endIndex
        return s[..<end].split(separator: ".").map { unquote($0) }.joined(separator: ".")
    }

    private static func unquote(_ s: Substring) -> String {
        var t = s
        while let f = t.first, f == " " || f == "\t" { t.removeFirst() }
        while let l = t.last, l == " " || l == "\t" { t.removeLast() }
        if t.count >= 2, let f = t.first, f == "\"" || f == "'", t.last == f { t = t.dropFirst().dropLast() }
        return String(t)
    }

    private static func equalsOutsideQuotes(_ s: Substring) -> Substring.Index? {
        var quote: Character?
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if let q = quote { if c == q { quote = nil } }
            else if c == "\"" || c == "'" { quote = c }
            else if c == "=" { return i }
            else if c == "#" { return nil }
            i = s.index(after: i)
        }
        return nil
    }
}

extension Substring {
    func range(of needle: String) -> Range<Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<(index(i, offsetBy: needle.count)) }
            i = index(after: i)
        }
        return nil
    }

    func components(_ sep: String) -> [Substring] {
        var out: [Substring] = []
        var rest = self
        while let r = rest.range(of: sep) {
            out.append(rest[..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        out.append(rest)
        return out
    }
}
