// The training data loader: an EpochSampler plan, the TrainPipeline per image, TrainBatch.Collate
// per batch, run ahead of the consumer by background workers.
//  * Determinism: batch (epoch, b) holds the images at positions [b*B, b*B + B) of the epoch's
//    order, and the sample at position p is flipped iff TrainRandom.ShouldFlip(seed, epoch, p, prob).
//    Everything is a function of (seed, epoch, position), so batches are identical for any worker
//    count and timing, and a stream opened at (epoch, b) yields exactly the tail of a full epoch.
//    (The flip key is the position in the epoch's order rather than the image index so that an
//    image GroupSampler repeats to fill a batch draws its flips independently, as mmdetection's.)
//  * Order: each worker claims the next batch number, loads it and puts it in its slot of a ring
//    of PrefetchBatches slots; the consumer takes slots strictly in batch order.
//  * Bounded memory: a worker must hold one of PrefetchBatches permits to claim a batch, and the
//    consumer returns the permit when it takes that batch, so at most PrefetchBatches batches are
//    loaded or being loaded ahead of the consumer (plus the one it holds).
//  * Skips: an image whose file is missing or corrupt is left out of its batch and reported
//    (ImageSkip); a batch whose images were all skipped is passed over, its index still counted.
//  * Cancellation: the token (or Dispose) stops the workers between images; a blocked consumer
//    gets an OperationCanceledException.
//  * Data parallel (WorldSize N > 1, docs/DISTRIBUTED.md): the plan is the one-process plan for
//    batches of N x BatchSize, and rank r's batch b holds positions start + r, start + r + N, ...
//    of global batch b (PyTorch's DistributedSampler: rank r takes indices[r::N]); a position past
//    the epoch's end (a short last sequential batch) wraps to its start, as DistributedSampler
//    pads. Flips keep the global position as key, so N ranks x B see exactly 1 x N*B's samples.
// Tests: tests/GhmGen.Runtime.Tests/Training/TrainDataLoaderTests.cs.
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.ExceptionServices;

namespace GhmGen.Training;

/// <summary>Settings of <see cref="TrainDataLoader"/>; the defaults are the GHM recipe's (batch 2, shuffled, flip 0.5).</summary>
/// <param name="BatchSize">Images per batch (samples_per_gpu, 2).</param>
/// <param name="Shuffle">GroupSampler order (true) or json order with a short last batch (false); see <see cref="EpochSampler"/>.</param>
/// <param name="Seed">Seed of the shuffles and flips.</param>
/// <param name="Workers">Background threads decoding and transforming (at least 1).</param>
/// <param name="PrefetchBatches">Batches loaded ahead of the consumer at most (at least 1); also bounds memory.</param>
/// <param name="Pipeline">Per-image settings (null: <see cref="TrainPipelineOptions.Default"/>).</param>
/// <param name="Rank">This process's rank in a data-parallel run (0 to <paramref name="WorldSize"/> - 1).</param>
/// <param name="WorldSize">Processes sharing every epoch (1: one process); each loads its shard of batches of <paramref name="BatchSize"/>.</param>
public sealed record TrainLoaderOptions(
    int BatchSize = 2, bool Shuffle = true, long Seed = 0, int Workers = 2, int PrefetchBatches = 4, TrainPipelineOptions? Pipeline = null,
    int Rank = 0, int WorldSize = 1);

