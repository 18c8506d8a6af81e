using GhmGen.Backends.Gpu.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GhmGen.Backends.Gpu;

/// <summary>
/// GHM-C and GHM-R loss and gradient (docs/MODEL.md §6) on an ILGPU accelerator. The gradient-norm
/// histogram, the loss sum and the gradient are computed on the device; the tiny per-bin
/// EMA of <c>acc_sum</c> runs on the host, in arrays the caller owns (so they are saved with
/// checkpoints as <c>bbox_head.loss_cls.acc_sum</c> and <c>bbox_head.loss_bbox.acc_sum</c>).
/// Not thread-safe: every call updates those moving averages, so one call at a time.
/// </summary>
public sealed class IlgpuGhmLosses : IDisposable
{
    /// <summary>GHM-C bins.</summary>
    public const int ClassificationBins = 30;

    /// <summary>GHM-R bins.</summary>
    public const int RegressionBins = 10;

    /// <summary>GHM-R's smooth-L1 parameter mu.</summary>
    public const float RegressionMu = 0.02f;

    // edges[-1] += 1e-6 (GHM-C) and edges[-1] = 1e3 (GHM-R), as float32.
    private const float ClassificationLastEdge = 1f + 1e-6f;
    private const float RegressionLastEdge = 1000f;
    private const int MaxGroups = 256;

    private readonly IlgpuBackend _backend;
    private readonly float[] _classificationAccSum;
    private readonly float[] _regressionAccSum;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _binCounts;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _validCount;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _sums;      // [0] loss, [1] weight sum
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _binWeights;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float> _classificationHistogram;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float> _classificationLoss;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, float> _regressionHistogram;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float> _regressionLoss;

    /// <summary>
    /// Binds the losses to <paramref name="backend"/> and to the caller's <c>acc_sum</c> arrays
    /// (30 and 10 floats, updated in place on every call with momentum &gt; 0).
    /// </summary>
    public IlgpuGhmLosses(
        IlgpuBackend backend, float[] classificationAccSum, float[] regressionAccSum,
        float classificationMomentum = 0.75f, float regressionMomentum = 0.7f,
        float classificationLossWeight = 1f, float regressionLossWeight = 10f)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (classificationAccSum is null || classificationAccSum.Length != ClassificationBins)
            throw new ArgumentException($"GHM-C acc_sum must have {ClassificationBins} elements", nameof(classificationAccSum));
        if (regressionAccSum is null || regressionAccSum.Length != RegressionBins)
            throw new ArgumentException($"GHM-R acc_sum must have {RegressionBins} elements", nameof(regressionAccSum));
        if (!(classificationMomentum >= 0f && classificationMomentum < 1f))
            throw new ArgumentOutOfRangeException(nameof(classificationMomentum), classificationMomentum, "momentum must be in [0, 1)");
        if (!(regressionMomentum >= 0f && regressionMomentum < 1f))
            throw new ArgumentOutOfRangeException(nameof(regressionMomentum), regressionMomentum, "momentum must be in [0, 1)");
        _backend = backend;
        _classificationAccSum = classificationAccSum;
        _regressionAccSum = regressionAccSum;
        ClassificationMomentum = classificationMomentum;
        RegressionMomentum = regressionMomentum;
        ClassificationLossWeight = classificationLossWeight;
        RegressionLossWeight = regressionLossWeight;

