// The order in which an epoch visits the dataset, and its batches. Epochs are numbered from 0.
//  * Shuffled (mmdetection's GroupSampler, used when training shuffles; mmdet/datasets/samplers/
//    group_sampler.py): images are grouped by aspect flag (1 when json width / height > 1, else 0,
//    CustomDataset._set_group_flag); for each non-empty group in flag order, its dataset indices
//    (ascending) are Fisher-Yates shuffled and then padded to a multiple of the batch size with
//    indices drawn uniformly, with replacement, from the shuffled group; the groups are
//    concatenated, cut into batches, and the batches put in Fisher-Yates shuffled order. Every
//    batch is full and holds images of one aspect group; an epoch has
//    sum over groups of ceil(size / batch) batches. All draws come from one SplitMix64 stream keyed
//    (seed, shuffle, epoch) (TrainRandom.cs), in the order just described.
//    Fisher-Yates: for i = n-1 down to 1, swap element i with element NextBelow(i + 1).
//  * Sequential (build_dataloader with shuffle=False): the json order, consecutive batches, the
//    last one short when the batch size does not divide the image count.
// Tests: tests/GhmGen.Runtime.Tests/Training/EpochSamplerTests.cs.
namespace GhmGen.Training;

/// <summary>Deterministic per-epoch image order and batching, shuffled as mmdetection's GroupSampler or sequential.</summary>
public sealed class EpochSampler
{
    private readonly int[][] _groups;

    /// <summary>Creates a sampler over images whose aspect flags are given by their json sizes.</summary>
    /// <param name="dataset">The images; only their json width and height are read (for the aspect groups).</param>
    /// <param name="batchSize">Images per batch (mmdetection's samples_per_gpu, 2 for the GHM recipe).</param>
    /// <param name="shuffle">GroupSampler order when true, json order with a short last batch when false.</param>
    /// <param name="seed">Seed of the shuffles.</param>
    public EpochSampler(IReadOnlyList<CocoImage> dataset, int batchSize, bool shuffle, long seed)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        if (dataset.Count == 0) throw new ArgumentException("the dataset has no images", nameof(dataset));
        ImageCount = dataset.Count;
        BatchSize = batchSize;
        Shuffle = shuffle;
        Seed = seed;
        var wide = new List<int>();
        var narrow = new List<int>();
        for (int i = 0; i < dataset.Count; i++)
            ((double)dataset[i].Width / dataset[i].Height > 1 ? wide : narrow).Add(i);
        _groups = [[.. narrow], [.. wide]];
        long batches = 0;
        if (shuffle)
            foreach (int[] group in _groups) batches += (group.Length + (long)batchSize - 1) / batchSize;
        else
            batches = (dataset.Count + (long)batchSize - 1) / batchSize;
        BatchesPerEpoch = checked((int)batches);
        SamplesPerEpoch = shuffle ? checked(BatchesPerEpoch * batchSize) : dataset.Count;
    }

    /// <summary>Images in the dataset.</summary>
    public int ImageCount { get; }

    /// <summary>Images per (full) batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether epochs are shuffled (GroupSampler) or sequential.</summary>
    public bool Shuffle { get; }

    /// <summary>Seed of the shuffles.</summary>
    public long Seed { get; }

    /// <summary>Batches in every epoch.</summary>
    public int BatchesPerEpoch { get; }

    /// <summary>Samples in every epoch: BatchesPerEpoch * BatchSize when shuffled (padded groups), ImageCount otherwise.</summary>
    public int SamplesPerEpoch { get; }

    /// <summary>The dataset indices epoch <paramref name="epoch"/> visits, in order; batch b is elements [b*BatchSize, min((b+1)*BatchSize, length)).</summary>
    public int[] Order(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        if (!Shuffle) return [.. Enumerable.Range(0, ImageCount)];

        var random = new TrainRandom.SplitMix64(Seed, TrainRandom.Purpose.Shuffle, epoch, 0);
        var samples = new int[SamplesPerEpoch];
        int filled = 0;
        foreach (int[] group in _groups)
        {
            if (group.Length == 0) continue;
            Span<int> shuffled = samples.AsSpan(filled, group.Length);
            group.CopyTo(shuffled);
            FisherYates(shuffled, ref random);
            int padded = (group.Length + BatchSize - 1) / BatchSize * BatchSize;
            for (int k = group.Length; k < padded; k++) samples[filled + k] = shuffled[random.NextBelow(group.Length)];
            filled += padded;
        }

        Span<int> batchOrder = BatchesPerEpoch <= 4096 ? stackalloc int[BatchesPerEpoch] : new int[BatchesPerEpoch];
        for (int b = 0; b < batchOrder.Length; b++) batchOrder[b] = b;
        FisherYates(batchOrder, ref random);
        var order = new int[SamplesPerEpoch];
        for (int b = 0; b < batchOrder.Length; b++)
            samples.AsSpan(batchOrder[b] * BatchSize, BatchSize).CopyTo(order.AsSpan(b * BatchSize, BatchSize));
        return order;
    }

    /// <summary>Start (inclusive) and length of batch <paramref name="batchIndex"/> within <see cref="Order"/>.</summary>
    public (int Start, int Length) BatchRange(int batchIndex)
    {
        if ((uint)batchIndex >= (uint)BatchesPerEpoch)
            throw new ArgumentOutOfRangeException(nameof(batchIndex), $"batch index must be in [0, {BatchesPerEpoch}), got {batchIndex}");
        int start = batchIndex * BatchSize;
        return (start, Math.Min(BatchSize, SamplesPerEpoch - start));
    }

    private static void FisherYates(Span<int> values, ref TrainRandom.SplitMix64 random)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = random.NextBelow(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}
