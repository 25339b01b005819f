import Foundation
import Tensors

/// Tensor memory reused between the steps of a run and from one run to the next, so that a
/// steady-state run of a plan allocates no tensor memory (and pays no page faults or zero fills).
///
/// The pool keeps a reference to every storage it hands out. A storage whose only reference is the
/// pool's belongs to no live tensor any more (its step's outputs were released, or the caller dropped a
/// result), so the next output of the same byte count takes it. A storage still held elsewhere (a graph
/// output the caller keeps, a reshaped view) is never handed out again while it is. After a run, the pool
/// forgets the storages that run did not use, so its size follows the last run, not the largest.
///
/// One pool serves one run at a time, from the thread that runs the plan's steps (`BufferPools` hands
/// it from run to run under a lock), hence the unchecked `Sendable`.
final class BufferPool: @unchecked Sendable {
    private var storages: [Int: [TensorStorage]] = [:]
    private var usedThisRun = Set<ObjectIdentifier>()
    /// Storages allocated so far (a steady-state run adds none).
    private(set) var allocations = 0
    /// Storages held now.
    var storageCount: Int { storages.values.reduce(0) { $0 + $1.count } }

    /// A tensor of `dtype` and `shape` for a kernel to fill; its elements are unspecified.
    func output(_ dtype: DType, shape: [Int]) throws -> OutputBuffer {
        let count = try Shape.elementCount(shape)
        guard let bytes = dtype.storageByteCount(elements: count) else {
            throw KernelError.invalid("output of shape \(shape) is too large")
        }
        // Moved out of the dictionary so that the list is the only owner of its buffer: a shared array
        // buffer would hold a second reference to every storage and hide the unique ones.
        var candidates = storages.removeValue(forKey: bytes) ?? []
        var chosen: TensorStorage?
        for index in candidates.indices where isKnownUniquelyReferenced(&candidates[index]) {
            chosen = candidates[index]
            break
        }
        if chosen == nil {
            let storage = TensorStorage(byteCount: bytes)
            allocations += 1
            candidates.append(storage)
            chosen = storage
        }
        storages[bytes] = candidates
        let storage = chosen!
        usedThisRun.insert(ObjectIdentifier(storage))
        return OutputBuffer(tensor: try Tensor(dtype: dtype, shape: shape, storage: storage),
                            bytes: storage.baseAddress)
    }

    /// Ends a run: storages it did not use are forgotten (their tensors, if any, keep them alive).
    func endRun() {
        for (bytes, list) in storages {
            let kept = list.filter { usedThisRun.contains(ObjectIdentifier($0)) }
            storages[bytes] = kept.isEmpty ? nil : kept
        }
        usedThisRun.removeAll(keepingCapacity: true)
    }
}

/// A kernel's output tensor with a pointer for filling it. The storage is shared with nothing but the
/// pool's bookkeeping, so writing through `bytes` (instead of the tensor's copy-on-write accessors, which
/// would copy because of the pool's reference) changes no other tensor.
struct OutputBuffer {
    let tensor: Tensor
    let bytes: UnsafeMutableRawPointer

    /// The first element, typed.
    func pointer<T: TensorScalar>(as type: T.Type) -> UnsafeMutablePointer<T> {
        precondition(T.dtype == tensor.dtype, "output of \(tensor.dtype) written as \(T.dtype)")
        return bytes.assumingMemoryBound(to: T.self)
    }

    /// The elements as a typed buffer.
    func buffer<T: TensorScalar>(as type: T.Type) -> UnsafeMutableBufferPointer<T> {
        UnsafeMutableBufferPointer(start: pointer(as: T.self), count: tensor.count)
    }
}

/// Idle pools of one plan, so that concurrent runs each get their own and sequential runs reuse them.
final class BufferPools: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [BufferPool] = []

    func checkOut() -> BufferPool {
        lock.lock()
        defer { lock.unlock() }
        return idle.popLast() ?? BufferPool()
    }

    /// The pools no run holds now.
    var idlePools: [BufferPool] {
        lock.lock()
        defer { lock.unlock() }
        return idle
    }

    func checkIn(_ pool: BufferPool) {
        pool.endRun()
        lock.lock()
        defer { lock.unlock() }
        idle.append(pool)
    }
}

extension ExecutionContext {
    /// A tensor for a kernel's output: from the run's buffer pool when there is one, otherwise newly
    /// allocated. Its elements are unspecified, so the kernel must write every one.
    func output(_ dtype: DType, shape: [Int]) throws -> OutputBuffer {
        if let pool { return try pool.output(dtype, shape: shape) }
        let tensor = try Tensor(zeros: dtype, shape: shape)
        // A fresh tensor is unique: writing through its bytes is what its mutable accessor would do.
        let bytes = tensor.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        return OutputBuffer(tensor: tensor, bytes: bytes)
    }
}
