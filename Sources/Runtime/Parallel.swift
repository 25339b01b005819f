import Dispatch

/// Fork-join parallelism over a fixed number of chunks.
///
/// Regions run on a persistent pool (`WorkerPool`): the calling thread takes part, and workers stay awake
/// briefly between regions, so back-to-back regions cost well under a microsecond to start. Calls made
/// from inside a running body run inline on that thread. When another thread's region holds the pool,
/// the call spreads its chunks with Dispatch instead, so concurrent sessions are never serialized on it.
public enum Parallel {
    /// Calls `body(i)` for every `i` in `0..<count`, spreading the calls over at most `threads` threads in
    /// contiguous blocks (block `b` of `p` is `b·count/p ..< (b+1)·count/p`, `p = min(threads, count)`).
    /// Runs inline when there is one thread or one chunk, or when called from inside a parallel body.
    /// `body` must not throw or trap, and calls for different `i` must touch disjoint memory.
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let parts = min(max(threads, 1), count, WorkerPool.maxParticipants)
        if parts == 1 || RegionMarker.isInside {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            if WorkerPool.shared.run(count: count, parts: parts, body) { return }
            // Workers write disjoint parts of shared buffers; the caller guarantees that, which is
            // what lets `body` be a plain (non-Sendable) closure over raw pointers.
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let wasInside = RegionMarker.isInside
                RegionMarker.isInside = true
                for i in (part * count / parts)..<((part + 1) * count / parts) { shared.value(i) }
                RegionMarker.isInside = wasInside
            }
        }
    }

    /// Splits `0..<total` into about `threads` contiguous ranges of at least `grain` items and runs them.
    public static func forRanges(_ total: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        guard total > 0 else { return }
        let parts = max(1, min(threads, total / max(grain, 1)))
        forEach(parts, threads: threads) { part in
            body((part * total / parts)..<((part + 1) * total / parts))
        }
    }
}

/// Hands a value to other threads without a compile-time Sendable proof; used only where the code
/// around it guarantees the threads touch disjoint memory.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
