/// A Python literal as found in `.npy` headers: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
///
/// Only the forms numpy (and hand-written headers) use are understood: dicts, tuples, lists, strings,
/// integers, `True`/`False`/`None`. Parsing works on bytes, since every token is ASCII; string contents
/// are decoded as UTF-8 (falling back to Latin-1, the encoding of version 1 and 2 headers).
enum PythonLiteral: Equatable {
    case string(String)
    /// Integers keep their decimal text: `Int` conversion (and its overflow) is the caller's business.
    case integer(negative: Bool, digits: String)
    case bool(Bool)
    case none
    case tuple([PythonLiteral])
    case list([PythonLiteral])
    /// Key–value pairs in source order (keys may be any literal; duplicates are kept).
    case dict([(key: PythonLiteral, value: PythonLiteral)])

    static func == (lhs: PythonLiteral, rhs: PythonLiteral) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.integer(let na, let da), .integer(let nb, let db)): return na == nb && da == db
        case (.bool(let a), .bool(let b)): return a == b
        case (.none, .none): return true
        case (.tuple(let a), .tuple(let b)), (.list(let a), .list(let b)): return a == b
        case (.dict(let a), .dict(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The value as an `Int`, if it is an integer that fits.
    var intValue: Int? {
        guard case .integer(let negative, let digits) = self else { return nil }
        var value = 0
        for digit in digits.utf8 {
            let (scaled, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = scaled.addingReportingOverflow(Int(digit - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = next
        }
        return negative ? -value : value
    }

    /// A short rendering for error messages.
    var summary: String {
        switch self {
        case .string(let s): return "'\(s)'"
        case .integer(let negative, let digits): return (negative ? "-" : "") + digits
        case .bool(let b): return b ? "True" : "False"
        case .none: return "None"
        case .tuple(let items): return "(" + items.map(\.summary).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
        case .list(let items): return "[" + items.map(\.summary).joined(separator: ", ") + "]"
        case .dict(let pairs): return "{" + pairs.map { "\($0.key.summary): \($0.value.summary)" }.joined(separator: ", ") + "}"
        }
    }

    /// Parses `bytes` as exactly one literal, optionally surrounded by whitespace.
    ///
    /// - Throws: `PythonLiteral.ParseError` describing the first problem and its byte offset.
    static func parse(_ bytes: [UInt8]) throws -> PythonLiteral {
        var parser = Parser(bytes: bytes)
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected text after the literal") }
        return value
    }

    struct ParseError: Error, CustomStringConvertible {
        let message: String
        let offset: Int
        var description: String { "\(message) at byte \(offset)" }
    }

    /// Recursive descent over the bytes. Nesting is limited so hostile input cannot exhaust the stack.
    private struct Parser {
        static let maximumDepth = 32
        let bytes: [UInt8]
        var position = 0

        func error(_ message: String) -> ParseError { ParseError(message: message, offset: position) }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C {
                position += 1
            }
        }

        mutating func parseValue(depth: Int) throws -> PythonLiteral {
            guard depth < Self.maximumDepth else { throw error("literal nested more than \(Self.maximumDepth) deep") }
            skipWhitespace()
            guard let byte = current else { throw error("unexpected end of header") }
            switch byte {
            case UInt8(ascii: "{"): return try parseDict(depth: depth)
            case UInt8(ascii: "("): return try parseParenthesised(depth: depth)
            case UInt8(ascii: "["):
                position += 1
                return .list(try parseItems(closing: UInt8(ascii: "]"), depth: depth).items)
            case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseInteger()
            default: return try parseName()
            }
        }

        mutating func parseDict(depth: Int) throws -> PythonLiteral {
            position += 1  // "{"
            var pairs: [(key: PythonLiteral, value: PythonLiteral)] = []
            while true {
                skipWhitespace()
                if current == UInt8(ascii: "}") { position += 1; return .dict(pairs) }
                let key = try parseValue(depth: depth + 1)
                skipWhitespace()
                guard current == UInt8(ascii: ":") else { throw error("expected ':' after a dict key") }
                position += 1
                let value = try parseValue(depth: depth + 1)
                pairs.append((key, value))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "}"): position += 1; return .dict(pairs)
                default: throw error("expected ',' or '}' in a dict")
                }
            }
        }

        /// `( … )`: a tuple, or — as in Python — just the inner value when it holds one item and no comma.
        mutating func parseParenthesised(depth: Int) throws -> PythonLiteral {
            position += 1  // "("
            let (items, sawComma) = try parseItems(closing: UInt8(ascii: ")"), depth: depth)
            if items.count == 1 && !sawComma { return items[0] }
            return .tuple(items)
        }

        /// Comma-separated values up to `closing` (a trailing comma is allowed). Expects `position`
        /// just past the opening bracket.
        mutating func parseItems(closing: UInt8, depth: Int) throws -> (items: [PythonLiteral], sawComma: Bool) {
            var items: [PythonLiteral] = []
            var sawComma = false
            while true {
                skipWhitespace()
                if current == closing { position += 1; return (items, sawComma) }
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                if current == UInt8(ascii: ",") {
                    position += 1
                    sawComma = true
                } else if current == closing {
                    position += 1
                    return (items, sawComma)
                } else {
                    throw error("expected ',' or '\(Character(UnicodeScalar(closing)))'")
                }
            }
        }

        mutating func parseString() throws -> String {
            let quote = bytes[position]
            position += 1
            var content: [UInt8] = []
            while let byte = current {
                position += 1
                if byte == quote { return String(validatingUTF8Bytes: content) }
                if byte == 0x0A { break }
                if byte == UInt8(ascii: "\\") {
                    // Escapes do not occur in numpy's descr strings; keep the escaped byte literally.
                    guard let escaped = current else { break }
                    position += 1
                    content.append(escaped)
                } else {
                    content.append(byte)
                }
            }
            throw error("unterminated string")
        }

        mutating func parseInteger() throws -> PythonLiteral {
            var negative = false
            if current == UInt8(ascii: "-") || current == UInt8(ascii: "+") {
                negative = current == UInt8(ascii: "-")
                position += 1
                skipWhitespace()
            }
            let start = position
            while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
            guard position > start else { throw error("expected digits") }
            var digits = String(decoding: bytes[start..<position], as: UTF8.self)
            // Python 2 wrote long integers with an "L" suffix.
            if current == UInt8(ascii: "L") || current == UInt8(ascii: "l") { position += 1 }
            if let byte = current, byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                || byte == UInt8(ascii: "x") || byte == UInt8(ascii: "_") {
                throw error("only decimal integers are supported")
            }
            // Canonicalise leading zeros so that equal values compare equal.
            while digits.count > 1 && digits.hasPrefix("0") { digits.removeFirst() }
            return .integer(negative: negative && digits != "0", digits: digits)
        }

        mutating func parseName() throws -> PythonLiteral {
            let start = position
            while let byte = current,
                  (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) {
                position += 1
            }
            let name = String(decoding: bytes[start..<position], as: UTF8.self)
            switch name {
            case "True": return .bool(true)
            case "False": return .bool(false)
            case "None": return .none
            case "": position = start; throw error("unexpected character '\(Character(UnicodeScalar(bytes[start])))'")
            default: position = start; throw error("unsupported name '\(name)'")
            }
        }
    }
}

extension String {
    /// UTF-8 text, or Latin-1 when the bytes are not valid UTF-8 (so no byte is lost or replaced).
    init(validatingUTF8Bytes bytes: [UInt8]) {
        if let text = String(validating: bytes, as: UTF8.self) {
            self = text
        } else {
            self = String(bytes.map { Character(UnicodeScalar($0)) })
        }
    }
}
