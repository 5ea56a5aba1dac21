#if canImport(Glibc)
import Glibc
#endif

/// Whether a file may be trusted to hold code the daemon runs (like sshd's StrictModes): the file
/// and every directory above it, after symlinks are resolved, must be owned by a trusted user (root
/// or the daemon's own) and not writable by group or others. A directory writable by others with
/// the sticky bit (such as /tmp) is allowed above an entry a trusted user owns: others cannot
/// rename or replace what they do not own there.
public enum FileTrust {
    /// Why a file is not trusted, naming the path at fault.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The file the check was for.
        public var file: String
        /// The file or directory at fault (the file itself, or one above it).
        public var path: String
        public var owner: UInt32
        public var mode: UInt32
        /// What is wrong, e.g. "is writable by group or others".
        public var reason: String
        public var fix: String

        public var description: String {
            let subject = path == file ? path : "\(path) (above \(file))"
            return "\(subject) \(reason): owner \(FileTrust.userName(owner)) (uid \(owner)), mode \(String(mode & 0o7777, radix: 8)) (fix: \(fix))"
        }
    }

    /// root and the calling process's effective user.
    public static var defaultOwners: Set<UInt32> { [0, geteuid()] }

    /// Checks `path` and every directory above it.
    /// - Returns: the first problem from the root down, or nil when the file can be trusted.
    public static func check(_ path: String, trustedOwners: Set<UInt32> = defaultOwners) -> Problem? {
        guard let real = realpath(path, nil) else {
            return Problem(file: path, path: path, owner: 0, mode: 0, reason: "cannot be resolved (\(Errno.text(errno)))",
                           fix: "check the path")
        }
        let resolved = String(cString: real)
        free(real)
        var prefixes = ["/"]
        var current = ""
        for part in resolved.split(separator: "/") {
            current += "/" + part
            prefixes.append(current)
        }
        var stats: [stat] = []
        for p in prefixes {
            var st = stat()
            guard lstat(p, &st) == 0 else {
                return Problem(file: path, path: p, owner: 0, mode: 0, reason: "cannot be read (\(Errno.text(errno)))", fix: "check the path")
            }
            stats.append(st)
        }
        for (i, p) in prefixes.enumerated() {
            let st = stats[i]
            let owner = UInt32(st.st_uid), mode = UInt32(st.st_mode)
            if !trustedOwners.contains(owner) {
                return Problem(file: path, path: p, owner: owner, mode: mode,
                               reason: "is owned by a user the daemon does not trust",
                               fix: "chown root \(p), or install the plugin where only root can write")
            }
            if mode & 0o022 != 0 {
                let isDirectory = mode & UInt32(S_IFMT) == UInt32(S_IFDIR)
                let sticky = mode & UInt32(S_ISVTX) != 0
                if isDirectory && sticky && i + 1 < prefixes.count && trustedOwners.contains(UInt32(stats[i + 1].st_uid)) {
                    continue
                }
                return Problem(file: path, path: p, owner: owner, mode: mode, reason: "is writable by group or others",
                               fix: "chmod go-w \(p)")
            }
        }
        return nil
    }

    /// The user's name, or "uid N" when the user database has none.
    public static func userName(_ uid: UInt32) -> String {
        var pw = passwd(), out: UnsafeMutablePointer<passwd>? = nil
        var buf = [CChar](repeating: 0, count: 1024)
        guard getpwuid_r(uid, &pw, &buf, buf.count, &out) == 0, let out else { return "uid \(uid)" }
        return String(cString: out.pointee.pw_name)
    }
}
