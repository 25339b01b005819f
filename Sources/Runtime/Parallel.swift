import Dispatch

/// Fork-join parallelism over a fixed number of chunks.
public enum Parallel {
    /// Calls `body(i)` for every `i` in `0..<count`, spreading the calls over at most `threads` threads.
    /// Runs inline when there is one thread or one chunk.
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(max(threads, 1), count)
        if workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // Workers write disjoint parts of shared buffers; the caller guarantees that, which is
            // what lets `body` be a plain (non-Sendable) closure over raw pointers.
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                // Static block partition: chunks are equal-cost in our kernels, and this keeps each
                // worker on a contiguous range.
                let start = worker * count / workers
                let end = (worker + 1) * count / workers
                for i in start..<end { shared.value(i) }
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
