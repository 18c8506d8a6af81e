// Shared pieces of GHM-C and GHM-R: the gradient-length bin of a value, the per-bin weights
// from a histogram (with mmdetection's float32 EMA of acc_sum), and the second pass that scales
// stored unscaled gradients by their bin's weight (AVX2 gather, scalar fallback).
// Reference tests: tests/GhmGen.Runtime.Tests/Losses/GhmSpecVectorTests.cs and GhmFixtureTests.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Losses;

/// <summary>Bin lookup, per-bin weights and gradient scaling shared by <see cref="GhmcLoss"/> and <see cref="GhmrLoss"/>.</summary>
internal static unsafe class GhmBinning
{
    /// <summary>Elements per work chunk: big enough to amortize scheduling, small enough to balance 2-64 cores.</summary>
    public const int ChunkElements = 1 << 16;

    /// <summary>The bin b with edges[b] &lt;= g &lt; edges[b + 1] (mmdetection's test), or -1 if none.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BinOf(float g, float* edges, int bins)
    {
        if (!(g >= edges[0] && g < edges[bins])) return -1;
        // Edges are k/bins rounded to float, so the truncated product is off by at most one.
        int b = (int)(g * bins);
        if (b > bins - 1) b = bins - 1;
        if (b < 0) b = 0;
        if (g < edges[b])
        {
            do b--; while (g < edges[b]);
        }
        else
        {
            while (g >= edges[b + 1]) b++;
        }
        return b;
    }

    /// <summary>
    /// Turns a histogram of one call into per-bin weights, updating <paramref name="accSum"/> as
    /// mmdetection does in float32: acc = f32(f32(m) * acc) + f32((1 - m) * k); weight = f32(1 / acc) * f32(tot)
    /// (PyTorch's scalar / tensor), or f32(tot / k) when momentum is 0; then every weight / n.
    /// Empty bins keep their acc_sum and weight 0.
    /// </summary>
    /// <returns>The number of non-empty bins n.</returns>
    public static int ComputeBinWeights(ReadOnlySpan<long> counts, float[] accSum, double momentum, double tot, Span<float> weights)
    {
        int bins = counts.Length;
        int nonEmpty = 0;
        float totF = (float)tot;
        float momentumF = (float)momentum;
        for (int b = 0; b < bins; b++)
        {
            long k = counts[b];
            if (k <= 0)
            {
                weights[b] = 0f;
                continue;
            }
            nonEmpty++;
            if (momentum > 0)
            {
                float acc = momentumF * accSum[b];
                acc += (float)((1.0 - momentum) * k);
                accSum[b] = acc;
                weights[b] = (1f / acc) * totF;
            }
            else
            {
                weights[b] = (float)(tot / k);
            }
        }
        if (nonEmpty > 0)
            for (int b = 0; b < bins; b++) weights[b] /= nonEmpty;
        return nonEmpty;
    }

    /// <summary>
    /// True when edges[k] == (float)k / bins for every k &lt; bins and the last edge is at least 1
    /// (GHM-C's and GHM-R's edges): then <see cref="UniformBin"/> finds bins without a table.
    /// </summary>
    public static bool HasUniformEdges(ReadOnlySpan<float> edges)
    {
        int bins = edges.Length - 1;
        for (int k = 0; k < bins; k++)
            if (edges[k] != (float)k / bins) return false;
        return edges[bins] >= 1f;
    }

