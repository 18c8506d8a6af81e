using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// CpuWorkerPool: every item runs exactly once per loop and each worker index is used by one thread at a time,
/// over many short loops back to back (where a helper that wakes late finds its loop closed and must neither
/// run a finished loop's items nor miss the next loop's), with and without busy threads competing for the
/// cores; an exception in an item reaches the caller and the pool stays usable.
/// </summary>
public class CpuWorkerPoolTests
{
    private sealed class Counting(int items, int workers) : IParallelWork
    {
        public readonly int[] Runs = new int[items];
        private readonly int[] _inside = new int[workers];
        public int Overlaps;

        public void Execute(int item, int worker)
        {
            if (Interlocked.Increment(ref _inside[worker]) != 1) Interlocked.Increment(ref Overlaps);
            Interlocked.Increment(ref Runs[item]);
            Thread.SpinWait(50 * (item % 4));
            Interlocked.Decrement(ref _inside[worker]);
        }
    }

    private sealed class Throwing : IParallelWork
    {
        public void Execute(int item, int worker)
        {
            if (item == 3) throw new InvalidOperationException("item 3");
        }
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(3, 0)]
    [InlineData(2, 2)]  // two busy threads besides: helpers are often late
    public void ManyShortLoops_RunEveryItemOnce(int workers, int busyThreads)
    {
        using var stop = new CancellationTokenSource();
        var busy = Enumerable.Range(0, busyThreads).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested) Thread.SpinWait(1000);
        }) { IsBackground = true }).ToList();
        busy.ForEach(t => t.Start());
        try
        {
            using var pool = new CpuWorkerPool(workers);
            for (int loop = 0; loop < 3000; loop++)
            {
                int items = 1 + loop % 9;
                var work = new Counting(items, workers);
                pool.Run(work, items);
                Assert.All(work.Runs, count => Assert.Equal(1, count));
                Assert.Equal(0, work.Overlaps);
            }
        }
        finally
        {
            stop.Cancel();
            busy.ForEach(t => t.Join());
        }
    }

    [Fact]
    public void ExceptionInAnItem_ReachesTheCaller_PoolStaysUsable()
    {
        using var pool = new CpuWorkerPool(2);
        var error = Assert.Throws<InvalidOperationException>(() => pool.Run(new Throwing(), 8));
        Assert.Equal("item 3", error.Message);
        var work = new Counting(8, 2);
        pool.Run(work, 8);
        Assert.All(work.Runs, count => Assert.Equal(1, count));
    }
}
