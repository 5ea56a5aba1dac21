public enum PlugboardCoreVersion { public static let string = "0.1.0" }
