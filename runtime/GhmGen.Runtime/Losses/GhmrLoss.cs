// GHM-R loss (authentic smooth L1 with gradient-density weights) exactly as mmdetection's GHMR
// computes it (docs/MODEL.md §6), forward and backward in one call.
//   Level form: box output [N, A*4, H, W] with LevelTargets.BoxTargets / BoxWeights in the same
//               layout -> loss, gradient [N, A*4, H, W].
//   Dense form: predictions, targets, weights [M, 4] (or any equal-length arrays).
// Same two-pass scheme as GhmcLoss: pass 1 writes d / sqrt(d^2 + mu^2) (whose magnitude is g) and
// per-chunk histograms of counts and loss sums (double); pass 2 scales by the bin weight.
// Reference tests: tests/GhmGen.Runtime.Tests/Losses/GhmSpecVectorTests.cs, GhmFixtureTests.cs, GhmNaiveTests.cs.
namespace GhmGen.Losses;

/// <summary>Gradient Harmonized regression loss (GHM-R, authentic smooth L1) with its persistent <c>acc_sum</c> state.</summary>
/// <remarks>One instance keeps scratch buffers between calls: do not call it from two threads at once.</remarks>
public sealed unsafe class GhmrLoss
{
    private readonly float[] _edges;
    private readonly bool _uniformEdges;
    private long[]? _chunkCounts;
    private double[]? _chunkSums;
    private double[]? _chunkWeightSums;
    private readonly long[] _counts;
    private readonly double[] _sums;
    private readonly float[] _weights;
    private readonly float[] _scale;

