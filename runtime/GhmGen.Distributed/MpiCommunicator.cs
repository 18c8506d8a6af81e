// MPI_COMM_WORLD as the Trainer's IGradientReducer (docs/DISTRIBUTED.md).
//  * Start: MPI_Init_thread(MPI_THREAD_FUNNELED): only the thread that creates the communicator
//    calls MPI (the data loader's threads never do).
//  * Gradients: packed in reverse parameter order (the order backward produces them, as
//    PyTorch's DDP buckets) into buckets of at most BucketBytes (the first at most 1 MiB, as DDP);
//    each bucket's MPI_Iallreduce (sum, float32) is started as soon as it is packed, then
//    MPI_Waitall; the sums are divided by N while unpacked. Overlapped (BeginAverageGradients,
//    the generated Backward's IGradientReadySink calls, EndAverageGradients): a bucket is packed
//    and started while backward still runs, as soon as its last gradient is final, and every
//    report calls MPI_Test to let the started ones progress (a bucket found complete is divided
//    and unpacked then). The
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
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Distributed;

/// <summary>
/// The ranks of an <c>mpirun</c> job as an <see cref="IGradientReducer"/>. Create one per process
/// with <see cref="Initialize"/>, from the thread that will train (MPI_THREAD_FUNNELED: no other
/// thread may use it); <see cref="Dispose"/> calls MPI_Finalize. Not thread-safe.
/// </summary>
public sealed unsafe class MpiCommunicator : IOverlappingGradientReducer, IDisposable
{
    /// <summary>The exit code of a job ended because a rank was lost or a collective timed out (<c>ghm</c>'s exit code 5).</summary>
    public const int LostRankExitCode = 5;

    /// <summary>Default bucket size: PyTorch DDP's bucket_cap_mb, 25 MiB.</summary>
    public const int DefaultBucketBytes = 25 << 20;

    /// <summary>Default size of the first bucket (the last parameters): PyTorch DDP's first bucket, 1 MiB, so that the overlapped reduction starts early.</summary>
    public const int DefaultFirstBucketBytes = 1 << 20;

    private readonly MpiLibrary _mpi;
    private readonly Timer _watchdog;
    private readonly Lock _watchLock = new();
    private readonly int _bucketBytes;
    private readonly int _firstBucketBytes;
    private int[] _lengths = [];
    private (int First, int Last, int Length)[] _buckets = [];
    private int[] _bucketOf = [];
    private int[] _offsetOf = [];
    private float[][] _send = [];
    private float[][] _receive = [];
    private nint[] _requests = [];
    private OverlappedAverage? _overlap;
    private long _operation;
    private string _watched = "";
    private bool _disposed;

    private MpiCommunicator(MpiLibrary mpi, TimeSpan timeout, int bucketBytes, int firstBucketBytes)
    {
        _mpi = mpi;
        Timeout = timeout;
        _bucketBytes = bucketBytes;
        _firstBucketBytes = firstBucketBytes;
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
    /// <param name="firstBucketBytes">Gradient bytes of the first bucket at most (default 1 MiB; at most <paramref name="bucketBytes"/> is used).</param>
    /// <exception cref="DllNotFoundException">No MPI library could be loaded.</exception>
    /// <exception cref="InvalidOperationException">MPI could not be initialised, or was already.</exception>
    public static MpiCommunicator Initialize(TimeSpan timeout, int bucketBytes = DefaultBucketBytes, string? libraryPath = null,
        int firstBucketBytes = DefaultFirstBucketBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBytes, 4);
        ArgumentOutOfRangeException.ThrowIfLessThan(firstBucketBytes, 4);
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
        return new MpiCommunicator(mpi, timeout, bucketBytes, firstBucketBytes);
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

    /// <summary>Gradient all-reductions started while the backward pass was still running (overlapped; see <see cref="BeginAverageGradients"/>).</summary>
    public long OverlappedAllReduces { get; private set; }

    /// <summary>Time the training thread spent averaging gradients: in <see cref="AverageGradients"/>, or in an overlapped averaging's calls (packing, MPI_Test, waiting, unpacking).</summary>
    public TimeSpan GradientTime { get; private set; }

    /// <summary>The part of <see cref="GradientTime"/> spent blocked in MPI_Waitall for the gradient buckets: the reduction time not hidden behind the backward pass.</summary>
    public TimeSpan GradientWaitTime { get; private set; }

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
        if (_overlap is not null) throw new InvalidOperationException("an overlapped averaging is under way: end it first");
        long started = Stopwatch.GetTimestamp();
        Prepare(gradients);
        for (int b = 0; b < _buckets.Length; b++)
        {
            (int first, int last, _) = _buckets[b];
            for (int i = first; i >= last; i--) Pack(gradients, i);
            StartBucket(b, duringBackward: false); // reduces while the next bucket is packed
        }
        WaitAndUnpack(gradients, 0);
        GradientTime += Stopwatch.GetElapsedTime(started);
    }

