import ArgumentParser
import Foundation
import PlugboardRedis

/// `plugboard tail`: prints the events of hosts' Redis streams as they arrive, like `udevadm monitor`.
///
/// Exit codes: 0 after `--count` events (or on SIGINT), 1 on a Redis error (message names the
/// server without its password and what to do), 64 on a usage error.
struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print device events from hosts' Redis streams as they arrive.",
        discussion: """
            Reads plugboard:{HOST}:events with XREAD BLOCK (from --from, default: only new events).
            With --group and --consumer it reads as one consumer of a Redis consumer group
            (XREADGROUP, and XACK only after an entry is printed: at least once; its own unacknowledged
            entries first, and with --claim-idle those another consumer left pending), so several
            tails share the stream: the scale-out path.
            --host may be given several times, and --host-pattern GLOB adds every host whose stream
            matches (found with SCAN on every node of a Redis Cluster, again every 5 s): each stream is
            read on a connection of its own, and lines name their host (PLUGBOARD[HOST ID], "host" in
            --json). Against a Redis Cluster, MOVED and ASK redirects are followed, and when a node is
            gone (a failover) the others are tried (--cluster-node names more, also for the start).
            URL forms: redis://[user:password@]host:port/db, rediss://[user:password@]host:port/db (TLS,
            with --tls-ca-file and, for servers that ask for one, --tls-cert-file/--tls-key-file),
            unix:///path/to/redis.sock?db=N.
            """)

    @Option(help: ArgumentHelp("The Redis server.", valueName: "URL"))
    var redis: String = "redis://127.0.0.1:6379/0"

    @Option(name: .customLong("cluster-node"), help: ArgumentHelp("Redis Cluster: another node to try when the --redis one is unreachable, also at start (repeatable; credentials and TLS from --redis). Once connected, tail learns every node with CLUSTER NODES.", valueName: "HOST:PORT"))
    var clusterNode: [String] = []

    @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("rediss://: PEM CA file the server's certificate must chain to (default: the system's store).", valueName: "FILE"))
    var tlsCAFile: String?

    @Option(name: .customLong("tls-cert-file"), help: ArgumentHelp("rediss://: PEM client certificate, for a server with tls-auth-clients.", valueName: "FILE"))
    var tlsCertFile: String?

    @Option(name: .customLong("tls-key-file"), help: ArgumentHelp("rediss://: PEM private key of --tls-cert-file.", valueName: "FILE"))
    var tlsKeyFile: String?

    @Option(name: .customLong("tls-server-name"), help: ArgumentHelp("rediss://: the name the server's certificate must carry (default: the URL's host).", valueName: "NAME"))
    var tlsServerName: String?

    @Option(help: ArgumentHelp("Whose stream to read; repeat for several hosts (default: this machine's host name, unless --host-pattern).", valueName: "H"))
    var host: [String] = []

    @Option(name: .customLong("host-pattern"), help: ArgumentHelp("Also read every host whose stream plugboard:{H}:events exists and H matches this Redis glob (* ? [a-z]), found with SCAN on every node, again every 5 s.", valueName: "GLOB"))
    var hostPattern: String?

    @Option(help: ArgumentHelp("Start after this stream ID (0 = the whole stream; default $ = new events only). With --group: where a new group starts.", valueName: "ID"))
    var from: String?

    @Option(help: ArgumentHelp("Read as a member of this consumer group (created if missing).", valueName: "G"))
    var group: String?

    @Option(help: ArgumentHelp("With --group: take over entries another consumer left unacknowledged this long (e.g. 30s, 500ms), so a dead consumer's entries are not stranded.", valueName: "DURATION"))
    var claimIdle: String?

    @Option(help: ArgumentHelp("This reader's name within --group.", valueName: "C"))
    var consumer: String?

    @Option(help: "Stop after this many events.")
    var count: Int?

    @Flag(help: "Print each entry as one JSON object (as monitor --json prints events, with \"id\") instead of a line for people.")
    var json = false

    func validate() throws {
        if (group == nil) != (consumer == nil) {
            throw ValidationError("--group and --consumer go together: give both (e.g. --group workers --consumer \(StreamKeys.localHost))")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let dup = Dictionary(grouping: host, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw ValidationError("--host \(dup) is given twice: name each host once")
        }
        if let hostPattern, hostPattern.isEmpty || hostPattern.contains("}") {
            throw ValidationError("--host-pattern '\(hostPattern)': give a glob of host names such as 'web-*' or 'rack[12]-*' (without braces)")
        }
        if let from, from != "$", from != "0", StreamID(from) == nil, UInt64(from) == nil {
            throw ValidationError("--from '\(from)' is not a stream ID: use 0, $, a time in ms, or MS-SEQ as shown by tail")
        }
        let url: RedisURL
        do { url = try RedisURL(parsing: redis) } catch { throw ValidationError("--redis: \(error)") }
        let tlsFlags = [("--tls-ca-file", tlsCAFile), ("--tls-cert-file", tlsCertFile), ("--tls-key-file", tlsKeyFile),
                        ("--tls-server-name", tlsServerName)].filter { $0.1 != nil }
        if url.tls == nil, let (flag, _) = tlsFlags.first {
            throw ValidationError("\(flag) needs a rediss:// URL (--redis \(url.redacted) is without TLS)")
        }
        for node in clusterNode where node.hasPrefix(":") || ClusterRedirect("MOVED 0 \(node)", like: url) == nil {
            throw ValidationError("--cluster-node '\(node)' is not HOST:PORT: give another node of the cluster, such as 10.0.0.2:6379 or [fd00::2]:6379")
        }
        if (tlsCertFile == nil) != (tlsKeyFile == nil) {
            throw ValidationError("--tls-cert-file and --tls-key-file go together: give both, the client certificate and its private key")
        }
    }

    /// The --redis URL with the --tls-* flags.
    func redisURL() throws -> RedisURL {
        var url = try RedisURL(parsing: redis)
        if url.tls != nil {
            url.tls = RedisTLS(caFile: tlsCAFile, certFile: tlsCertFile, keyFile: tlsKeyFile, serverName: tlsServerName)
        }
        return url
    }

    func run() throws {
        let hosts = host.isEmpty && hostPattern == nil ? [StreamKeys.localHost] : host
        var options = StreamTail.Options(url: try redisURL(), host: hosts.first ?? "")
        options.from = from
        options.group = group
        options.consumer = consumer
        options.count = count
        options.clusterNodes = clusterNode.compactMap { ClusterRedirect("MOVED 0 \($0)", like: options.url)?.node }
        if let claimIdle {
            guard group != nil else { throw ValidationError("--claim-idle needs --group and --consumer") }
            guard let ms = Self.milliseconds(claimIdle) else {
                throw ValidationError("--claim-idle \(claimIdle): expected a duration such as 30s, 500ms or 2m")
            }
            options.claimIdleMs = ms
        }
        let json = self.json
        let as_ = group.map { " as \($0)/\(consumer!)" } ?? ""
        do {
            if hosts.count == 1 && hostPattern == nil {
                let tail = try StreamTail(options: options)
                tail.onRedirect = { r in Self.notice("following \(r.kind == .moved ? "MOVED" : "ASK") to \(r.node.redacted)") }
                Self.notice("reading \(tail.key) on \(options.url.redacted)\(as_)")
                try tail.run(onConnectionLoss: { error in
                    Self.notice("connection lost (\(error)); reconnecting with backoff")
                }) { entry in try Self.print(entry, host: nil, json: json) }
            } else {
                var several = MultiHostTail.Options(base: options, hosts: hosts, pattern: hostPattern)
                several.count = count
                let tail = MultiHostTail(options: several)
                Self.notice("reading \(hosts.map { StreamKeys(host: $0).events }.joined(separator: ", "))"
                    + (hostPattern.map { "\(hosts.isEmpty ? "" : " and ")every \(StreamKeys(host: $0).events)" } ?? "")
                    + " on \(options.url.redacted)\(as_)")
                try tail.run(notice: { Self.notice($0) }) { host, entry in try Self.print(entry, host: host, json: json) }
            }
        } catch let error as RedisError {
            throw TailFailure(description: "plugboard tail: \(error)")
        } catch {
            throw TailFailure(description: "plugboard tail: cannot write to standard output (\(error)); what was not printed is not acknowledged")
        }
    }

    /// A line on stderr: what tail does, apart from the entries.
    static func notice(_ text: String) {
        FileHandle.standardError.write(Data("plugboard tail: \(text)\n".utf8))
    }

    /// One entry on stdout, as a line for people or (`json`) the event's JSON object; `host` names
    /// it when several hosts are read.
    static func print(_ entry: StreamEntry, host: String?, json: Bool) throws {
        let line: String
        if json {
            do { line = try StreamTail.json(entry, host: host) } catch {
                notice("skipped \(error)")
                return
            }
        } else {
            line = StreamTail.format(entry, host: host)
        }
        // Unbuffered, one line at a time, so a pipe (the demo, a test) sees each event at once.
        // A write that fails (the reader went away) ends the tail before the entry is
        // acknowledged: with a group it is delivered again (at least once).
        try FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
    }

    /// "500ms", "30s", "2m", or a bare number of milliseconds.
    static func milliseconds(_ text: String) -> Int? {
        for (suffix, scale) in [("ms", 1), ("s", 1000), ("m", 60_000)] where text.hasSuffix(suffix) {
            guard let n = Int(text.dropLast(suffix.count)), n >= 0 else { return nil }
            return n * scale
        }
        return Int(text).flatMap { $0 >= 0 ? $0 : nil }
    }
}

/// A Redis failure, printed as its message (no stack trace) with exit code 1.
struct TailFailure: Error, CustomStringConvertible {
    var description: String
}