/// <summary>Loads training batches of a <see cref="CocoDetectionDataset"/> deterministically, ahead of the consumer.</summary>
public sealed class TrainDataLoader
{
    /// <summary>Creates a loader; <paramref name="dataset"/> must hold at least one image.</summary>
    public TrainDataLoader(CocoDetectionDataset dataset, TrainLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        options ??= new TrainLoaderOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.BatchSize, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.Workers, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.PrefetchBatches, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.WorldSize, nameof(options));
        if ((uint)options.Rank >= (uint)options.WorldSize)
            throw new ArgumentOutOfRangeException(nameof(options), options.Rank, $"rank must be in [0, {options.WorldSize})");
        if (dataset.Count == 0)
            throw new ArgumentException($"dataset '{dataset.SourceName}' has no images left after filtering", nameof(dataset));
        Dataset = dataset;
        Options = options;
        // The global plan: batches of every rank's images together (see the header).
        Sampler = new EpochSampler(dataset.Images, checked(options.BatchSize * options.WorldSize), options.Shuffle, options.Seed);
        Pipeline = new TrainPipeline(options.Pipeline);
    }

    /// <summary>The images.</summary>
    public CocoDetectionDataset Dataset { get; }

    /// <summary>The settings.</summary>
    public TrainLoaderOptions Options { get; }

    /// <summary>The epoch plan of all ranks together (batches of BatchSize x WorldSize).</summary>
    public EpochSampler Sampler { get; }

    /// <summary>The per-image pipeline.</summary>
    public TrainPipeline Pipeline { get; }

    /// <summary>Batches in every epoch.</summary>
    public int BatchesPerEpoch => Sampler.BatchesPerEpoch;

    /// <summary>Called before each image is loaded (tests: hold a worker at a known point).</summary>
    internal Action<CocoImage, CancellationToken>? BeforeImageLoad { get; set; }

    /// <summary>
    /// Loads batch <paramref name="batchIndex"/> of epoch <paramref name="epoch"/> on the calling thread:
    /// null when every image of it was skipped; the skips are in <paramref name="skipped"/> either way.
    /// A <see cref="TrainBatchStream"/> yields exactly these batches.
    /// </summary>
    public TrainBatch? LoadBatch(int epoch, int batchIndex, out IReadOnlyList<ImageSkip> skipped) =>
        LoadBatch(epoch, batchIndex, Sampler.Order(epoch), CancellationToken.None, out skipped);

    /// <summary>
    /// Starts background loading at batch <paramref name="startBatch"/> of epoch <paramref name="startEpoch"/>,
    /// through the last batch of epoch <paramref name="endEpoch"/> - 1 (default: the end of the start epoch).
    /// Dispose the stream to stop its workers.
    /// </summary>
    public TrainBatchStream Open(int startEpoch, int startBatch = 0, int? endEpoch = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(startEpoch);
        if ((uint)startBatch > (uint)BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(startBatch), $"start batch must be in [0, {BatchesPerEpoch}], got {startBatch}");
        int end = endEpoch ?? startEpoch + 1;
        if (end < startEpoch) throw new ArgumentOutOfRangeException(nameof(endEpoch), $"end epoch {end} is before the start epoch {startEpoch}");
        return new TrainBatchStream(this, startEpoch, startBatch, end, cancellationToken);
    }

    internal TrainBatch? LoadBatch(int epoch, int batchIndex, int[] order, CancellationToken cancellationToken, out IReadOnlyList<ImageSkip> skipped)
    {
        var (start, length) = Sampler.BatchRange(batchIndex);
        int ranks = Options.WorldSize;
        int count = (length + ranks - 1) / ranks; // this rank's share (one process: the whole batch)
        var samples = new List<TrainSample>(count);
        List<ImageSkip>? skips = null;
        double flipProbability = Pipeline.Options.FlipProbability;
        for (int k = 0; k < count; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int position = start + Options.Rank + k * ranks;
            CocoImage image = Dataset.Images[order[position % order.Length]];
            BeforeImageLoad?.Invoke(image, cancellationToken);
            bool flip = TrainRandom.ShouldFlip(Options.Seed, epoch, position, flipProbability);
            TrainSample? sample = Pipeline.TryLoad(image, flip, out string? reason);
            if (sample is not null) samples.Add(sample);
            else (skips ??= []).Add(new ImageSkip(epoch, batchIndex, image.Index, image.FileName, reason ?? "unknown"));
        }
        skipped = skips is null ? [] : skips;
        return samples.Count == 0 ? null : TrainBatch.Collate(epoch, batchIndex, samples, skips);
    }
}

/// <summary>
/// Batches from a <see cref="TrainDataLoader"/> in plan order, loaded by background workers into a
/// bounded ring. Take them with <see cref="TryTakeNext"/> from one consumer thread.
/// </summary>
public sealed class TrainBatchStream : IDisposable
{
    /// <summary>Skips kept with their reasons; beyond this only <see cref="SkippedImageCount"/> grows.</summary>
    public const int MaxReportedSkips = 10_000;

    private readonly TrainDataLoader _loader;
    private readonly int _startEpoch, _startBatch, _batchesPerEpoch;
    private readonly long _total;
    private readonly CancellationTokenSource _cancellation;
    private readonly SemaphoreSlim _free;
    private readonly SemaphoreSlim[] _ready;
    private readonly Loaded?[] _slots;
    private readonly Thread[] _workers;
    private readonly Lock _ordersLock = new();
    private readonly Dictionary<int, int[]> _orders = [];
    private readonly List<ImageSkip> _skips = [];
    private long _claimed;
    private long _consumed;
    private bool _disposed;

    private sealed record Loaded(TrainBatch? Batch, IReadOnlyList<ImageSkip> Skipped, ExceptionDispatchInfo? Failure);

    internal TrainBatchStream(TrainDataLoader loader, int startEpoch, int startBatch, int endEpoch, CancellationToken cancellationToken)
    {
        _loader = loader;
        _startEpoch = startEpoch;
        _startBatch = startBatch;
        _batchesPerEpoch = loader.BatchesPerEpoch;
        _total = Math.Max(0, (long)(endEpoch - startEpoch) * _batchesPerEpoch - startBatch);
        _cancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        int capacity = loader.Options.PrefetchBatches;
        _free = new SemaphoreSlim(capacity, capacity);
        _ready = new SemaphoreSlim[capacity];
        for (int i = 0; i < capacity; i++) _ready[i] = new SemaphoreSlim(0, 1);
        _slots = new Loaded?[capacity];
        _workers = new Thread[loader.Options.Workers];
        for (int w = 0; w < _workers.Length; w++)
        {
            _workers[w] = new Thread(WorkerLoop) { IsBackground = true, Name = $"GhmGen train loader {w}" };
            _workers[w].Start();
        }
    }

