#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Raw, 64-byte aligned, zero-initialised bytes shared by tensors until one of them writes.
public final class TensorStorage: @unchecked Sendable {
    /// Alignment of every allocation: one cache line, and what AVX-512 loads prefer.
    public static let alignment = 64

    public let byteCount: Int
    public let baseAddress: UnsafeMutableRawPointer

    /// Allocates `byteCount` zeroed bytes (at least one, so the pointer is never null).
    public init(byteCount: Int) {
        precondition(byteCount >= 0)
        self.byteCount = byteCount
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, TensorStorage.alignment, max(byteCount, 1))
        guard status == 0, let pointer else { fatalError("out of memory allocating \(byteCount) bytes") }
        memset(pointer, 0, max(byteCount, 1))
        self.baseAddress = pointer
    }

    deinit { free(baseAddress) }

    func copy() -> TensorStorage {
        let result = TensorStorage(byteCount: byteCount)
        result.baseAddress.copyMemory(from: baseAddress, byteCount: byteCount)
        return result
    }
}

/// A dense, row-major n-dimensional array with value semantics (copy-on-write).
///
/// Storage is aligned to 64 bytes. Reshaping shares storage; the first write through a shared tensor
/// copies it.
public struct Tensor: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    /// Number of elements (the product of `shape`; 1 for a scalar).
    public let count: Int
    @usableFromInline var storage: TensorStorage

    /// A zero-filled tensor. Throws when a dimension is negative or the size overflows.
    public init(zeros dtype: DType, shape: [Int]) throws {
        let count = try Shape.elementCount(shape)
        guard let bytes = dtype.storageByteCount(elements: count) else {
            throw TensorError.elementCountOverflow(shape: shape)
        }
        self.init(dtype: dtype, shape: shape, count: count, storage: TensorStorage(byteCount: bytes))
    }

    /// A tensor that takes over existing storage. The storage must hold exactly the shape's bytes.
    public init(dtype: DType, shape: [Int], storage: TensorStorage) throws {
        let count = try Shape.elementCount(shape)
        let bytes = dtype.storageByteCount(elements: count)
        guard bytes == storage.byteCount else {
            throw TensorError.sizeMismatch(what: "storage bytes for \(dtype) \(shape)",
                                           expected: bytes ?? -1, actual: storage.byteCount)
        }
        self.init(dtype: dtype, shape: shape, count: count, storage: storage)
    }

    /// A tensor built from raw little-endian bytes (packed for 4-bit types).
    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        try self.init(zeros: dtype, shape: shape)
        guard bytes.count == storage.byteCount else {
            throw TensorError.sizeMismatch(what: "bytes for \(dtype) \(shape)",
                                           expected: storage.byteCount, actual: bytes.count)
        }
        if let source = bytes.baseAddress, bytes.count > 0 {
            storage.baseAddress.copyMemory(from: source, byteCount: bytes.count)
        }
    }

    /// A tensor holding `scalars` in row-major order.
    public init<T: TensorScalar>(shape: [Int], scalars: [T]) throws {
        try self.init(zeros: T.dtype, shape: shape)
        guard scalars.count == count else {
            throw TensorError.sizeMismatch(what: "scalars for shape \(shape)", expected: count, actual: scalars.count)
        }
        scalars.withUnsafeBytes { source in
            if let base = source.baseAddress { storage.baseAddress.copyMemory(from: base, byteCount: source.count) }
        }
    }

    /// A rank-0 tensor.
    public init<T: TensorScalar>(scalar: T) {
        // A scalar shape can neither overflow nor mismatch.
        try! self.init(shape: [], scalars: [scalar])
    }

    @usableFromInline
    init(dtype: DType, shape: [Int], count: Int, storage: TensorStorage) {
        self.dtype = dtype
        self.shape = shape
        self.count = count
        self.storage = storage
    }

    public var rank: Int { shape.count }
    public var byteCount: Int { storage.byteCount }

    /// The same elements under another shape of equal element count; storage is shared.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        let newCount = try Shape.elementCount(newShape)
        guard newCount == count else { throw TensorError.incompatibleReshape(from: shape, to: newShape) }
        return Tensor(dtype: dtype, shape: newShape, count: count, storage: storage)
    }

    /// True when both tensors use the same storage object (no copy was made).
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }

    // MARK: Raw access

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.baseAddress, count: storage.byteCount))
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableRawBufferPointer(start: storage.baseAddress, count: storage.byteCount))
    }

    /// Typed read access. Traps when `T` does not match `dtype`: that is a programming error in a kernel,
    /// not bad input (kernels check dtypes when a session is compiled).
    @inlinable
    public func withUnsafeBufferPointer<T: TensorScalar, R>(
        as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dtype == dtype, "tensor of \(dtype) read as \(T.dtype)")
        let typed = storage.baseAddress.assumingMemoryBound(to: T.self)
        return try body(UnsafeBufferPointer(start: typed, count: count))
    }

    /// Typed write access; copies shared storage first.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<T: TensorScalar, R>(
        as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dtype == dtype, "tensor of \(dtype) written as \(T.dtype)")
        makeUnique()
        let typed = storage.baseAddress.assumingMemoryBound(to: T.self)
        return try body(UnsafeMutableBufferPointer(start: typed, count: count))
    }

    /// The elements as an array of `T`, which must match `dtype`.
    public func scalars<T: TensorScalar>(as type: T.Type) -> [T] {
        withUnsafeBufferPointer(as: T.self) { Array($0) }
    }

    @usableFromInline
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }
}

extension Tensor: Equatable {
    /// Equal when dtype, shape and every stored byte are equal (so NaNs with equal bits compare equal).
    public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
        guard lhs.dtype == rhs.dtype, lhs.shape == rhs.shape else { return false }
        if lhs.storage === rhs.storage { return true }
        return memcmp(lhs.storage.baseAddress, rhs.storage.baseAddress, lhs.storage.byteCount) == 0
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor<\(dtype)>\(shape)" }
}
