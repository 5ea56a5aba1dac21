import Foundation
import PlugboardTestSupport

/// The path of a build product (executable or `lib<name>.so`), or nil when it was not built.
func productBinary(_ name: String) -> String? {
    let p = PackagePaths.product(name)
    return FileManager.default.isExecutableFile(atPath: p) || FileManager.default.fileExists(atPath: p) ? p : nil
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `binary` to completion and collects its output (both pipes drained concurrently).
func runProcess(_ binary: String, _ args: [String], env: [String: String], cwd: String? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    // Keep the environment minimal and explicit, so a developer's PLUGBOARD_* does not leak in.
    var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
    environment.merge(env) { $1 }
    p.environment = environment
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data()  // written by one block, read after group.wait(): ordered by the group
    nonisolated(unsafe) var errData = Data()  // same
    DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    group.wait()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}
