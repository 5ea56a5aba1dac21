/// How a `rediss://` connection checks the server and proves who it is (docs/redis.md, "TLS").
///
/// Set from `redis.tls_ca_file`, `redis.tls_cert_file`, `redis.tls_key_file` and
/// `redis.tls_server_name` (or `plugboard tail`'s `--tls-*` flags); the URL only says "TLS".
public struct RedisTLS: Sendable, Equatable {
    /// PEM file of the CA certificates the server's certificate must chain to; nil: the
    /// system's store (`/etc/ssl/certs`, as `openssl` uses it).
    public var caFile: String?
    /// PEM client certificate (with its chain) for servers that ask for one (`tls-auth-clients`).
    public var certFile: String?
    /// PEM private key of `certFile`.
    public var keyFile: String?
    /// The name (or IP address) the server's certificate must carry; nil: the URL's host.
    /// Also sent as SNI when it is a name.
    public var serverName: String?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    /// The settings in words, for `config check` and logs: `ca=/etc/ssl/redis-ca.pem cert=none name=URL host`.
    public var summary: String {
        "ca=\(caFile ?? "system store") cert=\(certFile ?? "none")" + (certFile != nil ? " key=\(keyFile ?? certFile!)" : "")
            + " server_name=\(serverName ?? "the URL's host")"
    }
}