        Accelerator a = backend.Accelerator;
        _binCounts = a.Allocate1D<int>(GhmLossKernels.MaxBins);
        _validCount = a.Allocate1D<int>(1);
        _sums = a.Allocate1D<float>(2);
        _binWeights = a.Allocate1D<float>(GhmLossKernels.MaxBins);
        _classificationHistogram = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, int, float>(GhmLossKernels.ClassificationHistogram);
        _classificationLoss = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float>(GhmLossKernels.ClassificationLoss);
        _regressionHistogram = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, float>(GhmLossKernels.RegressionHistogram);
        _regressionLoss = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, float, float>(GhmLossKernels.RegressionLoss);
    }

    /// <summary>GHM-C EMA momentum (0 = no state).</summary>
    public float ClassificationMomentum { get; }

    /// <summary>GHM-R EMA momentum (0 = no state).</summary>
    public float RegressionMomentum { get; }

    /// <summary>GHM-C loss weight.</summary>
    public float ClassificationLossWeight { get; }

    /// <summary>GHM-R loss weight.</summary>
    public float RegressionLossWeight { get; }

    /// <summary>
    /// GHM-C over one FPN level: logits, one-hot targets and label weights are [n, classes]
    /// (any shape with equal element counts); writes d loss / d logits into
    /// <paramref name="gradient"/> and returns the loss. Updates the classification acc_sum.
    /// </summary>
    public float Classification(TensorView logits, TensorView targets, TensorView labelWeights, TensorView gradient)
    {
        CheckSameCount("GHM-C", logits, targets, labelWeights, gradient);
        ArrayView<float> x = IlgpuBackend.View(logits), t = IlgpuBackend.View(targets);
        ArrayView<float> w = IlgpuBackend.View(labelWeights), grad = IlgpuBackend.View(gradient);
        KernelConfig config = Config(x.IntLength);

        _binCounts.MemSetToZero();
        _validCount.MemSetToZero();
        _sums.MemSetToZero();
        _classificationHistogram(config, x, t, w, _binCounts.View, _validCount.View, ClassificationBins, ClassificationLastEdge);
        var counts = new int[ClassificationBins];
        var valid = new int[1];
        _backend.Accelerator.Synchronize();
        _binCounts.View.SubView(0, ClassificationBins).CopyToCPU(counts);
        _validCount.View.CopyToCPU(valid);

        float tot = MathF.Max(valid[0], 1f);
        float[] binWeights = BinWeights(counts, tot, _classificationAccSum, ClassificationMomentum);
        _binWeights.View.SubView(0, ClassificationBins).CopyFromCPU(binWeights);
        _classificationLoss(config, x, t, w, _binWeights.View, _sums.View, grad, ClassificationBins, ClassificationLastEdge, ClassificationLossWeight / tot);
        return ReadLoss();
    }

    /// <summary>
    /// GHM-R over one FPN level: predicted deltas, target deltas and weights are [n, 4];
    /// writes d loss / d deltas into <paramref name="gradient"/> and returns the loss (0 when
    /// the level has no positives). Updates the regression acc_sum.
    /// </summary>
    public float Regression(TensorView deltas, TensorView targets, TensorView weights, TensorView gradient)
    {
        CheckSameCount("GHM-R", deltas, targets, weights, gradient);
        ArrayView<float> p = IlgpuBackend.View(deltas), y = IlgpuBackend.View(targets);
        ArrayView<float> w = IlgpuBackend.View(weights), grad = IlgpuBackend.View(gradient);
        KernelConfig config = Config(p.IntLength);

        _binCounts.MemSetToZero();
        _sums.MemSetToZero();
        _regressionHistogram(config, p, y, w, _binCounts.View, _sums.View.SubView(1, 1), RegressionBins, RegressionLastEdge, RegressionMu);
        var counts = new int[RegressionBins];
        var sums = new float[2];
        _backend.Accelerator.Synchronize();
        _binCounts.View.SubView(0, RegressionBins).CopyToCPU(counts);
        _sums.View.CopyToCPU(sums);

        float tot = MathF.Max(sums[1], 1f);
        float[] binWeights = BinWeights(counts, tot, _regressionAccSum, RegressionMomentum);
        _binWeights.View.SubView(0, RegressionBins).CopyFromCPU(binWeights);
        _regressionLoss(config, p, y, w, _binWeights.View, _sums.View.SubView(0, 1), grad, RegressionBins, RegressionLastEdge, RegressionMu, RegressionLossWeight / tot);
        return ReadLoss();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _binCounts.Dispose();
        _validCount.Dispose();
        _sums.Dispose();
        _binWeights.Dispose();
    }

    /// <summary>
    /// docs/MODEL.md §6: for each non-empty bin i, acc_sum[i] = m*acc_sum[i] + (1-m)*k_i (m &gt; 0) and
    /// W = tot / acc_sum[i] (or tot / k_i when m = 0); then W /= number of non-empty bins.
    /// Empty bins keep their acc_sum and get weight 0.
    /// </summary>
    internal static float[] BinWeights(int[] counts, float tot, float[] accSum, float momentum)
    {
        var weights = new float[counts.Length];
        int nonEmpty = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            if (counts[i] == 0) continue;
            nonEmpty++;
            if (momentum > 0f)
            {
                accSum[i] = momentum * accSum[i] + (1f - momentum) * counts[i];
                weights[i] = tot / accSum[i];
            }
            else
            {
                weights[i] = tot / counts[i];
            }
        }
        if (nonEmpty > 0)
            for (int i = 0; i < weights.Length; i++) weights[i] /= nonEmpty;
        return weights;
    }

    private float ReadLoss()
    {
        var loss = new float[1];
        _backend.Accelerator.Synchronize();
        _sums.View.SubView(0, 1).CopyToCPU(loss);
        return loss[0];
    }

    private static KernelConfig Config(int elements)
    {
        int groups = Math.Clamp((elements + GhmLossKernels.GroupSize - 1) / GhmLossKernels.GroupSize, 1, MaxGroups);
        return new KernelConfig(groups, GhmLossKernels.GroupSize);
    }

    private static void CheckSameCount(string loss, TensorView a, TensorView b, TensorView c, TensorView d)
    {
        if (a.ElementCount != b.ElementCount || a.ElementCount != c.ElementCount || a.ElementCount != d.ElementCount)
            throw new ArgumentException($"{loss}: inputs {a.ShapeText}, {b.ShapeText}, {c.ShapeText} and gradient {d.ShapeText} differ in element count");
        if (a.ElementCount == 0)
            throw new ArgumentException($"{loss}: inputs are empty");
    }
}
