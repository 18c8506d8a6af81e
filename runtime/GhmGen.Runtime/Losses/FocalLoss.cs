// Sigmoid focal loss (RetinaNet's baseline, mmdetection's FocalLoss with use_sigmoid, gamma 2,
// alpha 0.25, loss weight 1), forward and backward on the NCHW class output of one level:
//   class output [N, A*C, H, W] + LevelTargets.LabelCodes [N, A, H*W] -> loss, gradient.
// loss = sum over valid elements of FL(x, t) / avgFactor * lossWeight, with
//   t = 1: alpha (1-p)^gamma softplus(-x);  t = 0: (1-alpha) p^gamma softplus(x)   (p = sigmoid(x)).
// Multi-threaded over fixed chunks with double sums in chunk order (thread-count independent).
// Reference test: tests/GhmGen.Runtime.Tests/Losses/GhmFixtureTests.cs (PyTorch py_sigmoid_focal_loss).
namespace GhmGen.Losses;

/// <summary>Sigmoid focal loss of RetinaNet, normalized by mmdetection's average factor (the number of positives).</summary>
public sealed unsafe class FocalLoss
{
    private double[]? _chunkSums;

    /// <summary>Creates the loss (mmdetection RetinaNet defaults: gamma 2, alpha 0.25, weight 1).</summary>
    public FocalLoss(float gamma = 2f, float alpha = 0.25f, float lossWeight = 1f)
    {
        Gamma = gamma;
        Alpha = alpha;
        LossWeight = lossWeight;
    }

    /// <summary>Focusing exponent.</summary>
    public float Gamma { get; }

    /// <summary>Weight of positives (negatives get 1 - alpha).</summary>
    public float Alpha { get; }

    /// <summary>Loss multiplier.</summary>
    public float LossWeight { get; }

    /// <summary>Maximum threads per call; -1 uses all cores.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>Loss and gradient of one level; <paramref name="averageFactor"/> is <see cref="Detection.RetinaTargets.AverageFactor"/>.</summary>
    /// <param name="classOutput">[N, A*C, H, W] logits.</param>
    /// <param name="level">The level's targets.</param>
    /// <param name="averageFactor">Divisor of the summed loss (sum over images of max(positives, 1)).</param>
    /// <param name="gradient">[N, A*C, H, W], overwritten with d loss / d classOutput.</param>
    public float ComputeLevel(ReadOnlySpan<float> classOutput, Detection.LevelTargets level, float averageFactor, Span<float> gradient)
    {
        ArgumentNullException.ThrowIfNull(level);
        long length = level.ClassOutputLength;
        if (classOutput.Length != length)
            throw new ArgumentException($"classOutput has {classOutput.Length} values; the level needs N*A*C*H*W = {length}.", nameof(classOutput));
        if (gradient.Length != length)
            throw new ArgumentException($"gradient has {gradient.Length} values; it must match classOutput ({length}).", nameof(gradient));
        if (!(averageFactor > 0)) throw new ArgumentOutOfRangeException(nameof(averageFactor), averageFactor, "averageFactor must be positive.");
        if (length == 0) return 0f;
        int hw = level.CellCount, classes = level.NumClasses;
        long planeCount = (long)level.NumImages * level.AnchorsPerCell * classes;
        long planesPerChunk = Math.Max(1, GhmBinning.ChunkElements / hw);
        int chunkCount = checked((int)((planeCount + planesPerChunk - 1) / planesPerChunk));
        double[] chunkSums = GhmBinning.Ensure(ref _chunkSums, chunkCount);
        float scale = LossWeight / averageFactor;
        float gamma = Gamma, alpha = Alpha;
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        fixed (float* x = classOutput)
        fixed (int* codes = level.LabelCodes)
        fixed (float* grad = gradient)
        {
            nint xp = (nint)x, cp = (nint)codes, gp = (nint)grad;
            Parallel.For(0, chunkCount, options, chunk =>
            {
                double sum = 0;
                long endPlane = Math.Min(planeCount, (chunk + 1) * planesPerChunk);
                for (long p = chunk * planesPerChunk; p < endPlane; p++)
                {
                    int cls = (int)(p % classes);
                    int* code = (int*)cp + p / classes * hw;
                    float* xs = (float*)xp + p * hw;
                    float* gs = (float*)gp + p * hw;
                    for (int i = 0; i < hw; i++)
                    {
                        if (code[i] < 0)
                        {
                            gs[i] = 0f;
                            continue;
                        }
                        sum += Element(xs[i], code[i] == cls, gamma, alpha, out float dLoss);
                        gs[i] = dLoss * scale;
                    }
                }
                chunkSums[chunk] = sum;
            });
        }
        double total = 0;
        for (int c = 0; c < chunkCount; c++) total += chunkSums[c];
        return (float)(total * LossWeight / averageFactor);
    }

    // Focal loss of one logit and its derivative, with log p = -softplus(-x), log(1-p) = -softplus(x).
    private static float Element(float x, bool positive, float gamma, float alpha, out float dLoss)
    {
        float e = MathF.Exp(-MathF.Abs(x));
        float log1pE = MathF.Log(1f + e);
        float softplusPos = MathF.Max(x, 0f) + log1pE;  // softplus(x) = -log(1 - p)
        float softplusNeg = MathF.Max(-x, 0f) + log1pE; // softplus(-x) = -log(p)
        float r = 1f / (1f + e);
        float p = x >= 0f ? r : e * r;
        float q = x >= 0f ? e * r : r;                  // 1 - p without cancellation
        if (positive)
        {
            float qg = gamma == 2f ? q * q : MathF.Pow(q, gamma);
            dLoss = alpha * qg * (-gamma * p * softplusNeg - q);
            return alpha * qg * softplusNeg;
        }
        float pg = gamma == 2f ? p * p : MathF.Pow(p, gamma);
        dLoss = (1f - alpha) * pg * (p + gamma * q * softplusPos);
        return (1f - alpha) * pg * softplusPos;
    }
}