    /// <summary>
    /// Bins of 8 gradient lengths for uniform edges, exactly as edges[b] &lt;= g &lt; edges[b + 1]
    /// for 0 &lt;= g &lt; edges[bins]: the truncated g * bins, corrected by one against the
    /// recomputed float edges k / bins, clamped to the last bin (whose upper edge is &gt;= 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> UniformBin(Vector256<float> g, Vector256<float> binsF, Vector256<int> maxBin)
    {
        Vector256<int> b = Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(g * binsF), Vector256<int>.Zero), maxBin);
        Vector256<float> lower = Vector256.ConvertToSingle(b) / binsF;
        Vector256<float> upper = Vector256.ConvertToSingle(b + Vector256<int>.One) / binsF;
        // comparison masks are all ones (-1) where true
        b += Vector256.LessThan(g, lower).AsInt32();
        b -= Vector256.GreaterThanOrEqual(g, upper).AsInt32();
        return Vector256.Min(Vector256.Max(b, Vector256<int>.Zero), maxBin);
    }

    /// <summary>
    /// In place: value[i] *= scale[bin(|value[i]|)] over [start, start + count). The values are
    /// the unscaled gradients that pass 1 stored (0 for elements outside every bin), whose
    /// magnitude is the gradient length g, so the bin is recomputed instead of stored.
    /// </summary>
    public static void ScaleByBin(float* values, long start, long count, float* edges, float* scale, int bins, bool uniformEdges)
    {
        float* p = values + start;
        long i = 0;
        if (uniformEdges && Vector256.IsHardwareAccelerated && count >= 8)
        {
            var binsF = Vector256.Create((float)bins);
            var maxBin = Vector256.Create(bins - 1);
            int* bBuf = stackalloc int[8];
            float* wBuf = stackalloc float[8];
            var edge1 = Vector256.Create(edges[1]);
            var scale0 = Vector256.Create(scale[0]);
            for (; i <= count - 8; i += 8)
            {
                Vector256<float> v = Vector256.Load(p + i);
                if (Vector256.LessThanAll(Vector256.Abs(v), edge1))
                {
                    Vector256.Store(v * scale0, p + i); // all in bin 0: the common case
                    continue;
                }
                Vector256<int> b = UniformBin(Vector256.Abs(v), binsF, maxBin);
                int b0 = b.ToScalar();
                Vector256<float> w;
                if (Vector256.EqualsAll(b, Vector256.Create(b0)))
                {
                    w = Vector256.Create(scale[b0]); // most vectors: one bin (easy negatives)
                }
                else if (Avx2.IsSupported)
                {
                    w = Avx2.GatherVector256(scale, b, 4);
                }
                else
                {
                    Vector256.Store(b, bBuf);
                    for (int lane = 0; lane < 8; lane++) wBuf[lane] = scale[bBuf[lane]];
                    w = Vector256.Load(wBuf);
                }
                Vector256.Store(v * w, p + i);
            }
        }
        else if (Avx2.IsSupported && count >= 8)
        {
            var binsF = Vector256.Create((float)bins);
            var maxBin = Vector256.Create(bins - 1);
            var one = Vector256.Create(1);
            for (; i <= count - 8; i += 8)
            {
                Vector256<float> v = Avx.LoadVector256(p + i);
                Vector256<float> g = Vector256.Abs(v);
                Vector256<int> b = Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(g * binsF), Vector256<int>.Zero), maxBin);
                Vector256<float> lower = Avx2.GatherVector256(edges, b, 4);
                Vector256<float> upper = Avx2.GatherVector256(edges, b + one, 4);
                b += Vector256.LessThan(g, lower).AsInt32();
                b -= Vector256.GreaterThanOrEqual(g, upper).AsInt32();
                b = Vector256.Min(Vector256.Max(b, Vector256<int>.Zero), maxBin);
                Avx.Store(p + i, v * Avx2.GatherVector256(scale, b, 4));
            }
        }
        for (; i < count; i++)
        {
            float v = p[i];
            int b = BinOf(MathF.Abs(v), edges, bins);
            p[i] = b < 0 ? 0f : v * scale[b];
        }
    }

    /// <summary>
    /// exp(x) for x &lt;= 0 (Cephes expf: x = n ln2 + r, degree-5 polynomial, 2^n by exponent bits;
    /// about 1 ulp; inputs below -87.3 give exp(-87.3) instead of a denormal). BCL's Vector256.Exp
    /// widens to double and is several times slower.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ExpNonPositive(Vector256<float> x)
    {
        x = Vector256.Max(x, Vector256.Create(-87.3f));
        Vector256<float> n = Vector256.Floor(x * Vector256.Create(1.44269504088896341f) + Vector256.Create(0.5f));
        x = x - n * Vector256.Create(0.693359375f) - n * Vector256.Create(-2.12194440e-4f);
        Vector256<float> z = x * x;
        Vector256<float> p = Vector256.Create(1.9875691500E-4f);
        p = Vector256.MultiplyAddEstimate(p, x, Vector256.Create(1.3981999507E-3f));
        p = Vector256.MultiplyAddEstimate(p, x, Vector256.Create(8.3334519073E-3f));
        p = Vector256.MultiplyAddEstimate(p, x, Vector256.Create(4.1665795894E-2f));
        p = Vector256.MultiplyAddEstimate(p, x, Vector256.Create(1.6666665459E-1f));
        p = Vector256.MultiplyAddEstimate(p, x, Vector256.Create(5.0000001201E-1f));
        Vector256<float> y = p * z + x + Vector256.Create(1f);
        Vector256<int> pow2 = (Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23;
        return y * pow2.AsSingle();
    }

    /// <summary>
    /// log(y) for y in [1, 2] (Cephes logf: range reduction to [sqrt(1/2), sqrt(2)] and a degree-9
    /// polynomial; about 1 ulp). BCL's Vector256.Log is several times slower than Exp here.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LogOneToTwo(Vector256<float> y)
    {
        var one = Vector256.Create(1f);
        Vector256<float> big = Vector256.GreaterThan(y, Vector256.Create(1.41421356f));
        Vector256<float> e = big & one;
        Vector256<float> f = Vector256.ConditionalSelect(big, y * Vector256.Create(0.5f), y) - one;
        Vector256<float> z = f * f;
        Vector256<float> p = Vector256.Create(7.0376836292E-2f);
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(-1.1514610310E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(1.1676998740E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(-1.2420140846E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(1.4249322787E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(-1.6668057665E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(2.0000714765E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(-2.4999993993E-1f));
        p = Vector256.MultiplyAddEstimate(p, f, Vector256.Create(3.3333331174E-1f));
        Vector256<float> r = f * z * p;
        r += e * Vector256.Create(-2.12194440e-4f);
        r -= z * Vector256.Create(0.5f);
        return f + r + e * Vector256.Create(0.693359375f);
    }

    /// <summary>Sums per-chunk histograms in chunk order (deterministic for any thread count).</summary>
    public static void ReduceChunks(long[] chunkCounts, double[] chunkSums, int chunkCount, int bins, Span<long> counts, Span<double> sums)
    {
        counts.Clear();
        sums.Clear();
        for (int c = 0; c < chunkCount; c++)
        {
            for (int b = 0; b < bins; b++)
            {
                counts[b] += chunkCounts[c * bins + b];
                sums[b] += chunkSums[c * bins + b];
            }
        }
    }

    /// <summary>Grows a scratch array to at least <paramref name="length"/> elements.</summary>
    public static T[] Ensure<T>(ref T[]? array, int length)
    {
        if (array is null || array.Length < length) array = new T[Math.Max(length, 16)];
        return array;
    }

    /// <summary>Lane indices set in a mask, lowest first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NextLane(ref uint bits)
    {
        int lane = BitOperations.TrailingZeroCount(bits);
        bits &= bits - 1;
        return lane;
    }
}