    /// <summary>Batches this stream yields at most (fewer when whole batches are skipped).</summary>
    public long TotalBatches => _total;

    /// <summary>Plan position (epoch, batch index) of the next batch to be taken: where a resumed run should open.</summary>
    public (int Epoch, int BatchIndex) NextPosition => PositionOf(Interlocked.Read(ref _consumed));

    /// <summary>Batches claimed by workers so far (tests: never more than taken + PrefetchBatches).</summary>
    internal long ClaimedBatches => Math.Min(Interlocked.Read(ref _claimed), _total);

    /// <summary>How long the last <see cref="TryTakeNext"/> waited.</summary>
    public TimeSpan LastDataTime { get; private set; }

    /// <summary>Time spent waiting in <see cref="TryTakeNext"/> so far.</summary>
    public TimeSpan TotalDataTime { get; private set; }

    /// <summary>Images skipped in the batches taken or passed over so far.</summary>
    public int SkippedImageCount { get; private set; }

    /// <summary>The first <see cref="MaxReportedSkips"/> skips, in batch order.</summary>
    public IReadOnlyList<ImageSkip> SkippedImages => _skips;

    /// <summary>
    /// Waits for the next batch in plan order; false when the stream is exhausted. Batches whose images were
    /// all skipped are passed over. Throws <see cref="OperationCanceledException"/> once cancelled, and
    /// rethrows an unexpected failure of a worker at the batch where it happened.
    /// </summary>
    public bool TryTakeNext([NotNullWhen(true)] out TrainBatch? batch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long started = Stopwatch.GetTimestamp();
        try
        {
            while (_consumed < _total)
            {
                int slot = (int)(_consumed % _slots.Length);
                _ready[slot].Wait(_cancellation.Token);
                Loaded loaded = _slots[slot]!;
                _slots[slot] = null;
                Interlocked.Increment(ref _consumed);
                _free.Release();
                loaded.Failure?.Throw();
                foreach (ImageSkip skip in loaded.Skipped)
                {
                    SkippedImageCount++;
                    if (_skips.Count < MaxReportedSkips) _skips.Add(skip);
                }
                if (loaded.Batch is null) continue;
                batch = loaded.Batch;
                batch.DataTime = Stopwatch.GetElapsedTime(started);
                return true;
            }
            batch = null;
            return false;
        }
        finally
        {
            LastDataTime = Stopwatch.GetElapsedTime(started);
            TotalDataTime += LastDataTime;
        }
    }

    /// <summary>Stops the workers (between images) and waits for them to exit.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cancellation.Cancel();
        foreach (Thread worker in _workers) worker.Join();
        _cancellation.Dispose();
        _free.Dispose();
        foreach (SemaphoreSlim ready in _ready) ready.Dispose();
    }

    private (int Epoch, int BatchIndex) PositionOf(long sequence)
    {
        long absolute = _startBatch + sequence;
        return (checked(_startEpoch + (int)(absolute / _batchesPerEpoch)), (int)(absolute % _batchesPerEpoch));
    }

    private void WorkerLoop()
    {
        CancellationToken token = _cancellation.Token;
        try
        {
            while (true)
            {
                _free.Wait(token);
                long sequence = Interlocked.Increment(ref _claimed) - 1;
                if (sequence >= _total)
                {
                    _free.Release();
                    return;
                }
                var (epoch, batchIndex) = PositionOf(sequence);
                Loaded loaded;
                try
                {
                    TrainBatch? batch = _loader.LoadBatch(epoch, batchIndex, OrderOf(epoch), token, out IReadOnlyList<ImageSkip> skipped);
                    loaded = new Loaded(batch, skipped, null);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    loaded = new Loaded(null, [], ExceptionDispatchInfo.Capture(e));
                }
                int slot = (int)(sequence % _slots.Length);
                _slots[slot] = loaded;
                _ready[slot].Release();
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    // Epoch orders are computed once per epoch and shared by the workers; old ones are dropped
    // (recomputing one is deterministic, so an early drop costs time, never correctness).
    private int[] OrderOf(int epoch)
    {
        lock (_ordersLock)
        {
            if (_orders.TryGetValue(epoch, out int[]? order)) return order;
            order = _loader.Sampler.Order(epoch);
            foreach (int old in _orders.Keys.Where(e => e < epoch - 1).ToArray()) _orders.Remove(old);
            _orders[epoch] = order;
            return order;
        }
    }
}
