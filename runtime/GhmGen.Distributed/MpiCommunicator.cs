// MPI_COMM_WORLD as the Trainer's IGradientReducer (docs/DISTRIBUTED.md).
//  * Start: MPI_Init_thread(MPI_THREAD_FUNNELED): only the thread that creates the communicator
//    calls MPI (the data loader's threads never do).
//  * Gradients: packed in reverse parameter order (the order backward produces them, as
//    PyTorch's DDP buckets) into buckets of at most BucketBytes; each bucket's MPI_Iallreduce
//    (sum, float32) is started as soon as it is packed, so the reduction of one bucket runs while
//    the next is packed, then MPI_Waitall; the sums are divided by N while unpacked. The
//    library's reduction gives every rank the same bits (a sum of N terms, combined in the same
//    order for all ranks by Open MPI's and MPICH's allreduce algorithms for commutative ops:
//    checked for 2 ranks by the tests, which compare the ranks' weights bitwise).
//  * Bounded waits: every collective runs under a watchdog. If it has not returned after
//    Timeout (a rank died, hangs, or never sends), the watchdog writes which collective of which
//    rank timed out to standard error and calls MPI_Abort(MPI_COMM_WORLD, LostRankExitCode),
//    which ends every rank of the job (mpirun exits with that code). A rank that dies outright is
//    noticed by mpirun itself, which ends the others. MPI's default error handler
//    (MPI_ERRORS_ARE_FATAL) is kept: a broken connection aborts the job with the library's message.
//  * Counters: bytes this rank contributed to all-reductions and broadcasts (payload, not the
//    algorithm's traffic, which for a bandwidth-optimal all-reduce is 2 (N - 1) / N of it per rank).
using System.Diagnostics;
using System.Runtime.InteropServices;
using GhmGen.Training;

namespace GhmGen.Distributed;

/// <summary>
/// The ranks of an <c>mpirun</c> job as an <see cref="IGradientReducer"/>. Create one per process
/// with <see cref="Initialize"/>, from the thread that will train (MPI_THREAD_FUNNELED: no other
/// thread may use it); <see cref="Dispose"/> calls MPI_Finalize. Not thread-safe.
/// </summary>
public sealed unsafe class MpiCommunicator : IGradientReducer, IDisposable
{
    /// <summary>The exit code of a job ended because a rank was lost or a collective timed out (<c>ghm</c>'s exit code 5).</summary>
    public const int LostRankExitCode = 5;

    /// <summary>Default bucket size: PyTorch DDP's bucket_cap_mb, 25 MiB.</summary>
    public const int DefaultBucketBytes = 25 << 20;

    private readonly MpiLibrary _mpi;
    private readonly Timer _watchdog;
    private readonly Lock _watchLock = new();
    private readonly int _bucketBytes;
    private float[][] _send = [];
    private float[][] _receive = [];
    private long _operation;
    private string _watched = "";
    private bool _disposed;

