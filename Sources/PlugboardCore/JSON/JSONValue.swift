/// A JSON document in memory: what an `Encodable` value becomes before `JSONWriter` writes it
/// (`JSONValue.encoding(_:)`), for the outputs built from Codable structs (manifest commands,
/// the HTTP endpoints). Objects keep their members in order.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.uint(let x), .uint(let y)): x == y
        case (.double(let x), .double(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.elementsEqual(y) { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    /// Writes the value. `sortedKeys` orders each object's members by key (as `JSONEncoder`'s
    /// `.sortedKeys` does), for outputs that people diff.
    public func write<S: JSONSink>(into w: inout JSONWriter<S>, sortedKeys: Bool = false) {
        switch self {
        case .null: w.null()
        case .bool(let b): w.bool(b)
        case .int(let i): w.number(Int(i))
        case .uint(let u): w.number(u)
        case .double(let d): w.number(d)
        case .string(let s): w.string(s)
        case .array(let items):
            w.beginArray()
            for item in items { item.write(into: &w, sortedKeys: sortedKeys) }
            w.endArray()
        case .object(let members):
            w.beginObject()
            for m in sortedKeys ? members.sorted(by: { $0.key < $1.key }) : members {
                w.key(m.key)
                m.value.write(into: &w, sortedKeys: sortedKeys)
            }
            w.endObject()
        }
    }

    /// The value as JSON text; `indent` > 0 pretty-prints.
    public func text(indent: Int = 0, sortedKeys: Bool = false) -> String {
        var w = JSONWriter(indent: indent)
        write(into: &w, sortedKeys: sortedKeys)
        return w.text
    }

    /// The JSON document of an `Encodable` value. Optional members encoded with `encodeIfPresent`
    /// (the synthesized default) are left out when nil, as `JSONEncoder` leaves them.
    /// - Throws: what the value's `encode(to:)` throws.
    public static func encoding<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = TreeNode()
        try value.encode(to: TreeEncoder(node: root, codingPath: []))
        return root.value
    }
}

/// One node of the document being encoded: containers hand out child nodes and fill them later.
private final class TreeNode {
    enum Content { case empty, leaf(JSONValue), object([(String, TreeNode)]), array([TreeNode]) }
    var content: Content = .empty

    var value: JSONValue {
        switch content {
        case .empty: .object([])
        case .leaf(let v): v
        case .object(let members): .object(members.map { ($0.0, $0.1.value) })
        case .array(let items): .array(items.map(\.value))
        }
    }

    func child(key: String) -> TreeNode {
        let c = TreeNode()
        if case .object(var members) = content {
            members.removeAll { $0.0 == key }
            members.append((key, c))
            content = .object(members)
        } else {
            content = .object([(key, c)])
        }
        return c
    }

    func appendChild() -> TreeNode {
        let c = TreeNode()
        if case .array(var items) = content {
            items.append(c)
            content = .array(items)
        } else {
            content = .array([c])
        }
        return c
    }
}

private struct TreeEncoder: Encoder {
    let node: TreeNode
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy _: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.content {} else { node.content = .object([]) }
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = node.content {} else { node.content = .array([]) }
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(node: node, codingPath: codingPath) }
}

/// Encodes one value into `node`: primitives become leaves, anything else encodes itself.
private func encodeValue<T: Encodable>(_ value: T, into node: TreeNode, codingPath: [any CodingKey]) throws {
    switch value {
    case let v as Bool: node.content = .leaf(.bool(v))
    case let v as String: node.content = .leaf(.string(v))
    case let v as Double: node.content = .leaf(.double(v))
    case let v as Float: node.content = .leaf(.double(Double(v)))
    case let v as any SignedInteger & FixedWidthInteger: node.content = .leaf(.int(Int64(v)))
    case let v as any UnsignedInteger & FixedWidthInteger: node.content = .leaf(.uint(UInt64(v)))
    default: try value.encode(to: TreeEncoder(node: node, codingPath: codingPath))
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: TreeNode
    var codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { node.child(key: key.stringValue).content = .leaf(.null) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try encodeValue(value, into: node.child(key: key.stringValue), codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let c = node.child(key: key.stringValue)
        c.content = .object([])
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: c, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let c = node.child(key: key.stringValue)
        c.content = .array([])
        return UnkeyedContainer(node: c, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(node: node.child(key: "super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder {
        TreeEncoder(node: node.child(key: key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: TreeNode
    var codingPath: [any CodingKey]
    var count: Int { if case .array(let items) = node.content { items.count } else { 0 } }

    mutating func encodeNil() throws { node.appendChild().content = .leaf(.null) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeValue(value, into: node.appendChild(), codingPath: codingPath)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let c = node.appendChild()
        c.content = .object([])
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: c, codingPath: codingPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let c = node.appendChild()
        c.content = .array([])
        return UnkeyedContainer(node: c, codingPath: codingPath)
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(node: node.appendChild(), codingPath: codingPath) }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let node: TreeNode
    var codingPath: [any CodingKey]

    mutating func encodeNil() throws { node.content = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try encodeValue(value, into: node, codingPath: codingPath) }
}
