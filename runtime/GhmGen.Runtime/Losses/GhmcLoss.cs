// GHM-C loss (Li, Liu, Wang, AAAI 2019) exactly as mmdetection's GHMC computes it (docs/MODEL.md
// §6), forward and backward in one call.
//   NCHW form: class output [N, A*C, H, W] (channel a*C + c) with LevelTargets.LabelCodes [N, A, H*W]
//              -> loss, gradient [N, A*C, H, W].
//   Dense form: logits, binary targets, label weights [M, C] row-major -> loss, gradient [M, C].
// Two passes over the logits, both SIMD (Vector256; AVX2 gathers in pass 2) and multi-threaded:
//   pass 1: per element g = |sigmoid(x) - t| and bce(x, t); write sigmoid(x) - t into the gradient
//           buffer; per-chunk histogram of counts and bce sums (double) by bin;
//   reduce: chunk histograms added in chunk order -> counts, acc_sum EMA, bin weights W_b;
//           loss = sum_b W_b * bceSum_b / tot * lossWeight;
//   pass 2: gradient *= W_b * lossWeight / tot, with b recomputed from |gradient| (= g).
// Chunks are fixed by the shape alone and each chunk's sums are double, added in a fixed order
// (a vector whose 8 lanes share one bin goes into that bin's 4-lane double accumulator, other
// elements one by one), then chunks are added in chunk order: results do not depend on the
// thread count, and differ from a sequential float64 sum only by double rounding (~1e-16).
// exp and log use Cephes polynomials (~1 ulp; GhmMathTests), so g can differ from PyTorch's by
// an ulp: only an element within an ulp of a bin edge could change bins.
// Reference tests: tests/GhmGen.Runtime.Tests/Losses/GhmSpecVectorTests.cs (the test vectors of docs/MODEL.md §6),
// GhmFixtureTests.cs (tools/reference/ghm_losses.py, PyTorch) and GhmNaiveTests.cs (per-bin loop).
using System.Runtime.Intrinsics;

namespace GhmGen.Losses;

/// <summary>Gradient Harmonized classification loss (GHM-C) with its persistent <c>acc_sum</c> state.</summary>
/// <remarks>One instance keeps scratch buffers between calls: do not call it from two threads at once.</remarks>
public sealed unsafe class GhmcLoss
{
    private readonly float[] _edges;
    private long[]? _chunkCounts;
    private double[]? _chunkSums;
    private long[]? _chunkValid;
    private readonly long[] _counts;
    private readonly double[] _sums;
    private readonly float[] _weights;
    private readonly float[] _scale;