    private MpiCommunicator(MpiLibrary mpi, TimeSpan timeout, int bucketBytes)
    {
        _mpi = mpi;
        Timeout = timeout;
        _bucketBytes = bucketBytes;
        int rank, size;
        Check(mpi.CommRank(mpi.CommWorld, &rank), "MPI_Comm_rank");
        Check(mpi.CommSize(mpi.CommWorld, &size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
        _watchdog = new Timer(OnTimeout);
    }

    /// <summary>
    /// Initialises MPI (once per process) and returns MPI_COMM_WORLD.
    /// </summary>
    /// <param name="timeout">How long any collective may wait for the other ranks before the job is aborted.</param>
    /// <param name="bucketBytes">Gradient bytes per all-reduce at most (default 25 MiB).</param>
    /// <param name="libraryPath">The MPI library (null: <c>GHM_MPI_LIBRARY</c>, then libmpi.so.40, libmpi.so.12, ...).</param>
    /// <exception cref="DllNotFoundException">No MPI library could be loaded.</exception>
    /// <exception cref="InvalidOperationException">MPI could not be initialised, or was already.</exception>
    public static MpiCommunicator Initialize(TimeSpan timeout, int bucketBytes = DefaultBucketBytes, string? libraryPath = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBytes, 4);
        MpiLibrary mpi = MpiLibrary.Load(libraryPath);
        int initialized;
        Check(mpi.Initialized(&initialized), "MPI_Initialized");
        if (initialized != 0) throw new InvalidOperationException("MPI is already initialised in this process");
        int provided;
        Check(mpi.InitThread(null, 0, MpiLibrary.ThreadFunneled, &provided), "MPI_Init_thread");
        if (provided < MpiLibrary.ThreadFunneled)
        {
            mpi.Finalize();
            throw new InvalidOperationException($"{mpi.Path}: MPI_THREAD_FUNNELED is needed, the library provides level {provided}");
        }
        return new MpiCommunicator(mpi, timeout, bucketBytes);
    }

    /// <summary>
    /// Whether this process was started by an MPI launcher as one of several ranks: Open MPI's
    /// <c>OMPI_COMM_WORLD_SIZE</c>, MPICH Hydra's or Slurm PMI2's <c>PMI_SIZE</c>, <c>PMIX_SIZE</c> or
    /// <c>MPI_LOCALNRANKS</c> above 1, or <c>GHM_DISTRIBUTED=1</c> for a launcher that sets none of them.
    /// </summary>
    public static bool LaunchedWithSeveralRanks()
    {
        if (Environment.GetEnvironmentVariable("GHM_DISTRIBUTED") == "1") return true;
        foreach (string name in (ReadOnlySpan<string>)["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"])
            if (int.TryParse(Environment.GetEnvironmentVariable(name), out int size) && size > 1) return true;
        return false;
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int WorldSize { get; }

    /// <summary>How long a collective may wait before the job is aborted.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Which ABI the loaded library has.</summary>
    public MpiFlavor Flavor => _mpi.Flavor;

    /// <summary>The library's version string (MPI_Get_library_version, first line).</summary>
    public string LibraryVersion => _mpi.Version();

    /// <summary>Gradient bytes this rank has passed to all-reductions so far.</summary>
    public long GradientBytes { get; private set; }

    /// <summary>All-reductions of gradient buckets started so far.</summary>
    public long GradientAllReduces { get; private set; }

    /// <summary>Bytes this rank has passed to broadcasts and scalar sums so far.</summary>
    public long OtherBytes { get; private set; }

    /// <summary>Time spent in <see cref="AverageGradients"/> (packing, waiting, unpacking).</summary>
    public TimeSpan GradientTime { get; private set; }

    /// <inheritdoc />
    public void Broadcast(Span<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        const int chunk = 1 << 30;
        fixed (byte* p = data)
        {
            for (int offset = 0; offset < data.Length; offset += chunk)
            {
                int n = Math.Min(chunk, data.Length - offset);
                long op = Watch("MPI_Bcast of the initial state");
                int rc = _mpi.Bcast(p + offset, n, _mpi.Byte, 0, _mpi.CommWorld);
                Unwatch(op);
                Check(rc, "MPI_Bcast");
            }
        }
        OtherBytes += data.Length;
    }

    /// <inheritdoc />
    public void Sum(Span<double> values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<double> result = values.Length <= 64 ? stackalloc double[values.Length] : new double[values.Length];
        fixed (double* send = values)
        fixed (double* receive = result)
        {
            long op = Watch("MPI_Allreduce of the losses");
            int rc = _mpi.Allreduce(send, receive, values.Length, _mpi.Double, _mpi.Sum, _mpi.CommWorld);
            Unwatch(op);
            Check(rc, "MPI_Allreduce");
        }
        result.CopyTo(values);
        OtherBytes += values.Length * sizeof(double);
    }

    /// <inheritdoc />
    public void AverageGradients(IReadOnlyList<float[]> gradients)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(gradients);
        long started = Stopwatch.GetTimestamp();
        List<(int First, int Last, int Length)> buckets = Plan(gradients);
        EnsureBuffers(buckets);
        var handles = new GCHandle[2 * buckets.Count];
        nint* requests = stackalloc nint[buckets.Count];
        long op = Watch($"MPI_Iallreduce/MPI_Waitall of {buckets.Count} gradient buckets");
        try
        {
            for (int b = 0; b < buckets.Count; b++)
            {
                (int first, int last, int length) = buckets[b];
                float[] send = _send[b], receive = _receive[b];
                int at = 0;
                for (int i = first; i >= last; i--) // reverse parameter order
                {
                    gradients[i].CopyTo(send, at);
                    at += gradients[i].Length;
                }
                handles[2 * b] = GCHandle.Alloc(send, GCHandleType.Pinned);
                handles[2 * b + 1] = GCHandle.Alloc(receive, GCHandleType.Pinned);
                requests[b] = 0;
                Check(_mpi.Iallreduce((void*)handles[2 * b].AddrOfPinnedObject(), (void*)handles[2 * b + 1].AddrOfPinnedObject(), length,
                    _mpi.Float, _mpi.Sum, _mpi.CommWorld, &requests[b]), "MPI_Iallreduce");
                GradientBytes += (long)length * sizeof(float);
                GradientAllReduces++;
            }
            byte* statuses = stackalloc byte[64 * Math.Max(1, buckets.Count)];
            Check(_mpi.Waitall(buckets.Count, requests, statuses), "MPI_Waitall");
        }
        finally
        {
            Unwatch(op);
            foreach (GCHandle h in handles)
                if (h.IsAllocated) h.Free();
        }
        float ranks = WorldSize; // divided, as PyTorch's DDP divides the bucket by the world size
        for (int b = 0; b < buckets.Count; b++)
        {
            (int first, int last, _) = buckets[b];
            float[] receive = _receive[b];
            int at = 0;
            for (int i = first; i >= last; i--)
            {
                float[] g = gradients[i];
                ReadOnlySpan<float> sum = receive.AsSpan(at, g.Length);
                for (int k = 0; k < g.Length; k++) g[k] = sum[k] / ranks;
                at += g.Length;
            }
        }
        GradientTime += Stopwatch.GetElapsedTime(started);
    }

    /// <summary>Ends the whole job now with <paramref name="exitCode"/> (MPI_Abort on MPI_COMM_WORLD), after writing <paramref name="message"/> to standard error.</summary>
    public void Abort(int exitCode, string message)
    {
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        _mpi.Abort(_mpi.CommWorld, exitCode);
        Environment.Exit(exitCode); // MPI_Abort does not return; in case it does
    }

    /// <summary>Waits for every rank (bounded by <see cref="Timeout"/>), then MPI_Finalize.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        long op = Watch("MPI_Barrier before MPI_Finalize");
        int rc = _mpi.Barrier(_mpi.CommWorld);
        Unwatch(op);
        _disposed = true;
        _watchdog.Dispose();
        int finalized;
        if (rc == MpiLibrary.Success && _mpi.Finalized(&finalized) == MpiLibrary.Success && finalized == 0) _mpi.Finalize();
    }

