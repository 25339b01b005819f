/// Sub-byte packing as ONNX stores INT4/UINT4 and INT2/UINT2 tensors.
///
/// 4-bit: two values per byte, the first in the low nibble; an odd count leaves the last high nibble 0.
/// 2-bit: four values per byte, the first in bits 0–1, then 2–3, 4–5, 6–7; the tail of the last byte is 0.
public enum SubBytePacking {
    /// Bytes needed for `count` values of `bits` (2 or 4) bits.
    public static func byteCount(elements count: Int, bits: Int) -> Int {
        let perByte = 8 / bits
        return count / perByte + (count % perByte == 0 ? 0 : 1)
    }

    /// Packs the low `bits` bits of each code (two's complement for signed codes).
    public static func pack(_ codes: UnsafeBufferPointer<Int8>, bits: Int, into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bits == 2 || bits == 4, "only 2- and 4-bit packing exists")
        precondition(bytes.count >= byteCount(elements: codes.count, bits: bits))
        let perByte = 8 / bits
        let mask = UInt8((1 << bits) - 1)
        for b in 0..<byteCount(elements: codes.count, bits: bits) {
            var byte: UInt8 = 0
            let start = b * perByte
            for k in 0..<Swift.min(perByte, codes.count - start) {
                byte |= (UInt8(bitPattern: codes[start + k]) & mask) << UInt8(k * bits)
            }
            bytes[b] = byte
        }
    }

    /// Unpacks `count` codes; signed codes are sign-extended, unsigned ones are not.
    public static func unpack<Code: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, bits: Int, signed: Bool,
                                                       count: Int, into codes: UnsafeMutableBufferPointer<Code>) {
        precondition(bits == 2 || bits == 4, "only 2- and 4-bit packing exists")
        precondition(bytes.count >= byteCount(elements: count, bits: bits) && codes.count >= count)
        let perByte = 8 / bits
        let mask = UInt8((1 << bits) - 1)
        let signBit = UInt8(1 << (bits - 1))
        for i in 0..<count {
            let raw = (bytes[i / perByte] >> UInt8((i % perByte) * bits)) & mask
            codes[i] = signed && raw & signBit != 0
                ? Code(truncatingIfNeeded: Int8(bitPattern: raw | ~mask)) : Code(truncatingIfNeeded: raw)
        }
    }
}
