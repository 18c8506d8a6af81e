// Persistent worker threads for the CPU backend: Run(work, items) executes work.Execute(i, worker)
// for every item i in [0, items), handing items out one at a time (dynamic scheduling), on the
// calling thread (worker 0) and on WorkerCount - 1 background threads. A worker index is used by
// one thread at a time, so each worker can own scratch memory. Unlike Parallel.For, a steady-state
// Run allocates nothing (test: CpuBackendAllocationTests).
// The caller does not wait for helpers that have not started: a helper joins a loop only while it
// is open, and the caller closes it once it finds no item left, then waits only for the helpers
// inside it (each finishing the item it holds). On a loaded machine, where a woken helper may get
// no core for milliseconds, a loop then costs at most what the caller alone needs, instead of the
// helper's scheduling delay (at a 64x96 input, ~115 loops per forward of 0.05-1 ms each). A helper
// that wakes after its loop was closed finds it closed (or joins the next one) and waits again.
using System.Runtime.ExceptionServices;

namespace GhmGen.Backends.Cpu;

/// <summary>One parallel loop body: processes item <c>item</c> using worker <c>worker</c>'s scratch.</summary>
internal interface IParallelWork
{
    /// <summary>Processes one item.</summary>
    void Execute(int item, int worker);
}

/// <summary>A fixed set of background threads that run parallel loops without allocating.</summary>
internal sealed class CpuWorkerPool : IDisposable
{
    private readonly Thread[] threads;
    private readonly SemaphoreSlim startSignal = new(0);
    private IParallelWork? work;
    private int open;    // 1 while the current loop accepts helpers
    private int active;  // helpers inside the current loop (joined, not yet left)
    private int itemCount;
    private int nextItem;
    private ExceptionDispatchInfo? failure;
    private volatile bool disposed;
    private int running;

    /// <summary>Starts <paramref name="workerCount"/> - 1 background threads.</summary>
    public CpuWorkerPool(int workerCount)
    {
        if (workerCount < 1)
            throw new ArgumentOutOfRangeException(nameof(workerCount), workerCount, "the CPU backend needs at least one thread");
        WorkerCount = workerCount;
        threads = new Thread[workerCount - 1];
        for (int i = 0; i < threads.Length; i++)
        {
            int worker = i + 1;
            threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"GhmGen CPU worker {worker}" };
            threads[i].Start();
        }
    }

    /// <summary>Threads that run work, the caller included.</summary>
    public int WorkerCount { get; }

    /// <summary>Runs <paramref name="body"/> for items 0 .. <paramref name="items"/> - 1 and waits for all of them.</summary>
    public void Run(IParallelWork body, int items)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (Interlocked.Exchange(ref running, 1) != 0)
            throw new InvalidOperationException("CPU backend ops were called from two threads at once; one backend runs one op at a time");
        try
        {
            RunItems(body, items);
        }
        finally
        {
            Volatile.Write(ref running, 0);
        }
    }

    private void RunItems(IParallelWork body, int items)
    {
        if (items <= 0) return;
        int helpers = Math.Min(threads.Length, items - 1);
        if (helpers == 0)
        {
            for (int i = 0; i < items; i++) body.Execute(i, 0);
            return;
        }
        work = body;
        itemCount = items;
        failure = null;
        Volatile.Write(ref nextItem, 0);
        Volatile.Write(ref open, 1); // publishes the fields above to helpers that join
        startSignal.Release(helpers);
        Drain(0);
        // No item left: let no helper join any more, then wait for those inside (each on its last item).
        Interlocked.Exchange(ref open, 0);
        var spin = new SpinWait();
        while (Volatile.Read(ref active) != 0) spin.SpinOnce(sleep1Threshold: -1);
        work = null;
        failure?.Throw();
    }

    private void Drain(int worker)
    {
        IParallelWork body = work!;
        try
        {
            int item;
            while ((item = Interlocked.Increment(ref nextItem) - 1) < itemCount)
                body.Execute(item, worker);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref failure, ExceptionDispatchInfo.Capture(e), null);
            Volatile.Write(ref nextItem, int.MaxValue / 2); // stop handing out items
        }
    }

    private void WorkerLoop(int worker)
    {
        while (true)
        {
            startSignal.Wait();
            if (disposed) return;
            // Join only an open loop; the caller waits for `active` to drop to 0 after closing it, so
            // the loop's fields stay as they are while this helper is inside.
            Interlocked.Increment(ref active);
            if (Volatile.Read(ref open) != 0) Drain(worker);
            Interlocked.Decrement(ref active);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (threads.Length > 0) startSignal.Release(threads.Length);
        foreach (Thread t in threads) t.Join();
        startSignal.Dispose();
    }
}
