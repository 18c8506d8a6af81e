// GHM-C and GHM-R (docs/MODEL.md §6) in two passes over flat element arrays of equal length:
// 1. Histogram: for every valid element (weight > 0) the gradient norm g goes into one of the
//    bins [edges[i], edges[i+1]); each group counts in shared memory, then adds its counts to
//    the global bins; the valid count (GHM-C) or weight sum (GHM-R) is summed too.
//    GHM-C: g = |sigmoid(x) - t|, edges k/30 with the last + 1e-6. Inputs [n*classes].
//    GHM-R: d = p - y, g = |d| / sqrt(d^2 + mu^2), edges k/10 with the last = 1000. Inputs [n*4].
// 2. Loss and gradient (after the host has updated acc_sum and computed one weight per bin):
//    GHM-C: loss += W * bce(x, t) * scale, grad = W * (sigmoid(x) - t) * scale;
//    GHM-R: loss += W * (sqrt(d^2 + mu^2) - mu) * scale, grad = W * d / sqrt(d^2 + mu^2) * scale;
//    scale = loss_weight / tot; invalid elements get gradient 0.
// All kernels loop with a grid stride so each thread adds to the global sums once.
// Reference test: tests/GhmGen.Runtime.Gpu.Tests/GhmLossTests.cs (the test vectors of docs/MODEL.md §6).
using ILGPU;
using ILGPU.Algorithms;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>GHM histogram and loss kernels (explicitly grouped, 256 threads per group).</summary>
internal static class GhmLossKernels
{
    /// <summary>Threads per group of every GHM kernel.</summary>
    public const int GroupSize = 256;

    /// <summary>Shared histogram capacity (bins of both losses fit).</summary>
    public const int MaxBins = 32;

    /// <summary>
    /// Bin of g: edges[k] = k / bins in float32 (as <c>torch.arange(bins + 1).float() / bins</c>)
    /// and edges[bins] = lastEdge; returns i with edges[i] &lt;= g &lt; edges[i + 1].
    /// </summary>
    public static int BinOf(float g, int bins, float lastEdge)
    {
        int b = (int)(g * bins);
        if (b > bins - 1) b = bins - 1;
        if (b < 0) b = 0;
        // g * bins can round across an edge; compare with the float32 edges themselves.
        if (g < (float)b / bins) b--;
        else if (b + 1 < bins && g >= (float)(b + 1) / bins) b++;
        return g < lastEdge || b < bins - 1 ? b : bins;  // bins = outside every bin
    }

    /// <summary>GHM-C pass 1. binCounts [bins], validCount [1] are zeroed by the caller.</summary>
    public static void ClassificationHistogram(
        ArrayView<float> logits, ArrayView<float> targets, ArrayView<float> labelWeights,
        ArrayView<int> binCounts, ArrayView<int> validCount, int bins, float lastEdge)
    {
        var shared = SharedMemory.Allocate<int>(MaxBins);
        if (Group.IdxX < MaxBins) shared[Group.IdxX] = 0;
        Group.Barrier();

        int valid = 0;
        for (int i = Grid.GlobalIndex.X; i < logits.IntLength; i += Grid.DimX * Group.DimX)
        {
            if (!(labelWeights[i] > 0f)) continue;
            float g = XMath.Abs(Sigmoid(logits[i]) - targets[i]);
            int b = BinOf(g, bins, lastEdge);
            if (b < bins) Atomic.Add(ref shared[b], 1);
            valid++;
        }
        Atomic.Add(ref validCount[0], valid);
        Group.Barrier();
        if (Group.IdxX < bins && shared[Group.IdxX] > 0) Atomic.Add(ref binCounts[Group.IdxX], shared[Group.IdxX]);
    }

    /// <summary>GHM-C pass 2. binWeights [bins]; lossSum [1] is zeroed by the caller.</summary>
    public static void ClassificationLoss(
        ArrayView<float> logits, ArrayView<float> targets, ArrayView<float> labelWeights,
        ArrayView<float> binWeights, ArrayView<float> lossSum, ArrayView<float> gradient,
        int bins, float lastEdge, float scale)
    {
        float loss = 0f;
        for (int i = Grid.GlobalIndex.X; i < logits.IntLength; i += Grid.DimX * Group.DimX)
        {
            float x = logits[i], t = targets[i], s = Sigmoid(x), grad = 0f;
            if (labelWeights[i] > 0f)
            {
                int b = BinOf(XMath.Abs(s - t), bins, lastEdge);
                float w = b < bins ? binWeights[b] : 0f;
                // bce_with_logits = max(x, 0) - x * t + log(1 + exp(-|x|))
                float bce = XMath.Max(x, 0f) - x * t + XMath.Log(1f + XMath.Exp(-XMath.Abs(x)));
                loss += w * bce;
                grad = w * (s - t) * scale;
            }
            gradient[i] = grad;
        }
        Atomic.Add(ref lossSum[0], loss * scale);
    }

    /// <summary>GHM-R pass 1. binCounts [bins], weightSum [1] are zeroed by the caller.</summary>
    public static void RegressionHistogram(
        ArrayView<float> deltas, ArrayView<float> targets, ArrayView<float> weights,
        ArrayView<int> binCounts, ArrayView<float> weightSum, int bins, float lastEdge, float mu)
    {
        var shared = SharedMemory.Allocate<int>(MaxBins);
        if (Group.IdxX < MaxBins) shared[Group.IdxX] = 0;
        Group.Barrier();

        float sum = 0f;
        for (int i = Grid.GlobalIndex.X; i < deltas.IntLength; i += Grid.DimX * Group.DimX)
        {
            float w = weights[i];
            sum += w;
            if (!(w > 0f)) continue;
            float d = deltas[i] - targets[i];
            float g = XMath.Abs(d) / XMath.Sqrt(d * d + mu * mu);
            int b = BinOf(g, bins, lastEdge);
            if (b < bins) Atomic.Add(ref shared[b], 1);
        }
        Atomic.Add(ref weightSum[0], sum);
        Group.Barrier();
        if (Group.IdxX < bins && shared[Group.IdxX] > 0) Atomic.Add(ref binCounts[Group.IdxX], shared[Group.IdxX]);
    }

    /// <summary>GHM-R pass 2. binWeights [bins]; lossSum [1] is zeroed by the caller.</summary>
    public static void RegressionLoss(
        ArrayView<float> deltas, ArrayView<float> targets, ArrayView<float> weights,
        ArrayView<float> binWeights, ArrayView<float> lossSum, ArrayView<float> gradient,
        int bins, float lastEdge, float mu, float scale)
    {
        float loss = 0f;
        for (int i = Grid.GlobalIndex.X; i < deltas.IntLength; i += Grid.DimX * Group.DimX)
        {
            float grad = 0f;
            if (weights[i] > 0f)
            {
                float d = deltas[i] - targets[i];
                float root = XMath.Sqrt(d * d + mu * mu);
                int b = BinOf(XMath.Abs(d) / root, bins, lastEdge);
                float w = b < bins ? binWeights[b] : 0f;
                loss += w * (root - mu);
                grad = w * d / root * scale;
            }
            gradient[i] = grad;
        }
        Atomic.Add(ref lossSum[0], loss * scale);
    }

    private static float Sigmoid(float x) => 1f / (1f + XMath.Exp(-x));
}
