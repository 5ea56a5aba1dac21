import ArgumentParser
import Foundation
import PlugboardManifest

/// `plugboard new NAME`: a new plugin from a template in Templates/<language>/.
struct NewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create a new plugin from a template: code, manifest, Makefile and a session to try it on.",
        discussion: """
            Writes DIR/NAME/ from Templates/LANGUAGE/ (found next to this plugboard, in \
            $PLUGBOARD_TEMPLATES or /usr/share/plugboard/templates), with the plugin's name, the SDK \
            header's directory, the Swift SDK package's directory (swift) and this plugboard's path \
            filled in. Languages: c (the default), cpp, swift. Then: make, make test, make try, \
            make watch (docs/plugin-guide.md).
            """)

    @Argument(help: "The plugin's name: lowercase letters, digits, '-', '_' and '.', e.g. usb-logger.")
    var name: String

    @Option(name: .customLong("dir"), help: ArgumentHelp("Where to create the plugin's directory.", valueName: "DIR"))
    var parent: String = "."

    @Option(help: "The template's language: c, cpp or swift (a directory of the templates).")
    var language: String = "c"

    @Option(help: ArgumentHelp("The templates directory (default: found as described above).", valueName: "DIR"))
    var templates: String?

    func validate() throws {
        if let finding = ManifestValidation.pluginName(name) {
            throw ValidationError("plugin name: \(finding.problem); \(finding.fix)")
        }
    }

    func run() throws {
        let fm = FileManager.default
        let exe = Self.executablePath
        guard let root = templates ?? ProcessInfo.processInfo.environment["PLUGBOARD_TEMPLATES"]
                ?? Self.findUpwards(from: exe, "Templates") ?? Self.findUpwards(from: exe, "share/plugboard/templates")
                ?? Self.existing("/usr/share/plugboard/templates") else {
            throw CLI.Failure("no templates found next to \(exe), in $PLUGBOARD_TEMPLATES or /usr/share/plugboard/templates (fix: give --templates DIR)")
        }
        let source = root + "/" + language
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: source, isDirectory: &isDir), isDir.boolValue else {
            let known = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            throw CLI.Failure("\(source): no template for language '\(language)' (fix: use one of \(known.joined(separator: ", ")))")
        }
        // The header: the source tree's SDK, else the installed one beside this binary's prefix
        // (PREFIX/include/plugboard, what the package and `make install` put there), else pkg-config's.
        guard let sdk = Self.findUpwards(from: exe, "SDK/include") ?? Self.findUpwards(from: exe, "include/plugboard")
                ?? Self.pkgConfigIncludeDir() else {
            throw CLI.Failure("plugboard.h not found next to \(exe), under its prefix (include/plugboard) or through pkg-config (fix: install the SDK header and plugboard.pc)")
        }
        let target = (parent as NSString).appendingPathComponent(name)
        if fm.fileExists(atPath: target) {
            throw CLI.Failure("\(target) already exists (fix: choose another name or --dir, or remove it)")
        }
        // The Swift SDK as a package of its own (SDK/swift: PlugboardSDK and the header, no other
        // dependency), for the swift template's path dependency.
        let sdkSwift = Self.findUpwards(from: exe, "SDK/swift") ?? Self.findUpwards(from: exe, "share/plugboard/sdk/swift")
            ?? Self.existing("/usr/share/plugboard/sdk/swift")
            ?? "/usr/share/plugboard/sdk/swift"
        let values = ["name": name, "sdk_include": sdk, "plugboard": exe, "sdk_swift": sdkSwift]
        // Every file below the template, subdirectories included (e.g. session.expected/).
        let files = (fm.enumerator(atPath: source)?.allObjects as? [String] ?? [])
            .filter { !$0.split(separator: "/").contains { $0.hasPrefix(".") } }
            .filter { var d: ObjCBool = false; return fm.fileExists(atPath: source + "/" + $0, isDirectory: &d) && !d.boolValue }
            .sorted()
        do {
            try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
            for file in files {
                try fm.createDirectory(atPath: ((target + "/" + file) as NSString).deletingLastPathComponent,
                                       withIntermediateDirectories: true)
                var text = try String(contentsOfFile: source + "/" + file, encoding: .utf8)
                for (key, value) in values { text = text.replacingOccurrences(of: "{{\(key)}}", with: value) }
                if let open = text.range(of: "{{"), let close = text.range(of: "}}", range: open.upperBound..<text.endIndex) {
                    throw CLI.Failure("\(source)/\(file): unknown placeholder \(text[open.lowerBound..<close.upperBound]) (fix: the template uses only \(values.keys.sorted().map { "{{\($0)}}" }.joined(separator: ", ")))")
                }
                try text.write(toFile: target + "/" + file, atomically: true, encoding: .utf8)
            }
        } catch let e as CLI.Failure {
            try? fm.removeItem(atPath: target)
            throw e
        }
        print("created \(target)/ (\(files.joined(separator: ", "))) from \(source)")
        print("next: cd \(target) && make && make test && make try")
    }

    /// This plugboard's own path (so the generated Makefile runs the same one).
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// `relative` in the executable's directory or one of its parents (the source tree when
    /// plugboard runs from .build/), as an absolute path.
    static func findUpwards(from executable: String, _ relative: String) -> String? {
        var dir = (executable as NSString).deletingLastPathComponent
        for _ in 0..<6 {
            if let found = existing(dir + "/" + relative) { return found }
            let up = (dir as NSString).deletingLastPathComponent
            if up == dir { break }
            dir = up
        }
        return nil
    }

    /// `pkg-config --variable=includedir plugboard`, when that names a directory holding plugboard.h.
    static func pkgConfigIncludeDir() -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pkg-config")
        p.arguments = ["--variable=includedir", "plugboard"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let dir = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard p.terminationStatus == 0, !dir.isEmpty, FileManager.default.fileExists(atPath: dir + "/plugboard.h") else { return nil }
        return dir
    }

    static func existing(_ path: String) -> String? {
        FileManager.default.fileExists(atPath: path) ? (path as NSString).standardizingPath : nil
    }
}