    /// <summary>
    /// Starts averaging gradients that the backward pass has yet to write (docs/DISTRIBUTED.md,
    /// "Overlap with backward"): the buckets are those of <see cref="AverageGradients"/>; a bucket's
    /// MPI_Iallreduce starts once every gradient in it and in the buckets before it was reported
    /// ready (the same order of collectives on every rank), and each report drives MPI's progress
    /// with MPI_Test. <see cref="EndAverageGradients"/> waits and divides; the result is bitwise
    /// that of <see cref="AverageGradients"/>.
    /// </summary>
    public IGradientReadySink BeginAverageGradients(IReadOnlyList<float[]> gradients)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(gradients);
        if (_overlap is not null) throw new InvalidOperationException("the previous overlapped averaging was not ended");
        long started = Stopwatch.GetTimestamp();
        Prepare(gradients);
        _overlap = new OverlappedAverage(this, gradients);
        GradientTime += Stopwatch.GetElapsedTime(started);
        return _overlap;
    }

    /// <inheritdoc />
    public void EndAverageGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        OverlappedAverage overlap = _overlap ?? throw new InvalidOperationException("no overlapped averaging was begun");
        if (overlap.Remaining > 0)
            throw new InvalidOperationException($"{overlap.Remaining} of {overlap.Gradients.Count} gradients were never reported ready");
        long started = Stopwatch.GetTimestamp();
        _overlap = null;
        WaitAndUnpack(overlap.Gradients, overlap.Completed);
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

    // Buckets of consecutive parameters, from the last one backwards (DDP's order): the first at
    // most _firstBucketBytes (DDP's first_bucket_bytes, so that the overlapped reduction starts
    // early), the others at most _bucketBytes (a larger parameter has a bucket of its own). Made
    // once per list of gradient lengths, with every bucket's pinned buffers.
    private void Prepare(IReadOnlyList<float[]> gradients)
    {
        if (_lengths.Length == gradients.Count && gradients.Select((g, i) => g.Length == _lengths[i]).All(x => x)) return;
        var buckets = new List<(int, int, int)>();
        int i = gradients.Count - 1;
        while (i >= 0)
        {
            int limit = Math.Max(1, (buckets.Count == 0 ? Math.Min(_firstBucketBytes, _bucketBytes) : _bucketBytes) / sizeof(float));
            int first = i;
            long length = 0;
            while (i >= 0 && (length == 0 || length + gradients[i].Length <= limit))
            {
                length += gradients[i].Length;
                i--;
            }
            buckets.Add((first, i + 1, checked((int)length)));
        }
        _lengths = [.. gradients.Select(g => g.Length)];
        _buckets = [.. buckets];
        _bucketOf = new int[gradients.Count];
        _offsetOf = new int[gradients.Count];
        for (int b = 0; b < _buckets.Length; b++)
        {
            int at = 0;
            for (int p = _buckets[b].First; p >= _buckets[b].Last; p--)
            {
                (_bucketOf[p], _offsetOf[p]) = (b, at);
                at += _lengths[p];
            }
        }
        // On the pinned object heap: MPI reads and writes them until the request completes.
        _send = [.. _buckets.Select(b => GC.AllocateUninitializedArray<float>(b.Length, pinned: true))];
        _receive = [.. _buckets.Select(b => GC.AllocateUninitializedArray<float>(b.Length, pinned: true))];
        _requests = new nint[_buckets.Length];
    }

    private void Pack(IReadOnlyList<float[]> gradients, int parameter) =>
        gradients[parameter].CopyTo(_send[_bucketOf[parameter]], _offsetOf[parameter]);

    private void StartBucket(int bucket, bool duringBackward)
    {
        int length = _buckets[bucket].Length;
        _requests[bucket] = 0;
        fixed (float* send = _send[bucket])
        fixed (float* receive = _receive[bucket])
        fixed (nint* request = &_requests[bucket])
            Check(_mpi.Iallreduce(send, receive, length, _mpi.Float, _mpi.Sum, _mpi.CommWorld, request), "MPI_Iallreduce");
        GradientBytes += (long)length * sizeof(float);
        GradientAllReduces++;
        if (duringBackward) OverlappedAllReduces++;
    }

    // MPI_Test on the oldest requests still open: Open MPI progresses a non-blocking collective
    // only inside MPI calls, and only the training thread may call MPI (FUNNELED).
    private void Progress(ref int completed, int started)
    {
        byte* status = stackalloc byte[64];
        while (completed < started)
        {
            int flag;
            fixed (nint* request = &_requests[completed]) Check(_mpi.Test(request, &flag, status), "MPI_Test");
            if (flag == 0) return;
            completed++;
        }
    }

    // MPI_Waitall on each bucket in turn (completed ones are MPI_REQUEST_NULL by now), then each sum / N
    // of the buckets from firstToUnpack on (the ones before were unpacked when they completed).
    private void WaitAndUnpack(IReadOnlyList<float[]> gradients, int firstToUnpack)
    {
        long waiting = Stopwatch.GetTimestamp();
        long op = Watch($"MPI_Iallreduce/MPI_Waitall of {_buckets.Length} gradient buckets");
        // One request per call: the request slots are 8 bytes (Open MPI's pointers), while MPICH's
        // MPI_Waitall reads its array as 4-byte ints, so a count above 1 would hand it the upper
        // halves of the slots as requests ("invalid request", seen with 2 buckets).
        byte* status = stackalloc byte[64];
        int rc = 0;
        for (int b = 0; b < _buckets.Length && rc == 0; b++)
            fixed (nint* request = &_requests[b]) rc = _mpi.Waitall(1, request, status);
        Unwatch(op);
        Check(rc, "MPI_Waitall");
        GradientWaitTime += Stopwatch.GetElapsedTime(waiting);
        for (int b = firstToUnpack; b < _buckets.Length; b++) Unpack(gradients, b);
    }

    // The bucket's sums divided by N into its gradient arrays (as PyTorch's DDP divides the bucket by the world size).
    private void Unpack(IReadOnlyList<float[]> gradients, int bucket)
    {
        float ranks = WorldSize;
        (int first, int last, _) = _buckets[bucket];
        float[] receive = _receive[bucket];
        for (int i = first; i >= last; i--)
        {
            float[] g = gradients[i];
            ReadOnlySpan<float> sum = receive.AsSpan(_offsetOf[i], g.Length);
            for (int k = 0; k < g.Length; k++) g[k] = sum[k] / ranks;
        }
    }

    // One overlapped averaging: which gradients were reported, which buckets were started and
    // which of those are known complete (and unpacked at once: their arrays were final when
    // reported, and backward writes no host gradient twice).
    private sealed class OverlappedAverage(MpiCommunicator owner, IReadOnlyList<float[]> gradients) : IGradientReadySink
    {
        private readonly bool[] _ready = new bool[gradients.Count];
        private readonly int[] _missing = [.. owner._buckets.Select(b => b.First - b.Last + 1)];
        private int _started, _completed;

        public IReadOnlyList<float[]> Gradients => gradients;

        public int Remaining { get; private set; } = gradients.Count;

        public int Completed => _completed;

        public void GradientReady(int parameter)
        {
            if (owner._overlap != this) throw new InvalidOperationException("this overlapped averaging has ended");
            ArgumentOutOfRangeException.ThrowIfNegative(parameter);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(parameter, gradients.Count);
            if (_ready[parameter]) throw new InvalidOperationException($"gradient {parameter} was reported ready twice");
            long clock = Stopwatch.GetTimestamp();
            _ready[parameter] = true;
            Remaining--;
            owner.Pack(gradients, parameter);
            _missing[owner._bucketOf[parameter]]--;
            // In bucket order only: every rank must start the same collectives in the same order.
            while (_started < _missing.Length && _missing[_started] == 0) owner.StartBucket(_started++, duringBackward: Remaining > 0);
            int before = _completed;
            owner.Progress(ref _completed, _started);
            for (int b = before; b < _completed; b++) owner.Unpack(gradients, b);
            owner.GradientTime += Stopwatch.GetElapsedTime(clock);
        }
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
