#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import _CKernels

/// The persistent fork-join pool behind `Parallel`: worker threads made once, on first need, that poll
/// for the next region for a short while after each one before they sleep, so the hundreds of small
/// parallel regions of one inference do not each pay for waking threads.
///
/// A region is `parts` equal blocks of `0..<count`, block `b` being `b·count/parts ..< (b+1)·count/parts`.
/// The calling thread runs block 0 and worker `i` block `i + 1`, so that back-to-back regions split the
/// same way keep each part of the data in one core's cache. A thread done with its block takes any block
/// not yet claimed, so a worker slow to wake (asleep, or preempted on a busy machine) costs parallelism,
/// never a wait.
/// One region runs at a time; `run` declines (returns false) while another thread's region is running.
final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool.
    static let shared = WorkerPool()

    /// Most threads in one region (caller included).
    static let maxParticipants = 256

    /// How long the owner of a region polls for the workers' last blocks before it sleeps.
    static let ownerSpinNanoseconds: UInt64 = 50_000

    /// How long a worker keeps polling after it last worked. It covers the single-threaded stretches
    /// between parallel regions of an inference; longer only burns a core that other work could use.
    static let spinNanoseconds: UInt64 = 300_000

    /// The current region: generation (bits 32–63) and parts (0–31).
    private let ticket = Atomic<UInt64>(0)
    /// Per block, the generation of the region that last claimed it, one cache line each. The owner
    /// sets a region's blocks to the previous generation before publishing it; claiming block `b` of
    /// region `g` swaps `g - 1` for `g`, which a thread still holding an older region cannot do.
    private let claims: UnsafeMutableRawPointer
    /// Blocks of the current region run by workers (the caller counts its own).
    private let finished = Atomic<Int>(0)
    /// Where the region's owner sleeps when a worker's block outlasts its polling (on a busy machine,
    /// a preempted worker); the worker that finishes wakes it.
    private let owner = Parking()
    /// Set while a thread owns the pool for a region.
    private let busy = Atomic<Bool>(false)
    /// What the region runs. Written by the owner before it publishes `ticket`, read by a thread only
    /// after it has claimed a block, which the owner waits for before changing it again.
    private let job: UnsafeMutablePointer<Job>
    /// Region count; touched only by the owner.
    private var generation: UInt32 = 0
    /// Workers, index i taking part in regions of more than i + 1 parts; grown only by the owner.
    private var workers: [Worker] = []

    /// A plain (not Optional) closure field: an Optional, being generic, would hold the closure in its
    /// most general form, converting it through a heap-allocated thunk on every store and load.
    private struct Job {
        var body: (Int) -> Void = Job.idle
        var count = 0
        var parts = 0
        static let idle: @Sendable (Int) -> Void = { _ in }
    }

    private init() {
        job = .allocate(capacity: 1)
        job.initialize(to: Job())
        claims = .allocate(byteCount: Self.maxParticipants * Self.claimStride, alignment: Self.claimStride)
        for block in 0..<Self.maxParticipants {
            (claims + block * Self.claimStride).initializeMemory(as: Atomic<UInt32>.self, to: Atomic(0))
        }
    }

    private static let claimStride = 64

    private func claim(_ block: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (claims + block * Self.claimStride).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Runs `body(i)` for every `i` in `0..<count`, split in `parts` blocks (2...maxParticipants) over the
    /// calling thread and `parts - 1` workers. Returns false without running anything when another
    /// thread's region holds the pool.
    func run(count: Int, parts: Int, _ body: @escaping (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { busy.store(false, ordering: .releasing) }
        hireWorkers(parts - 1)
        job.pointee = Job(body: body, count: count, parts: parts)
        finished.store(0, ordering: .relaxed)
        for block in 0..<parts { claim(block).pointee.store(generation, ordering: .relaxed) }
        generation &+= 1
        let opening = UInt64(generation) << 32 | UInt64(parts)
        // Sequentially consistent, for `Parking`: either a worker sees this region before it sleeps or
        // this thread sees it asleep and wakes it.
        ticket.store(opening, ordering: .sequentiallyConsistent)
        for index in 0..<min(parts - 1, workers.count) where workers[index].parking.isAsleep {
            workers[index].parking.wake()
        }
        let wasInside = RegionMarker.isInside
        RegionMarker.isInside = true
        let others = parts - runBlocks(of: generation, parts: parts, home: 0)
        // Only blocks other threads have claimed are left: they end soon unless a thread was preempted,
        // in which case this one sleeps rather than take CPU time that thread may need.
        var poll = Poll(for: Self.ownerSpinNanoseconds)
        while finished.load(ordering: .acquiring) != others {
            if poll.isOver() {
                owner.sleep { self.finished.load(ordering: .sequentiallyConsistent) == others }
            }
        }
        RegionMarker.isInside = wasInside
        job.pointee.body = Job.idle
        return true
    }

    /// Claims and runs the blocks of region `generation` that are still free, `home` first and then
    /// downwards; returns how many it ran.
    private func runBlocks(of generation: UInt32, parts: Int, home: Int) -> Int {
        var ran = 0
        var block = home
        for _ in 0..<parts {
            let slot = claim(block)
            if slot.pointee.load(ordering: .relaxed) == generation &- 1,
               slot.pointee.compareExchange(expected: generation &- 1, desired: generation,
                                            ordering: .acquiringAndReleasing).exchanged {
                runBlock(block)
                ran += 1
            }
            block = block == 0 ? parts - 1 : block - 1
        }
        return ran
    }

    /// Runs one block of the current job. Not inlined, so that any reference it takes to the body is
    /// released before the block is reported finished.
    @inline(never)
    private func runBlock(_ block: Int) {
        let job = self.job.pointee
        for i in (block * job.count / job.parts)..<((block + 1) * job.count / job.parts) { job.body(i) }
    }

    /// Makes sure workers 0..<count exist (only the owner of a region calls this). When the system
    /// refuses a thread, regions run with the workers there are: their blocks are taken by the others.
    private func hireWorkers(_ count: Int) {
        while workers.count < count {
            let worker = Worker(pool: self, index: workers.count, hiredAfter: generation)
            guard worker.start() else { return }
            workers.append(worker)
        }
    }

    /// A worker thread's life: poll for regions that need it, run blocks, sleep when idle for long.
    fileprivate func serve(_ worker: Worker) -> Never {
        RegionMarker.isInside = true
        var seen = worker.hiredAfter
        var poll = Poll(for: Self.spinNanoseconds)
        while true {
            let current = ticket.load(ordering: .acquiring)
            let region = UInt32(truncatingIfNeeded: current >> 32)
            if region != seen {
                seen = region
                if Self.needs(worker, current) {
                    let ran = runBlocks(of: region, parts: Int(current & 0xFFFF_FFFF), home: worker.index + 1)
                    if ran > 0 {
                        finished.add(ran, ordering: .sequentiallyConsistent)
                        if owner.isAsleep { owner.wake() }
                    }
                    poll = Poll(for: Self.spinNanoseconds)
                }
                continue
            }
            if poll.isOver() {
                worker.parking.sleep {
                    let latest = self.ticket.load(ordering: .sequentiallyConsistent)
                    return UInt32(truncatingIfNeeded: latest >> 32) != seen && Self.needs(worker, latest)
                }
                poll = Poll(for: Self.spinNanoseconds)
            }
        }
    }

    /// Whether the region in `ticket` asks for `worker`.
    private static func needs(_ worker: Worker, _ ticket: UInt64) -> Bool {
        worker.index < Int(ticket & 0xFFFF_FFFF) - 1
    }
}

/// One worker thread and where it sleeps.
private final class Worker: @unchecked Sendable {
    let pool: WorkerPool
    let index: Int
    /// The last region published before this worker existed.
    let hiredAfter: UInt32
    let parking = Parking()

    init(pool: WorkerPool, index: Int, hiredAfter: UInt32) {
        self.pool = pool
        self.index = index
        self.hiredAfter = hiredAfter
    }

    /// Starts the thread, which serves `pool` for the rest of the process; false if the system refused.
    func start() -> Bool {
        let context = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            let worker = Unmanaged<Worker>.fromOpaque(raw!).takeRetainedValue()
            worker.pool.serve(worker)
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            return false
        }
        pthread_detach(thread)
        return true
    }
}

