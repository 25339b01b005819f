import Dispatch
import _CKernels
#if canImport(Glibc)
import Glibc
#endif

/// Release-build measurements of the int8 GEMM: throughput per shape and level, and the machine's peak.
///
/// The peak is `GHz × 256` int8 operations per cycle and core (two 512-bit vpdpbusd per cycle, each 64
/// multiply-adds = 128 operations). The clock is measured, not read from /proc: a chain of dependent
/// 64-bit adds runs one add per cycle, so adds / seconds is the clock the core actually ran at.
public enum Int8GEMMBenchmark {
    /// The measured core clock and what it implies.
    public struct Clock: Sendable {
        /// Cycles per nanosecond, from the dependent-add chain (best of many short runs).
        public let gigahertz: Double
        /// vpdpbusd issued per cycle by 24 independent chains (nil without AVX-512 VNNI); 2 on cores
        /// with two 512-bit VNNI pipes, which is what the peak assumes.
        public let vnniPerCycle: Double?
        /// One core's nominal AVX-512 VNNI peak: gigahertz × 256, in GOPS.
        public var peakGOPS: Double { gigahertz * 256 }
    }

    /// One shape at one level.
    public struct Result: Sendable {
        public let m: Int
        public let n: Int
        public let k: Int
        public let level: Int8GEMMLevel
        public let threads: Int
        public let bestSeconds: Double
        public let medianSeconds: Double
        /// Median CPU time of the calling thread per run: on a shared machine it leaves out the time the
        /// thread waited for a core (meaningful with one thread only).
        public let medianThreadCPUSeconds: Double
        public let runs: Int

        /// 2·M·N·K operations (a multiply and an add per product) per second, in billions.
        public var bestGOPS: Double { operations / bestSeconds / 1e9 }
        public var medianGOPS: Double { operations / medianSeconds / 1e9 }
        public var medianCPUGOPS: Double { operations / medianThreadCPUSeconds / 1e9 }
        private var operations: Double { 2 * Double(m) * Double(n) * Double(k) }
    }

    /// Measures the clock with short runs (about 0.3 ms each) and keeps the fastest, so runs that another
    /// process interrupted do not count.
    public static func measureClock(runs: Int = 300) -> Clock {
        let iterations: UInt64 = 5_000
        let addSeconds = fastest(runs) { _ = sq_dependent_add_chain(iterations) }
        let gigahertz = Double(iterations) * 64 / addSeconds / 1e9
        var vnni: Double?
        if Int8GEMMLevel.avx512vnni.isAvailable {
            let vnniSeconds = fastest(runs) { _ = sq_vnni_throughput_loop(iterations) }
            vnni = Double(iterations) * 24 / vnniSeconds / 1e9 / gigahertz
        }
        return Clock(gigahertz: gigahertz, vnniPerCycle: vnni)
    }

    /// Runs C = A·B (full-range random A and B, B packed once) repeatedly for about `seconds` (at least
    /// three runs) after one untimed run.
    public static func measure(m: Int, n: Int, k: Int, level: Int8GEMMLevel, threads: Int = 1,
                               seconds: Double = 0.5) -> Result {
        var state: UInt64 = 0x2545F4914F6CDD1D
        func nextByte() -> UInt8 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        let a = (0..<(m * k)).map { _ in nextByte() }
        let bValues = (0..<(k * n)).map { _ in Int8(bitPattern: nextByte()) }
        let b = bValues.withUnsafeBufferPointer { PackedInt8Matrix(k: k, n: n, values: $0, transposed: false) }
        var c = [Int32](repeating: 0, count: m * n)
        var samples: [Double] = [], cpuSamples: [Double] = []
        a.withUnsafeBufferPointer { a in
            c.withUnsafeMutableBufferPointer { cBuffer in
                let aBase = a.baseAddress!, cBase = cBuffer.baseAddress!
                func run() {
                    Int8GEMM.multiply(m: m, a: aBase, lda: k, b: b, c: cBase, ldc: n, level: level, threadCount: threads)
                }
                run()
                var total = 0.0
                while samples.count < 3 || total < seconds {
                    let cpuStart = threadCPUSeconds()
                    let start = DispatchTime.now().uptimeNanoseconds
                    run()
                    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                    cpuSamples.append(threadCPUSeconds() - cpuStart)
                    samples.append(elapsed)
                    total += elapsed
                }
            }
        }
        let sorted = samples.sorted(), cpuSorted = cpuSamples.sorted()
        return Result(m: m, n: n, k: k, level: level, threads: threads, bestSeconds: sorted[0],
                      medianSeconds: sorted[sorted.count / 2], medianThreadCPUSeconds: cpuSorted[cpuSorted.count / 2],
                      runs: sorted.count)
    }

    private static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    private static func fastest(_ runs: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<max(1, runs) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }
}
