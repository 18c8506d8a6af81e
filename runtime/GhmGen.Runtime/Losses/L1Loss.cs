// L1 box loss (RetinaNet's baseline, mmdetection's L1Loss, loss weight 1) on one level:
//   box output [N, A*4, H, W], LevelTargets.BoxTargets / BoxWeights (same layout) -> loss, gradient.
// loss = sum |pred - target| * weight / avgFactor * lossWeight; gradient sign(d) * weight * lossWeight / avgFactor
// (sign(0) = 0 as in PyTorch). Double sums per fixed chunk, added in chunk order.
// Reference test: tests/GhmGen.Runtime.Tests/Losses/GhmFixtureTests.cs.
namespace GhmGen.Losses;

/// <summary>L1 loss on box deltas, normalized by mmdetection's average factor (the number of positives).</summary>
public sealed unsafe class L1Loss
{
    private double[]? _chunkSums;

    /// <summary>Creates the loss (RetinaNet default weight 1).</summary>
    public L1Loss(float lossWeight = 1f) => LossWeight = lossWeight;

    /// <summary>Loss multiplier.</summary>
    public float LossWeight { get; }

    /// <summary>Maximum threads per call; -1 uses all cores.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>Loss and gradient of one level; <paramref name="averageFactor"/> is <see cref="Detection.RetinaTargets.AverageFactor"/>.</summary>
    public float ComputeLevel(ReadOnlySpan<float> boxOutput, Detection.LevelTargets level, float averageFactor, Span<float> gradient)
    {
        ArgumentNullException.ThrowIfNull(level);
        if (boxOutput.Length != level.BoxOutputLength)
            throw new ArgumentException($"boxOutput has {boxOutput.Length} values; the level needs N*A*4*H*W = {level.BoxOutputLength}.", nameof(boxOutput));
        return Compute(boxOutput, level.BoxTargets, level.BoxWeights, averageFactor, gradient);
    }

    /// <summary>mmdetection's <c>L1Loss(pred, target, weight, avg_factor)</c> on equal-length arrays; writes d loss / d predictions.</summary>
    public float Compute(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, ReadOnlySpan<float> weights, float averageFactor, Span<float> gradient)
    {
        int length = predictions.Length;
        if (targets.Length != length || weights.Length != length || gradient.Length != length)
            throw new ArgumentException($"predictions ({length}), targets ({targets.Length}), weights ({weights.Length}) and gradient ({gradient.Length}) must have the same length.", nameof(targets));
        if (!(averageFactor > 0)) throw new ArgumentOutOfRangeException(nameof(averageFactor), averageFactor, "averageFactor must be positive.");
        int chunkCount = (length + GhmBinning.ChunkElements - 1) / GhmBinning.ChunkElements;
        double[] chunkSums = GhmBinning.Ensure(ref _chunkSums, Math.Max(chunkCount, 1));
        float scale = LossWeight / averageFactor;
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        fixed (float* pred = predictions)
        fixed (float* target = targets)
        fixed (float* weight = weights)
        fixed (float* grad = gradient)
        {
            nint pp = (nint)pred, tp = (nint)target, wp = (nint)weight, gp = (nint)grad;
            Parallel.For(0, chunkCount, options, chunk =>
            {
                float* p = (float*)pp, y = (float*)tp, w = (float*)wp, g = (float*)gp;
                int end = Math.Min(length, (chunk + 1) * GhmBinning.ChunkElements);
                double sum = 0;
                for (int i = chunk * GhmBinning.ChunkElements; i < end; i++)
                {
                    float d = p[i] - y[i];
                    sum += MathF.Abs(d) * w[i];
                    g[i] = (d > 0f ? 1f : d < 0f ? -1f : 0f) * w[i] * scale;
                }
                chunkSums[chunk] = sum;
            });
        }
        double total = 0;
        for (int c = 0; c < chunkCount; c++) total += chunkSums[c];
        return (float)(total * LossWeight / averageFactor);
    }
}