/// A place for one thread to sleep until another wakes it. The sleeper announces itself in a
/// sequentially consistent flag before its last check; the waker publishes its news, also sequentially
/// consistent, before reading the flag. So either the sleeper sees the news or the waker sees the
/// sleeper, and no wake-up is lost.
private final class Parking: @unchecked Sendable {
    private let sleeping = Atomic<Bool>(false)
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let condition: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    var isAsleep: Bool { sleeping.load(ordering: .sequentiallyConsistent) }

    /// Waits until `shouldWake()` holds, checked under the lock that `wake()` takes.
    func sleep(until shouldWake: () -> Bool) {
        pthread_mutex_lock(mutex)
        sleeping.store(true, ordering: .sequentiallyConsistent)
        while !shouldWake() { pthread_cond_wait(condition, mutex) }
        sleeping.store(false, ordering: .relaxed)
        pthread_mutex_unlock(mutex)
    }

    func wake() {
        pthread_mutex_lock(mutex)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// Marks threads running a parallel body (workers always, callers during their region), whose own
/// `Parallel` calls therefore run inline.
enum RegionMarker {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "Parallel: cannot create a thread-specific key")
        return key
    }()

    static var isInside: Bool {
        get { pthread_getspecific(key) != nil }
        set { pthread_setspecific(key, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }
}

/// Busy-waiting for a while, one `isOver()` call per look at what is awaited.
private struct Poll {
    private var looks = 0
    private let deadline: UInt64

    init(for nanoseconds: UInt64) {
        deadline = Clock.nanoseconds() &+ nanoseconds
    }

    /// Pauses briefly. Every 64 calls (a few microseconds) it also gives way to any thread waiting for
    /// this core — the region's owner, when the scheduler put it on the same core — and reads the clock:
    /// true once the time is over.
    mutating func isOver() -> Bool {
        looks &+= 1
        guard looks & 63 == 0 else {
            sq_spin_pause()
            return false
        }
        sched_yield()
        return Clock.nanoseconds() > deadline
    }
}

private enum Clock {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
