#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
@testable import Runtime
import Testing

/// `Parallel` on its worker pool: every index exactly once, in the documented contiguous blocks, inline
/// when nested, and correct when several threads start regions at once.
@Suite struct ParallelTests {
    /// Per-index visit counts and the thread that made each visit.
    final class Visits: @unchecked Sendable {
        let counts: UnsafeMutableBufferPointer<Int>
        let threads: UnsafeMutableBufferPointer<pthread_t>

        init(_ count: Int) {
            counts = .allocate(capacity: count)
            counts.initialize(repeating: 0)
            threads = .allocate(capacity: count)
            threads.initialize(repeating: pthread_t())
        }

        deinit {
            counts.deallocate()
            threads.deallocate()
        }

        func visit(_ i: Int) {
            counts[i] += 1
            threads[i] = pthread_self()
        }
    }

    static let counts = Array(1...40) + [63, 64, 65, 100, 1000, 4097]
    static let threadCounts = [-1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 64]

    @Test(arguments: threadCounts)
    func everyIndexOnceInContiguousBlocks(threads: Int) {
        for count in Self.counts {
            let visits = Visits(count)
            Parallel.forEach(count, threads: threads) { visits.visit($0) }
            #expect(visits.counts.allSatisfy { $0 == 1 }, "count \(count), threads \(threads)")
            // Block b of p holds b·count/p ..< (b+1)·count/p and runs on one thread.
            let parts = min(max(threads, 1), count)
            for block in 0..<parts {
                let range = (block * count / parts)..<((block + 1) * count / parts)
                let owner = visits.threads[range.lowerBound]
                #expect(range.allSatisfy { pthread_equal(visits.threads[$0], owner) != 0 },
                        "block \(block) of \(parts) for count \(count) ran on several threads")
            }
            #expect(Set(visits.threads.map { UInt($0) }).count <= parts)
        }
    }

    @Test func oneThreadRunsInlineInOrder() {
        var order: [Int] = []
        let caller = pthread_self()
        var everyCallOnCaller = true
        Parallel.forEach(50, threads: 1) { i in
            order.append(i)
            everyCallOnCaller = everyCallOnCaller && pthread_equal(pthread_self(), caller) != 0
        }
        #expect(order == Array(0..<50))
        #expect(everyCallOnCaller)
    }

    @Test func zeroCountCallsNothing() {
        var calls = 0
        Parallel.forEach(0, threads: 4) { _ in calls += 1 }
        Parallel.forRanges(0, threads: 4, grain: 1) { _ in calls += 1 }
        #expect(calls == 0)
    }

    /// Ranges tile `0..<total` in order; there are max(1, min(threads, total / grain)) of them.
    @Test(arguments: [1, 2, 3, 4, 8])
    func rangesTileTheTotal(threads: Int) {
        for total in [1, 2, 5, 17, 100, 1023] {
            for grain in [1, 3, 16, 64, 2000] {
                let expectedParts = max(1, min(threads, total / grain))
                let starts = Visits(expectedParts)
                let covered = Visits(total)
                Parallel.forRanges(total, threads: threads, grain: grain) { range in
                    for i in range { covered.visit(i) }
                    // Each range is one part; record where each starts.
                    let part = (0..<expectedParts).first { $0 * total / expectedParts == range.lowerBound }
                    if let part { starts.visit(part) }
                }
                #expect(covered.counts.allSatisfy { $0 == 1 }, "total \(total), grain \(grain), threads \(threads)")
                #expect(starts.counts.allSatisfy { $0 == 1 }, "total \(total), grain \(grain), threads \(threads)")
            }
        }
    }

    /// A region started from inside a body runs inline on the thread running that body.
    @Test func nestedRegionsRunInline() {
        let outer = 8, inner = 100
        let visits = Visits(outer * inner)
        Parallel.forEach(outer, threads: 4) { o in
            Parallel.forEach(inner, threads: 4) { i in
                Parallel.forRanges(1, threads: 2) { _ in visits.visit(o * inner + i) }
            }
        }
        #expect(visits.counts.allSatisfy { $0 == 1 })
        for o in 0..<outer {
            let owner = visits.threads[o * inner]
            #expect((0..<inner).allSatisfy { pthread_equal(visits.threads[o * inner + $0], owner) != 0 },
                    "inner region \(o) was spread over threads")
        }
    }

    /// Four threads each run 1000 regions at once (one holds the pool, the others fall back to Dispatch
    /// or take the pool in turn); every region must still sum its indices exactly.
    @Test func concurrentCallersGetCorrectSums() {
        let callers = 4, regions = 1000
        let failures = Visits(callers)
        let done = DispatchGroup()
        for caller in 0..<callers {
            done.enter()
            let thread = Thread {
                let values = UnsafeMutableBufferPointer<Int>.allocate(capacity: 300)
                defer { values.deallocate() }
                for region in 0..<regions {
                    let count = 1 + (region * 7 + caller) % 300
                    let threads = 2 + (region + caller) % 4
                    values.initialize(repeating: 0)
                    Parallel.forRanges(count, threads: threads) { range in
                        for i in range { values[i] += i + caller }
                    }
                    // Σ (i + caller) over 0..<count; a missed or repeated index changes it.
                    if values.reduce(0, +) != count * (count - 1) / 2 + count * caller { failures.counts[caller] += 1 }
                }
                done.leave()
            }
            thread.start()
        }
        done.wait()
        #expect(failures.counts.allSatisfy { $0 == 0 }, "regions with a wrong sum per caller: \(Array(failures.counts))")
    }

    /// Many tiny regions back to back with varying widths, with pauses long enough for the workers to go
    /// to sleep in between, so both the polling and the sleeping hand-offs are exercised.
    @Test func stressTinyRegionsAndSleepingWorkers() {
        let visits = Visits(64)
        var expected = Array(repeating: 0, count: 64)
        for round in 0..<40 {
            for region in 0..<500 {
                let count = 1 + (region * 13 + round) % 64
                let threads = 1 + (region + round) % 6
                Parallel.forEach(count, threads: threads) { visits.counts[$0] += 1 }
                for i in 0..<count { expected[i] += 1 }
            }
            if round % 8 == 7 { usleep(2_000) }
        }
        #expect(Array(visits.counts) == expected)
    }
}
