#if canImport(Glibc)
import Glibc
#endif

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
    return state.results.compactMap { $0 }
}

protocol PoolWorker: AnyObject {
    func work()
}

/// The shared queue of job indexes and the results, behind a mutex.
final class PoolState<T: Sendable>: PoolWorker, @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var next = 0
    private let count: Int
    private let job: @Sendable (Int) -> T
    fileprivate var results: [T?]

    init(count: Int, job: @escaping @Sendable (Int) -> T) {
        self.count = count
        self.job = job
        results = Array(repeating: nil, count: count)
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func work() {
        while let index = take() {
            let result = job(index)
            pthread_mutex_lock(&mutex)
            results[index] = result
            pthread_mutex_unlock(&mutex)
        }
    }

    private func take() -> Int? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }
}

/// A mutex-guarded function, for the progress display that every job thread calls.
final class Serialized<Value>: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var value: Value

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func with<R>(_ body: (inout Value) -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body(&value)
    }
}
