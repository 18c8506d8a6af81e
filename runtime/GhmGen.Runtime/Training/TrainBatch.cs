// A batch of training samples as mmcv.parallel.collate makes it (docs/TRAINING.md): each
// image keeps its own pad_shape; the batch tensor is padded with zeros at the bottom/right to
// the largest padded height and width in the batch. Anchors are generated once for the feature
// sizes of the batch tensor; each image's valid flags come from its own pad_shape
// (AnchorGenerator.ValidFlags), so the padding of the batch never yields positives or negatives.
// Tests: tests/GhmGen.Runtime.Tests/Training/TrainBatchTests.cs.
using GhmGen.Detection;

namespace GhmGen.Training;

/// <summary>An image left out of training because its file could not be decoded.</summary>
/// <param name="Epoch">Epoch (from 0) of the batch it belonged to.</param>
/// <param name="BatchIndex">Batch within that epoch.</param>
/// <param name="ImageIndex">Dataset index of the image.</param>
/// <param name="FileName">The json file name.</param>
/// <param name="Reason">What went wrong (the decoder's message, which names the file).</param>
public sealed record ImageSkip(int Epoch, int BatchIndex, int ImageIndex, string FileName, string Reason);

/// <summary>Collated training images: one NCHW tensor, per-image geometry, ground truth and anchor valid flags.</summary>
public sealed class TrainBatch
{
    private TrainBatch(int epoch, int batchIndex, TrainSample[] samples, float[] tensor, int height, int width,
        FeatureSize[] featureSizes, bool[][] validFlags, ImageSkip[] skipped)
    {
        Epoch = epoch;
        BatchIndex = batchIndex;
        Samples = samples;
        Tensor = tensor;
        Height = height;
        Width = width;
        FeatureSizes = featureSizes;
        ValidFlags = validFlags;
        Skipped = skipped;
        GtBoxes = [.. samples.Select(s => s.GtBoxes)];
        GtLabels = [.. samples.Select(s => s.GtLabels)];
    }

    /// <summary>Epoch (from 0).</summary>
    public int Epoch { get; }

    /// <summary>Position of the batch in its epoch's plan (<see cref="EpochSampler"/>), counting batches whose images were all skipped.</summary>
    public int BatchIndex { get; }

    /// <summary>The images, in batch order (skipped ones left out).</summary>
    public IReadOnlyList<TrainSample> Samples { get; }

    /// <summary>Number of images N.</summary>
    public int Count => Samples.Count;

    /// <summary>[N, 3, Height, Width]: each image's tensor at the top left, zeros elsewhere.</summary>
    public float[] Tensor { get; }

    /// <summary>Batch tensor height: the largest <see cref="TrainSample.PadHeight"/>.</summary>
    public int Height { get; }

    /// <summary>Batch tensor width: the largest <see cref="TrainSample.PadWidth"/>.</summary>
    public int Width { get; }

    /// <summary>Feature sizes P3..P7 of the batch tensor (<see cref="AnchorGenerator.FeatureSizes"/>); the anchors are <see cref="AnchorGenerator.AllAnchors(ReadOnlySpan{FeatureSize})"/> of these.</summary>
    public IReadOnlyList<FeatureSize> FeatureSizes { get; }

    /// <summary>Per image, [numAnchors] valid flags from its own pad shape, for <see cref="RetinaTargets.Build"/>.</summary>
    public IReadOnlyList<bool[]> ValidFlags { get; }

    /// <summary>Per image, [numGt, 4] boxes in resized pixels, for <see cref="RetinaTargets.Build"/>.</summary>
    public IReadOnlyList<float[]> GtBoxes { get; }

    /// <summary>Per image, [numGt] labels.</summary>
    public IReadOnlyList<int[]> GtLabels { get; }

    /// <summary>Images of this batch that were skipped.</summary>
    public IReadOnlyList<ImageSkip> Skipped { get; }

    /// <summary>How long the consumer waited for this batch (mmcv's <c>data_time</c>); zero unless it came from a <see cref="TrainBatchStream"/>.</summary>
    public TimeSpan DataTime { get; internal set; }

    /// <summary>Collates <paramref name="samples"/> (at least one) into a batch.</summary>
    public static TrainBatch Collate(int epoch, int batchIndex, IReadOnlyList<TrainSample> samples, IReadOnlyList<ImageSkip>? skipped = null)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0) throw new ArgumentException("a batch needs at least one sample", nameof(samples));
        int height = 0, width = 0;
        foreach (TrainSample sample in samples)
        {
            height = Math.Max(height, sample.PadHeight);
            width = Math.Max(width, sample.PadWidth);
        }
        long plane = (long)height * width;
        var tensor = new float[checked(samples.Count * 3 * plane)];
        for (int n = 0; n < samples.Count; n++)
        {
            TrainSample sample = samples[n];
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < sample.PadHeight; y++)
                    sample.Tensor.AsSpan((int)(((long)c * sample.PadHeight + y) * sample.PadWidth), sample.PadWidth)
                        .CopyTo(tensor.AsSpan((int)((n * 3L + c) * plane + (long)y * width), sample.PadWidth));
        }
        FeatureSize[] featureSizes = AnchorGenerator.FeatureSizes(height, width);
        var validFlags = new bool[samples.Count][];
        for (int n = 0; n < samples.Count; n++)
            validFlags[n] = AnchorGenerator.ValidFlags(featureSizes, samples[n].PadHeight, samples[n].PadWidth);
        return new TrainBatch(epoch, batchIndex, [.. samples], tensor, height, width, featureSizes, validFlags, skipped is null ? [] : [.. skipped]);
    }
}
