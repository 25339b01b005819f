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
/// Whoever is free claims the next block — the calling thread and the workers it asked for — so a worker
/// that is slow to wake (parked, or descheduled on a busy machine) costs parallelism, never a wait.
/// One region runs at a time; `run` declines (returns false) while another thread's region is running.
final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool.
    static let shared = WorkerPool()

    /// Most threads in one region (caller included): counts travel in 16-bit fields of `ticket`.
    static let maxParticipants = 256

    /// How long a worker keeps polling after it last worked. It covers the single-threaded stretches
    /// between parallel regions of an inference; longer only burns a core that other work could use.
    static let spinNanoseconds: UInt64 = 100_000

    /// The current region, packed so that one compare-and-swap both checks the region and claims a block:
    /// generation (bits 32–63), parts (16–31), blocks not yet claimed (0–15). Blocks are claimed from the
    /// last down.
    private let ticket = Atomic<UInt64>(0)
    /// Blocks of the current region run by workers (the caller counts its own).
    private let finished = Atomic<Int>(0)
    /// Set while a thread owns the pool for a region.
    private let busy = Atomic<Bool>(false)
    /// What the region runs. Written by the owner before it publishes `ticket`, read by a thread only
    /// after it has claimed a block, which the owner waits for before changing it again.
    private let job: UnsafeMutablePointer<Job>
    /// Region count; touched only by the owner.
    private var generation: UInt32 = 0
    /// Workers, index i taking part in regions of more than i + 1 parts; grown only by the owner.
    private var workers: [Worker] = []

    private struct Job {
        var body: ((Int) -> Void)?
        var count = 0
        var parts = 0
    }

    private init() {
        job = .allocate(capacity: 1)
        job.initialize(to: Job())
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
        generation &+= 1
        let opening = UInt64(generation) << 32 | UInt64(parts) << 16 | UInt64(parts)
        // Sequentially consistent, as is each worker's `sleeping` flag: either the worker sees this
        // region before it sleeps or this thread sees it asleep and wakes it.
        ticket.store(opening, ordering: .sequentiallyConsistent)
        for index in 0..<(parts - 1) where workers[index].sleeping.load(ordering: .sequentiallyConsistent) {
            workers[index].wake()
        }
        let wasInside = RegionMarker.isInside
        RegionMarker.isInside = true
        let ranHere = runBlocks(of: generation)
        var waited = 0
        while finished.load(ordering: .acquiring) != parts - ranHere {
            // Only blocks already claimed are left; they end soon unless their thread was preempted.
            waited += 1
            if waited < 4096 { sq_spin_pause() } else { sched_yield() }
        }
        RegionMarker.isInside = wasInside
        job.pointee.body = nil
        return true
    }

    /// Claims and runs blocks of region `generation` until none is left; returns how many it ran.
    private func runBlocks(of generation: UInt32) -> Int {
        var ran = 0
        var current = ticket.load(ordering: .acquiring)
        while UInt32(truncatingIfNeeded: current >> 32) == generation, current & 0xFFFF != 0 {
            let (claimed, seen) = ticket.compareExchange(expected: current, desired: current - 1,
                                                         ordering: .acquiringAndReleasing)
            if claimed {
                runBlock(Int(current & 0xFFFF) - 1)
                ran += 1
                current -= 1
            } else {
                current = seen
            }
        }
        return ran
    }

    /// Runs one block of the current job. Not inlined, so that any reference it takes to the body is
    /// released before the block is reported finished.
    @inline(never)
    private func runBlock(_ block: Int) {
        let job = self.job.pointee
        let body = job.body.unsafelyUnwrapped
        for i in (block * job.count / job.parts)..<((block + 1) * job.count / job.parts) { body(i) }
    }

    /// Makes sure workers 0..<count exist (only the owner of a region calls this).
    private func hireWorkers(_ count: Int) {
        while workers.count < count {
            let worker = Worker(index: workers.count)
            workers.append(worker)
            worker.start(pool: self, seen: generation)
        }
    }

    /// A worker thread's life: poll for regions that need it, run blocks, sleep when idle for long.
    /// `seen` is the last region before the worker was hired.
    fileprivate func serve(_ worker: Worker, seen: UInt32) -> Never {
        RegionMarker.isInside = true
        var seen = seen
        var deadline = Clock.nanoseconds() &+ Self.spinNanoseconds
        var polls = 0
        while true {
            let current = ticket.load(ordering: .acquiring)
            let region = UInt32(truncatingIfNeeded: current >> 32)
            if region != seen {
                seen = region
                if Self.needs(worker, current) {
                    let ran = runBlocks(of: region)
                    if ran > 0 { finished.add(ran, ordering: .releasing) }
                    deadline = Clock.nanoseconds() &+ Self.spinNanoseconds
                }
                continue
            }
            sq_spin_pause()
            polls &+= 1
            // Reading the clock costs about as much as a few dozen pauses.
            if polls & 63 == 0, Clock.nanoseconds() > deadline {
                worker.sleep {
                    let latest = self.ticket.load(ordering: .sequentiallyConsistent)
                    return UInt32(truncatingIfNeeded: latest >> 32) != seen && Self.needs(worker, latest)
                }
                deadline = Clock.nanoseconds() &+ Self.spinNanoseconds
            }
        }
    }

    /// Whether the region in `ticket` asks for `worker`.
    private static func needs(_ worker: Worker, _ ticket: UInt64) -> Bool {
        worker.index < Int(ticket >> 16 & 0xFFFF) - 1
    }
}

/// One worker thread and where it sleeps.
private final class Worker: @unchecked Sendable {
    let index: Int
    /// True while the thread is (about to be) waiting on `condition`.
    let sleeping = Atomic<Bool>(false)
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let condition: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)

    init(index: Int) {
        self.index = index
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    /// Starts the thread; it runs `pool.serve(self, seen:)` for the rest of the process.
    func start(pool: WorkerPool, seen: UInt32) {
        let context = Unmanaged.passRetained(WorkerStart(pool: pool, worker: self, seen: seen)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
            start.pool.serve(start.worker, seen: start.seen)
        }, context)
        precondition(status == 0, "Parallel: cannot start a worker thread (pthread_create returned \(status))")
        pthread_detach(thread)
    }

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

private final class WorkerStart {
    let pool: WorkerPool
    let worker: Worker
    let seen: UInt32
    init(pool: WorkerPool, worker: Worker, seen: UInt32) {
        self.pool = pool
        self.worker = worker
        self.seen = seen
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

private enum Clock {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
