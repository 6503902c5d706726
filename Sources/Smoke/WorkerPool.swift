#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Runs `count` jobs on at most `width` threads and returns their results in order. Each job
/// is synchronous (it drives child processes); the threads only keep `width` of them going.
func runJobs<T: Sendable>(count: Int, width: Int, _ job: @escaping @Sendable (Int) -> T) -> [T] {
    let state = PoolState<T>(count: count, job: job)
    let threads = max(1, min(width, count))
    var ids: [pthread_t] = []
    for _ in 0..<threads {
        var tid = pthread_t()
        let context = Unmanaged.passRetained(state).toOpaque()
        let rc = pthread_create(&tid, nil, { raw in
            guard let raw else { return nil }
            let state = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue() as? PoolWorker
            state?.work()
            return nil
        }, context)
        if rc == 0 {
            ids.append(tid)
        } else {
            Unmanaged<PoolState<T>>.fromOpaque(context).release()
            state.work()  // no thread to be had: do the work here
        }
    }
    for tid in ids { pthread_join(tid, nil) }
    return state.results
}

protocol PoolWorker: AnyObject {
    func work()
}

/// The shared queue of job indexes and the results.
final class PoolState<T: Sendable>: PoolWorker, Sendable {
    private struct Queue {
        var next = 0
        var results: [T?]
    }

    private let queue: Mutex<Queue>
    private let count: Int
    private let job: @Sendable (Int) -> T

    init(count: Int, job: @escaping @Sendable (Int) -> T) {
        self.count = count
        self.job = job
        queue = Mutex(Queue(results: Array(repeating: nil, count: count)))
    }

    func work() {
        while let index = take() {
            let result = job(index)
            queue.withLock { $0.results[index] = result }
        }
    }

    /// The results of the jobs done so far, in order.
    var results: [T] { queue.withLock { $0.results.compactMap { $0 } } }

    private func take() -> Int? {
        queue.withLock { queue in
            guard queue.next < count else { return nil }
            queue.next += 1
            return queue.next - 1
        }
    }
}