    // Buckets of consecutive parameters, from the last one backwards, each at most _bucketBytes
    // (a larger parameter has a bucket of its own).
    private List<(int First, int Last, int Length)> Plan(IReadOnlyList<float[]> gradients)
    {
        var buckets = new List<(int, int, int)>();
        int limit = Math.Max(1, _bucketBytes / sizeof(float));
        int i = gradients.Count - 1;
        while (i >= 0)
        {
            int first = i;
            long length = 0;
            while (i >= 0 && (length == 0 || length + gradients[i].Length <= limit))
            {
                length += gradients[i].Length;
                i--;
            }
            buckets.Add((first, i + 1, checked((int)length)));
        }
        return buckets;
    }

    private void EnsureBuffers(List<(int First, int Last, int Length)> buckets)
    {
        if (_send.Length == buckets.Count && buckets.Select((b, i) => _send[i].Length == b.Length).All(x => x)) return;
        _send = [.. buckets.Select(b => new float[b.Length])];
        _receive = [.. buckets.Select(b => new float[b.Length])];
    }

    private long Watch(string what)
    {
        lock (_watchLock)
        {
            _watched = what;
            _watchdog.Change(Timeout, System.Threading.Timeout.InfiniteTimeSpan);
            return ++_operation;
        }
    }

    private void Unwatch(long operation)
    {
        lock (_watchLock)
        {
            if (_operation == operation) _watchdog.Change(System.Threading.Timeout.InfiniteTimeSpan, System.Threading.Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimeout(object? state)
    {
        string what;
        lock (_watchLock) what = _watched;
        // MPI_Abort from this thread: outside MPI_THREAD_FUNNELED's letter, but both Open MPI and
        // MPICH end the job from any thread; there is nothing else left to do with a hung collective.
        Abort(LostRankExitCode, $"ghm train: rank {Rank} of {WorldSize}: {what} did not complete within {Timeout.TotalSeconds:G} s " +
            "(another rank died, hangs or never sent); aborting every rank (exit code 5). The last checkpoint is still usable with --resume.");
    }

    private static void Check(int rc, string function)
    {
        if (rc != MpiLibrary.Success) throw new InvalidOperationException($"{function} failed with MPI error code {rc}");
    }
}