    /// <summary>Creates the loss with mmdetection's GHM config defaults (30 bins, momentum 0.75, weight 1).</summary>
    /// <param name="bins">Number of gradient-length bins.</param>
    /// <param name="momentum">EMA momentum of <c>acc_sum</c>; 0 uses each call's counts and keeps no state.</param>
    /// <param name="lossWeight">Multiplier of the loss (and gradient).</param>
    /// <param name="accSum">
    /// The state to update in place, e.g. the checkpoint buffer <c>bbox_head.loss_cls.acc_sum</c> [bins];
    /// a new zeroed array when null.
    /// </param>
    public GhmcLoss(int bins = 30, double momentum = 0.75, float lossWeight = 1f, float[]? accSum = null)
    {
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), bins, "bins must be at least 1.");
        if (!(momentum >= 0 && momentum < 1)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be in [0, 1).");
        if (accSum is not null && accSum.Length != bins)
            throw new ArgumentException($"accSum has {accSum.Length} entries but GHM-C has {bins} bins.", nameof(accSum));
        Bins = bins;
        Momentum = momentum;
        LossWeight = lossWeight;
        AccSum = accSum ?? new float[bins];
        // torch.arange(bins + 1).float() / bins; edges[-1] += 1e-6 (all float32)
        _edges = new float[bins + 1];
        for (int k = 0; k <= bins; k++) _edges[k] = (float)k / bins;
        _edges[bins] += 1e-6f;
        _counts = new long[bins];
        _sums = new double[bins];
        _weights = new float[bins];
        _scale = new float[bins];
    }

    /// <summary>Number of bins.</summary>
    public int Bins { get; }

    /// <summary>EMA momentum.</summary>
    public double Momentum { get; }

    /// <summary>Loss multiplier.</summary>
    public float LossWeight { get; }

    /// <summary>The persistent EMA of bin counts (bound array, updated in place by every call).</summary>
    public float[] AccSum { get; }

    /// <summary>Bin edges [bins + 1]: k / bins in float32, the last plus 1e-6 (checkpoint buffer <c>edges</c>).</summary>
    public ReadOnlySpan<float> Edges => _edges;

    /// <summary>Maximum threads per call; -1 uses all cores.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>Counts of the last call's bins (valid elements with edges[b] &lt;= g &lt; edges[b+1]).</summary>
    public ReadOnlySpan<long> LastBinCounts => _counts;

    /// <summary>
    /// Loss and gradient of one FPN level over all images of the batch, straight from the NCHW class output.
    /// Updates <see cref="AccSum"/> (call once per level, P3 first, as mmdetection does).
    /// </summary>
    /// <param name="classOutput">[N, A*C, H, W] logits, channel a*C + c.</param>
    /// <param name="level">The level's targets (label codes [N, A, H*W]).</param>
    /// <param name="gradient">[N, A*C, H, W], overwritten with d loss / d classOutput.</param>
    public float ComputeLevel(ReadOnlySpan<float> classOutput, Detection.LevelTargets level, Span<float> gradient)
    {
        ArgumentNullException.ThrowIfNull(level);
        long length = level.ClassOutputLength;
        if (classOutput.Length != length)
            throw new ArgumentException($"classOutput has {classOutput.Length} values; the level needs N*A*C*H*W = {level.NumImages}*{level.AnchorsPerCell}*{level.NumClasses}*{level.CellCount} = {length}.", nameof(classOutput));
        if (gradient.Length != length)
            throw new ArgumentException($"gradient has {gradient.Length} values; it must match classOutput ({length}).", nameof(gradient));
        if (length == 0) return 0f;
        fixed (float* x = classOutput)
        fixed (int* codes = level.LabelCodes)
        fixed (float* grad = gradient)
        {
            return Compute(x, codes, grad, (long)level.NumImages * level.AnchorsPerCell * level.NumClasses, level.CellCount, length, level.NumClasses, -1);
        }
    }

    /// <summary>
    /// mmdetection's <c>GHMC.forward(pred, target, label_weight)</c> on [M, C] row-major arrays with
    /// binary targets (0 or 1): returns the loss and writes d loss / d logits. Updates <see cref="AccSum"/>.
    /// </summary>
    public float Compute(ReadOnlySpan<float> logits, ReadOnlySpan<float> targets, ReadOnlySpan<float> labelWeights, Span<float> gradient)
    {
        int length = logits.Length;
        if (targets.Length != length || labelWeights.Length != length || gradient.Length != length)
            throw new ArgumentException($"logits ({length}), targets ({targets.Length}), labelWeights ({labelWeights.Length}) and gradient ({gradient.Length}) must have the same length.", nameof(targets));
        if (length == 0) return 0f;
        // Per-element codes against class 1: 1 = target 1, 0 = target 0, -1 = not valid.
        var codes = new int[length];
        for (int i = 0; i < length; i++)
        {
            float t = targets[i];
            if (t != 0f && t != 1f)
                throw new ArgumentException($"targets[{i}] = {t}: GHM-C needs binary targets (0 or 1).", nameof(targets));
            codes[i] = labelWeights[i] > 0f ? (int)t : -1;
        }
        int planeLength = Math.Min(length, GhmBinning.ChunkElements);
        long planes = (length + planeLength - 1) / planeLength;
        fixed (float* x = logits)
        fixed (int* c = codes)
        fixed (float* grad = gradient)
        {
            return Compute(x, c, grad, planes, planeLength, length, 1, 1);
        }
    }

    // Planes of planeLength elements (the last may be short); plane p reads code plane
    // p / classesPerCodePlane and compares codes with fixedClass, or with p % classesPerCodePlane when fixedClass < 0.
    private float Compute(float* x, int* codes, float* grad, long planeCount, int planeLength, long totalLength, int classesPerCodePlane, int fixedClass)
    {
        int bins = Bins;
        long planesPerChunk = Math.Max(1, GhmBinning.ChunkElements / planeLength);
        int chunkCount = checked((int)((planeCount + planesPerChunk - 1) / planesPerChunk));
        long[] chunkCounts = GhmBinning.Ensure(ref _chunkCounts, chunkCount * bins);
        double[] chunkSums = GhmBinning.Ensure(ref _chunkSums, chunkCount * bins);
        long[] chunkValid = GhmBinning.Ensure(ref _chunkValid, chunkCount);
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        nint xp = (nint)x, cp = (nint)codes, gp = (nint)grad;

        fixed (float* edgesPinned = _edges)
        {
            nint ep = (nint)edgesPinned;
            Parallel.For(0, chunkCount, options, chunk =>
            {
                var counts = new Span<long>(chunkCounts, chunk * bins, bins);
                var sums = new Span<double>(chunkSums, chunk * bins, bins);
                counts.Clear();
                sums.Clear();
                long valid = 0;
                long firstPlane = chunk * planesPerChunk;
                long endPlane = Math.Min(planeCount, firstPlane + planesPerChunk);
                for (long p = firstPlane; p < endPlane; p++)
                {
                    long start = p * planeLength;
                    int len = (int)Math.Min(planeLength, totalLength - start);
                    int cls = fixedClass >= 0 ? fixedClass : (int)(p % classesPerCodePlane);
                    int* codePlane = (int*)cp + p / classesPerCodePlane * planeLength;
                    valid += HistogramPass((float*)xp + start, codePlane, cls, (float*)gp + start, len, (float*)ep, bins, counts, sums);
                }
                chunkValid[chunk] = valid;
            });

            long validTotal = 0;
            for (int c = 0; c < chunkCount; c++) validTotal += chunkValid[c];
            GhmBinning.ReduceChunks(chunkCounts, chunkSums, chunkCount, bins, _counts, _sums);
            double tot = Math.Max(validTotal, 1);
            GhmBinning.ComputeBinWeights(_counts, AccSum, Momentum, tot, _weights);
            double loss = 0;
            for (int b = 0; b < bins; b++)
            {
                loss += _weights[b] * _sums[b];
                _scale[b] = (float)(_weights[b] * (double)LossWeight / tot);
            }
            loss = loss / tot * LossWeight;

            fixed (float* scalePinned = _scale)
            {
                nint sp = (nint)scalePinned;
                long chunkElements = planesPerChunk * planeLength;
                Parallel.For(0, chunkCount, options, chunk =>
                {
                    long start = chunk * chunkElements;
                    long count = Math.Min(chunkElements, totalLength - start);
                    GhmBinning.ScaleByBin((float*)gp, start, count, (float*)ep, (float*)sp, bins, uniformEdges: true);
                });
            }
            return (float)loss;
        }
    }

    // Pass 1 over one plane: writes sigmoid(x) - t (0 where not valid or in no bin) and adds
    // each binned valid element's count and bce to its bin. Returns the valid count.
    // Fast path: when all 8 lanes are valid and fall in one bin (most vectors: easy negatives in
    // bin 0), the bce vector is added to that bin's double-lane accumulator; other vectors go lane
    // by lane. The summation order is fixed by the data alone (never by threads).
    private static long HistogramPass(float* x, int* codes, int cls, float* grad, int length, float* edges, int bins, Span<long> counts, Span<double> sums)
    {
        long valid = 0;
        int i = 0;
        if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            int* binBuf = stackalloc int[8];
            float* bceBuf = stackalloc float[8];
            var binsF = Vector256.Create((float)bins);
            var maxBin = Vector256.Create(bins - 1);
            var edge0 = Vector256.Create(edges[0]);
            var edge1 = Vector256.Create(edges[1]);
            var edgeLast = Vector256.Create(edges[bins]);
            Vector256<double>* binAcc = stackalloc Vector256<double>[bins];
            for (int b = 0; b < bins; b++) binAcc[b] = Vector256<double>.Zero;
            var zero = Vector256<float>.Zero;
            var classVector = Vector256.Create(cls);
            // Two vectors per step: exp, log and the divide are long dependency chains, and two
            // independent ones in flight keep the core busy.
            for (; i <= length - 16; i += 16)
            {
                Vector256<int> codeA = Vector256.Load(codes + i);
                Vector256<int> codeB = Vector256.Load(codes + i + 8);
                Vector256<float> validA = Vector256.GreaterThanOrEqual(codeA, Vector256<int>.Zero).AsSingle();
                Vector256<float> validB = Vector256.GreaterThanOrEqual(codeB, Vector256<int>.Zero).AsSingle();
                uint validBitsA = validA.ExtractMostSignificantBits();
                uint validBitsB = validB.ExtractMostSignificantBits();
                if ((validBitsA | validBitsB) == 0)
                {
                    Vector256.Store(zero, grad + i);
                    Vector256.Store(zero, grad + i + 8);
                    continue;
                }
                Vector256<float> bceA = SigmoidAndBce(Vector256.Load(x + i), codeA, classVector, validA, out Vector256<float> vA);
                Vector256<float> bceB = SigmoidAndBce(Vector256.Load(x + i + 8), codeB, classVector, validB, out Vector256<float> vB);
                Vector256.Store(vA, grad + i);
                Vector256.Store(vB, grad + i + 8);
                valid += System.Numerics.BitOperations.PopCount(validBitsA) + System.Numerics.BitOperations.PopCount(validBitsB);
                AddToHistogram(Vector256.Abs(vA), bceA, validBitsA, grad + i, binsF, maxBin, edge0, edge1, edgeLast, counts, sums, binAcc, binBuf, bceBuf);
                AddToHistogram(Vector256.Abs(vB), bceB, validBitsB, grad + i + 8, binsF, maxBin, edge0, edge1, edgeLast, counts, sums, binAcc, binBuf, bceBuf);
            }
            for (; i <= length - 8; i += 8)
            {
                Vector256<int> code = Vector256.Load(codes + i);
                Vector256<float> validMask = Vector256.GreaterThanOrEqual(code, Vector256<int>.Zero).AsSingle();
                uint validBits = validMask.ExtractMostSignificantBits();
                Vector256<float> bce = SigmoidAndBce(Vector256.Load(x + i), code, classVector, validMask, out Vector256<float> v);
                Vector256.Store(v, grad + i);
                valid += System.Numerics.BitOperations.PopCount(validBits);
                AddToHistogram(Vector256.Abs(v), bce, validBits, grad + i, binsF, maxBin, edge0, edge1, edgeLast, counts, sums, binAcc, binBuf, bceBuf);
            }
            for (int b = 0; b < bins; b++)
            {
                Vector256<double> acc = binAcc[b];
                sums[b] += acc.GetElement(0) + acc.GetElement(1) + acc.GetElement(2) + acc.GetElement(3);
            }
        }
        for (; i < length; i++)
        {
            int code = codes[i];
            if (code < 0)
            {
                grad[i] = 0f;
                continue;
            }
            valid++;
            float xi = x[i];
            float t = code == cls ? 1f : 0f;
            float e = MathF.Exp(-MathF.Abs(xi));
            float r = 1f / (1f + e);
            float v = (xi >= 0f ? r : e * r) - t;
            int b = GhmBinning.BinOf(MathF.Abs(v), edges, bins);
            if (b < 0)
            {
                grad[i] = 0f;
                continue;
            }
            grad[i] = v;
            counts[b]++;
            sums[b] += MathF.Max(xi, 0f) - xi * t + MathF.Log(1f + e);
        }
        return valid;
    }

    // sigmoid(x) - t (masked by valid) into v, and bce(x, t) as the result, for 8 logits.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SigmoidAndBce(Vector256<float> x, Vector256<int> code, Vector256<int> classVector, Vector256<float> validMask, out Vector256<float> v)
    {
        var one = Vector256.Create(1f);
        var zero = Vector256<float>.Zero;
        Vector256<float> t = Vector256.Equals(code, classVector).AsSingle() & one;
        Vector256<float> e = GhmBinning.ExpNonPositive(-Vector256.Abs(x));     // exp(-|x|) in (0, 1]
        Vector256<float> onePlusE = one + e;
        Vector256<float> r = one / onePlusE;
        Vector256<float> sigmoid = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(x, zero), r, e * r);
        v = (sigmoid - t) & validMask;
        return Vector256.Max(x, zero) - x * t + GhmBinning.LogOneToTwo(onePlusE);
    }

    // Counts 8 gradient lengths g (with their bce) into the histogram. A vector whose lanes are all
    // valid and in one bin goes to that bin's 4-lane double accumulator; otherwise lane by lane,
    // zeroing the stored gradient of valid lanes outside every bin (NaN).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void AddToHistogram(Vector256<float> g, Vector256<float> bce, uint validBits, float* grad,
        Vector256<float> binsF, Vector256<int> maxBin, Vector256<float> edge0, Vector256<float> edge1, Vector256<float> edgeLast,
        Span<long> counts, Span<double> sums, Vector256<double>* binAcc, int* binBuf, float* bceBuf)
    {
        if (validBits == 0) return;
        if (validBits == 0xFF && Vector256.LessThanAll(g, edge1))
        {
            counts[0] += 8; // all in bin 0 (easy negatives): no bin arithmetic
            binAcc[0] += Vector256.WidenLower(bce) + Vector256.WidenUpper(bce);
            return;
        }
        uint inRangeBits = (Vector256.GreaterThanOrEqual(g, edge0) & Vector256.LessThan(g, edgeLast)).ExtractMostSignificantBits();
        Vector256<int> bin = GhmBinning.UniformBin(g, binsF, maxBin);
        int b0 = bin.ToScalar();
        Vector256<float> sameBin = Vector256.Equals(bin, Vector256.Create(b0)).AsSingle();
        uint binned = validBits & inRangeBits;
        uint sameBits = binned & sameBin.ExtractMostSignificantBits();
        if (sameBits == 0xFF)
        {
            counts[b0] += 8;
            binAcc[b0] += Vector256.WidenLower(bce) + Vector256.WidenUpper(bce);
            return;
        }
        uint outside = validBits & ~inRangeBits;
        while (outside != 0) grad[GhmBinning.NextLane(ref outside)] = 0f;
        // Lanes in lane 0's bin (usually most of them) still go in one masked vector add.
        if (sameBits != 0)
        {
            Vector256<float> masked = bce & LaneBitMask(sameBits);
            counts[b0] += System.Numerics.BitOperations.PopCount(sameBits);
            binAcc[b0] += Vector256.WidenLower(masked) + Vector256.WidenUpper(masked);
            binned &= ~sameBits;
        }
        Vector256.Store(bin, binBuf);
        Vector256.Store(bce, bceBuf);
        while (binned != 0)
        {
            int lane = GhmBinning.NextLane(ref binned);
            counts[binBuf[lane]]++;
            sums[binBuf[lane]] += bceBuf[lane];
        }
    }

    // All-ones in lane k where bit k of bits is set.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LaneBitMask(uint bits)
    {
        Vector256<int> laneBits = Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);
        return Vector256.Equals(Vector256.Create((int)bits) & laneBits, laneBits).AsSingle();
    }
}