    /// <summary>Creates the loss with mmdetection's GHM config defaults (mu 0.02, 10 bins, momentum 0.7, weight 10).</summary>
    /// <param name="mu">The smoothing of the authentic smooth L1, sqrt(d^2 + mu^2) - mu.</param>
    /// <param name="bins">Number of gradient-length bins.</param>
    /// <param name="momentum">EMA momentum of <c>acc_sum</c>; 0 keeps no state.</param>
    /// <param name="lossWeight">Multiplier of the loss (and gradient).</param>
    /// <param name="accSum">
    /// The state to update in place, e.g. the checkpoint buffer <c>bbox_head.loss_bbox.acc_sum</c> [bins];
    /// a new zeroed array when null.
    /// </param>
    public GhmrLoss(double mu = 0.02, int bins = 10, double momentum = 0.7, float lossWeight = 10f, float[]? accSum = null)
    {
        if (!(mu > 0)) throw new ArgumentOutOfRangeException(nameof(mu), mu, "mu must be positive.");
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), bins, "bins must be at least 1.");
        if (!(momentum >= 0 && momentum < 1)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be in [0, 1).");
        if (accSum is not null && accSum.Length != bins)
            throw new ArgumentException($"accSum has {accSum.Length} entries but GHM-R has {bins} bins.", nameof(accSum));
        Mu = mu;
        Bins = bins;
        Momentum = momentum;
        LossWeight = lossWeight;
        AccSum = accSum ?? new float[bins];
        // [float(x) / bins for x in range(bins + 1)], edges[-1] = 1e3, as a FloatTensor
        _edges = new float[bins + 1];
        for (int k = 0; k < bins; k++) _edges[k] = (float)((double)k / bins);
        _edges[bins] = 1000f;
        _uniformEdges = GhmBinning.HasUniformEdges(_edges);
        _counts = new long[bins];
        _sums = new double[bins];
        _weights = new float[bins];
        _scale = new float[bins];
    }

    /// <summary>Smoothing constant mu.</summary>
    public double Mu { get; }

    /// <summary>Number of bins.</summary>
    public int Bins { get; }

    /// <summary>EMA momentum.</summary>
    public double Momentum { get; }

    /// <summary>Loss multiplier.</summary>
    public float LossWeight { get; }

    /// <summary>The persistent EMA of bin counts (bound array, updated in place by every call).</summary>
    public float[] AccSum { get; }

    /// <summary>Bin edges [bins + 1]: k / bins, the last 1000 (checkpoint buffer <c>edges</c>).</summary>
    public ReadOnlySpan<float> Edges => _edges;

    /// <summary>Maximum threads per call; -1 uses all cores.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>Counts of the last call's bins.</summary>
    public ReadOnlySpan<long> LastBinCounts => _counts;

    /// <summary>
    /// Loss and gradient of one FPN level over all images, straight from the NCHW box output.
    /// Updates <see cref="AccSum"/>. A level without positives gives 0 and leaves the state alone.
    /// </summary>
    /// <param name="boxOutput">[N, A*4, H, W] predicted deltas, channel a*4 + k.</param>
    /// <param name="level">The level's targets.</param>
    /// <param name="gradient">[N, A*4, H, W], overwritten with d loss / d boxOutput.</param>
    public float ComputeLevel(ReadOnlySpan<float> boxOutput, Detection.LevelTargets level, Span<float> gradient)
    {
        ArgumentNullException.ThrowIfNull(level);
        if (boxOutput.Length != level.BoxOutputLength)
            throw new ArgumentException($"boxOutput has {boxOutput.Length} values; the level needs N*A*4*H*W = {level.BoxOutputLength}.", nameof(boxOutput));
        return Compute(boxOutput, level.BoxTargets, level.BoxWeights, gradient);
    }

    /// <summary>
    /// mmdetection's <c>GHMR.forward(pred, target, label_weight)</c> on equal-length arrays (e.g. [M, 4]):
    /// returns the loss and writes d loss / d predictions. Updates <see cref="AccSum"/>.
    /// </summary>
    public float Compute(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, ReadOnlySpan<float> weights, Span<float> gradient)
    {
        int length = predictions.Length;
        if (targets.Length != length || weights.Length != length || gradient.Length != length)
            throw new ArgumentException($"predictions ({length}), targets ({targets.Length}), weights ({weights.Length}) and gradient ({gradient.Length}) must have the same length.", nameof(targets));
        if (length == 0) return 0f;
        int bins = Bins;
        int chunkCount = (length + GhmBinning.ChunkElements - 1) / GhmBinning.ChunkElements;
        long[] chunkCounts = GhmBinning.Ensure(ref _chunkCounts, chunkCount * bins);
        double[] chunkSums = GhmBinning.Ensure(ref _chunkSums, chunkCount * bins);
        double[] chunkWeightSums = GhmBinning.Ensure(ref _chunkWeightSums, chunkCount);
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        float muF = (float)Mu;
        float mu2 = (float)(Mu * Mu); // python's mu * mu, added to a float32 tensor

        fixed (float* pred = predictions)
        fixed (float* target = targets)
        fixed (float* weight = weights)
        fixed (float* grad = gradient)
        fixed (float* edgesPinned = _edges)
        fixed (float* scalePinned = _scale)
        {
            nint pp = (nint)pred, tp = (nint)target, wp = (nint)weight, gp = (nint)grad, ep = (nint)edgesPinned, sp = (nint)scalePinned;
            Parallel.For(0, chunkCount, options, chunk =>
            {
                var counts = new Span<long>(chunkCounts, chunk * bins, bins);
                var sums = new Span<double>(chunkSums, chunk * bins, bins);
                counts.Clear();
                sums.Clear();
                int start = chunk * GhmBinning.ChunkElements;
                int end = Math.Min(length, start + GhmBinning.ChunkElements);
                float* p = (float*)pp, y = (float*)tp, w = (float*)wp, g = (float*)gp, e = (float*)ep;
                double weightSum = 0;
                for (int i = start; i < end; i++)
                {
                    float wi = w[i];
                    weightSum += wi;
                    if (!(wi > 0f))
                    {
                        g[i] = 0f;
                        continue;
                    }
                    float d = p[i] - y[i];
                    float root = MathF.Sqrt(d * d + mu2);
                    float v = d / root;
                    int b = GhmBinning.BinOf(MathF.Abs(v), e, bins);
                    if (b < 0)
                    {
                        g[i] = 0f;
                        continue;
                    }
                    g[i] = v;
                    counts[b]++;
                    sums[b] += root - muF;
                }
                chunkWeightSums[chunk] = weightSum;
            });

            double weightTotal = 0;
            for (int c = 0; c < chunkCount; c++) weightTotal += chunkWeightSums[c];
            GhmBinning.ReduceChunks(chunkCounts, chunkSums, chunkCount, bins, _counts, _sums);
            double tot = Math.Max(weightTotal, 1.0);
            GhmBinning.ComputeBinWeights(_counts, AccSum, Momentum, tot, _weights);
            double loss = 0;
            for (int b = 0; b < bins; b++)
            {
                loss += _weights[b] * _sums[b];
                _scale[b] = (float)(_weights[b] * (double)LossWeight / tot);
            }
            loss = loss / tot * LossWeight;

            Parallel.For(0, chunkCount, options, chunk =>
            {
                long start = (long)chunk * GhmBinning.ChunkElements;
                long count = Math.Min(GhmBinning.ChunkElements, length - start);
                GhmBinning.ScaleByBin((float*)gp, start, count, (float*)ep, (float*)sp, bins, _uniformEdges);
            });
            return (float)loss;
        }
    }
}
