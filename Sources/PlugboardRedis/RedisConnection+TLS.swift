import CHiredis
import CPlugboardTLS
#if canImport(Glibc)
import Glibc
#endif

/// One TLS bridge: a TCP + TLS connection to the server and the pump thread that carries hiredis'
/// plain RESP to and from it over a socketpair (docs/redis.md, "TLS"). Freed with
/// `pb_tls_bridge_close`, which stops and joins the pump.
///
/// The corresponding C functions are `pb_tls_bridge_open`, `pb_tls_bridge_take_fd`,
/// `pb_tls_bridge_failure` and `pb_tls_bridge_close` (Sources/CPlugboardTLS).
final class TLSBridge {
    private let bridge: OpaquePointer

    /// Connects and completes the handshake, verifying the server's certificate.
    /// - Throws: `RedisError`: `.tls` when the certificate, a local file or the TLS protocol is at
    ///   fault (retrying will not help), `.connect` when the server could not be reached.
    init(host: String, port: Int, tls: RedisTLS, connectTimeout: Duration, keepAlive: Bool, server: String) throws {
        var err = [CChar](repeating: 0, count: 1024)
        var out: OpaquePointer?
        let name = tls.serverName ?? host
        let status = withOptionalCString(tls.caFile) { ca in
            withOptionalCString(tls.certFile) { cert in
                withOptionalCString(tls.keyFile) { key in
                    name.withCString { sni in
                        var o = pb_tls_options(ca_file: ca, cert_file: cert, key_file: key, server_name: sni,
                                               connect_timeout_ms: Int32(clamping: connectTimeout.milliseconds),
                                               keepalive: keepAlive ? 1 : 0)
                        return pb_tls_bridge_open(host, Int32(port), &o, &out, &err, err.count)
                    }
                }
            }
        }
        guard status == Int32(PB_TLS_OK.rawValue), let out else {
            throw TLSBridge.error(status: status, reason: String(cString: err), tls: tls, name: name,
                                  host: host, port: port, server: server)
        }
        bridge = out
    }

    deinit { pb_tls_bridge_close(bridge) }

    /// hiredis' end of the socketpair; the caller owns it from now on (`redisConnectFd`).
    func takeFileDescriptor() -> Int32 { pb_tls_bridge_take_fd(bridge) }

    /// Why the pump stopped (nil while it runs): the server closed, a TLS alert, a broken socket.
    var failure: (status: Int32, reason: String)? {
        var buf = [CChar](repeating: 0, count: 512)
        let status = pb_tls_bridge_failure(bridge, &buf, buf.count)
        return status == Int32(PB_TLS_OK.rawValue) ? nil : (status, String(cString: buf))
    }

    /// What to tell the operator about a failed open: the reason, the files and name that were
    /// used, and what to change.
    static func error(status: Int32, reason: String, tls: RedisTLS, name: String, host: String, port: Int,
                      server: String) -> RedisError {
        let ca = tls.caFile.map { "the CA file \($0)" } ?? "the system's CA store (no redis.tls_ca_file set)"
        switch UInt32(bitPattern: status) {
        case PB_TLS_ERR_CONNECT.rawValue:
            return RedisError(.connect, server: server, "could not connect over TLS: \(reason)",
                              fix: "check that redis-server is running with tls-port \(port) on \(host) (redis-cli --tls -h \(host) -p \(port) --cacert CA ping)")
        case PB_TLS_ERR_VERIFY.rawValue:
            let fix: String
            if reason.contains("mismatch") {
                fix = "connect with a name the server's certificate carries, or set redis.tls_server_name (plugboard tail: --tls-server-name) to one; openssl s_client -connect \(host):\(port) -showcerts shows the certificate"
            } else if reason.contains("expired") || reason.contains("not yet valid") {
                fix = "renew the server's certificate (or correct this machine's clock)"
            } else {
                fix = "set redis.tls_ca_file (plugboard tail: --tls-ca-file) to the PEM file of the CA that signed the server's certificate; openssl s_client -connect \(host):\(port) -showcerts shows who signed it"
            }
            return RedisError(.tls, server: server, "TLS: \(reason); checked with \(ca) and the server name \(name)", fix: fix)
        case PB_TLS_ERR_CONFIG.rawValue:
            return RedisError(.tls, server: server, "TLS: \(reason)",
                              fix: "point redis.tls_ca_file, redis.tls_cert_file and redis.tls_key_file (plugboard tail: --tls-ca-file, --tls-cert-file, --tls-key-file) at readable PEM files")
        case PB_TLS_ERR_PROTOCOL.rawValue:
            return RedisError(.tls, server: server, "TLS: \(reason) (checked with \(ca))",
                              fix: "check that \(host):\(port) is the server's tls-port and that it accepts TLS 1.2 or later")
        default:
            return RedisError(.connect, server: server, "TLS: \(reason)")
        }
    }
}

extension RedisConnection {
    /// After a failed first command on a fresh TLS connection: the server's alert in words, as a
    /// `.tls` error, when it refused us (no or an unknown client certificate); nil otherwise.
    static func tlsRefusal(_ failure: (status: Int32, reason: String)?, tls: RedisTLS, server: String) -> RedisError? {
        guard let failure, UInt32(bitPattern: failure.status) == PB_TLS_ERR_PROTOCOL.rawValue else { return nil }
        let fix: String
        if failure.reason.contains("certificate required") {
            fix = "the server wants a client certificate (tls-auth-clients): set redis.tls_cert_file and redis.tls_key_file (plugboard tail: --tls-cert-file, --tls-key-file)"
        } else if tls.certFile != nil {
            fix = "the server did not accept the client certificate \(tls.certFile!): it must be signed by a CA in the server's tls-ca-cert-file and be valid now"
        } else {
            fix = "check the server's TLS settings (tls-auth-clients, tls-protocols) against this client's"
        }
        return RedisError(.tls, server: server, "the server refused the TLS connection: \(failure.reason)", fix: fix)
    }
}

/// `body` with `s` as a C string, or with NULL when `s` is nil.
private func withOptionalCString<T>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}
