// The CPU backend's non-convolution ops, as parallel work items:
// - elementwise over flat arrays of any length, in chunks of 16384 floats (SIMD, scalar tail):
//   add: y = a + b, add-relu: y = max(a + b, 0), relu: y = max(x, 0), sigmoid: y = 1 / (1 + exp(-x))
//   (y may alias an input);
// - max-pool, one item per (n, c) plane: x [N, C, H, W] -> y [N, C, OH, OW], square window,
//   padding counted as -infinity (separable: column max of the window rows, then row max);
// - nearest upsample-add, one item per (n, c) plane: lower[n, c, y, x] += upper[n, c,
//   floor(y * inH / outH), floor(x * inW / outW)] (PyTorch 'nearest'; AVX path for exactly 2x wide).
// Backward (ITrainingBackend), same partitioning, so every destination element is written by one
// item in a fixed order (race-free, deterministic):
// - elementwise: ReLU backward dx = y > 0 ? dy : 0 (dx may alias dy), zero;
// - max-pool backward, one item per (n, c) plane: dx (+)= dy at the first maximum of each window
//   in row-major order (NaN wins, as in PyTorch), scattered in output order;
// - nearest upsample backward, one item per (n, c) plane: dUpper[sy, sx] (+)= the dLower cells
//   whose source is (sy, sx) (AVX path for exactly 2x wide: pairs summed).
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>Which pointwise op a <see cref="CpuPointwiseOps"/> call runs.</summary>
internal enum PointwiseOp
{
    /// <summary>y = a + b.</summary>
    Add,

    /// <summary>y = max(a + b, 0).</summary>
    AddRelu,

    /// <summary>y = max(x, 0).</summary>
    Relu,

    /// <summary>y = 1 / (1 + exp(-x)).</summary>
    Sigmoid,

    /// <summary>Max-pool, per plane.</summary>
    MaxPool,

    /// <summary>Nearest upsample-add, per plane.</summary>
    UpsampleAdd,

    /// <summary>dx = y &gt; 0 ? dy : 0.</summary>
    ReluBackward,

    /// <summary>y = 0.</summary>
    Zero,

    /// <summary>Max-pool backward, per plane.</summary>
    MaxPoolBackward,

    /// <summary>Nearest upsample backward, per plane.</summary>
    UpsampleBackward,
}

/// <summary>Per-call state of the pointwise ops (one call at a time), run as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class CpuPointwiseOps : IParallelWork
{
    private const int ChunkElements = 16384;

    private PointwiseOp op;
    private float* a, b, y;
    private long length;
    private int inH, inW, outH, outW, kernelSize, stride, padding;
    private bool accumulate;

    /// <summary>Sets up an elementwise op over <paramref name="count"/> floats; returns the item count.</summary>
    public int PrepareElementwise(PointwiseOp op, float* a, float* b, float* y, long count)
    {
        this.op = op;
        this.a = a;
        this.b = b;
        this.y = y;
        length = count;
        return checked((int)((count + ChunkElements - 1) / ChunkElements));
    }

    /// <summary>Sets up a max-pool; returns the item count (planes).</summary>
    public int PrepareMaxPool(float* x, float* y, TensorView xView, TensorView yView, int kernelSize, int stride, int padding)
    {
        op = PointwiseOp.MaxPool;
        a = x;
        this.y = y;
        inH = xView.H;
        inW = xView.W;
        outH = yView.H;
        outW = yView.W;
        this.kernelSize = kernelSize;
        this.stride = stride;
        this.padding = padding;
        return checked(xView.N * xView.C);
    }

    /// <summary>Sets up lower += upsample(upper); returns the item count (planes).</summary>
    public int PrepareUpsampleAdd(float* upper, float* lower, TensorView upperView, TensorView lowerView)
    {
        op = PointwiseOp.UpsampleAdd;
        a = upper;
        y = lower;
        inH = upperView.H;
        inW = upperView.W;
        outH = lowerView.H;
        outW = lowerView.W;
        return (long)inH * inW == 0 && (long)outH * outW > 0 ? throw new ArgumentException($"upsample-add: empty source {upperView.ShapeText}") : checked(lowerView.N * lowerView.C);
    }

    /// <summary>Sets up dx (+)= max-pool backward; returns the item count (planes).</summary>
    public int PrepareMaxPoolBackward(float* x, float* dy, float* dx, TensorView xView, TensorView dyView, int kernelSize, int stride, int padding, bool accumulate)
    {
        op = PointwiseOp.MaxPoolBackward;
        a = x;
        b = dy;
        y = dx;
        inH = xView.H;
        inW = xView.W;
        outH = dyView.H;
        outW = dyView.W;
        this.kernelSize = kernelSize;
        this.stride = stride;
        this.padding = padding;
        this.accumulate = accumulate;
        return checked(xView.N * xView.C);
    }

    /// <summary>Sets up dUpper (+)= upsample backward of dLower; returns the item count (planes).</summary>
    public int PrepareUpsampleBackward(float* dLower, float* dUpper, TensorView lowerView, TensorView upperView, bool accumulate)
    {
        op = PointwiseOp.UpsampleBackward;
        a = dLower;
        y = dUpper;
        inH = upperView.H;
        inW = upperView.W;
        outH = lowerView.H;
        outW = lowerView.W;
        this.accumulate = accumulate;
        return (long)inH * inW == 0 && (long)outH * outW > 0 ? throw new ArgumentException($"upsample backward: empty source {upperView.ShapeText}") : checked(upperView.N * upperView.C);
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        switch (op)
        {
            case PointwiseOp.MaxPool:
                MaxPoolPlane(item);
                break;
            case PointwiseOp.UpsampleAdd:
                UpsampleAddPlane(item);
                break;
            case PointwiseOp.MaxPoolBackward:
                MaxPoolBackwardPlane(item);
                break;
            case PointwiseOp.UpsampleBackward:
                UpsampleBackwardPlane(item);
                break;
            default:
                long start = (long)item * ChunkElements;
                int count = (int)Math.Min(ChunkElements, length - start);
                Elementwise(start, count);
                break;
        }
    }

    private void Elementwise(long start, int count)
    {
        float* pa = a + start, pb = b + start, py = y + start;
        int i = 0;
        switch (op)
        {
            case PointwiseOp.Add:
                for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
                    Vector.Store(Vector.Load(pa + i) + Vector.Load(pb + i), py + i);
                for (; i < count; i++) py[i] = pa[i] + pb[i];
                break;
            case PointwiseOp.AddRelu:
                for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
                    Vector.Store(Vector.Max(Vector.Load(pa + i) + Vector.Load(pb + i), Vector<float>.Zero), py + i);
                for (; i < count; i++) py[i] = MathF.Max(pa[i] + pb[i], 0f);
                break;
            case PointwiseOp.Relu:
                for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
                    Vector.Store(Vector.Max(Vector.Load(pa + i), Vector<float>.Zero), py + i);
                for (; i < count; i++) py[i] = MathF.Max(pa[i], 0f);
                break;
            case PointwiseOp.Sigmoid:
                for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
                    Vector.Store(Sigmoid(Vector.Load(pa + i)), py + i);
                for (; i < count; i++) py[i] = 1f / (1f + MathF.Exp(-pa[i]));
                break;
            case PointwiseOp.ReluBackward:
                // a = y (the ReLU's output), b = dy, y = dx (may alias dy).
                for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
                    Vector.Store(Vector.ConditionalSelect(Vector.GreaterThan(Vector.Load(pa + i), Vector<float>.Zero), Vector.Load(pb + i), Vector<float>.Zero), py + i);
                for (; i < count; i++) py[i] = pa[i] > 0f ? pb[i] : 0f;
                break;
            case PointwiseOp.Zero:
                new Span<float>(py, count).Clear();
                break;
            default:
                throw new InvalidOperationException($"{op} is not elementwise");
        }
    }

    // Separable: per output row, the column-wise max of the window's input rows (contiguous, SIMD)
    // into a row buffer, then the max over each output's window columns in that buffer.
    // 1 / (1 + exp(-x)) with a Cephes-style exp (Vector512.Exp is not vectorized in .NET 10 and
    // runs ~3x slower than scalar MathF.Exp): exp(t) = 2^n exp(r), n = round(t log2 e),
    // r = t - n ln 2 (ln 2 split in two for exactness), exp(r) by a degree-7 polynomial; relative
    // error ~1e-7. t = -x is clamped to [-87.3, 88.3] so 2^n stays a normal float; beyond 88.3
    // the result is 0, like the reference's 1 / (1 + inf).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Sigmoid(Vector<float> x)
    {
        Vector<float> t = Vector.Min(Vector.Max(-x, new Vector<float>(-87.3f)), new Vector<float>(88.3f));
        Vector<float> n = Vector.Round(t * new Vector<float>(1.44269504088896341f));
        Vector<float> r = t - n * new Vector<float>(0.693359375f) - n * new Vector<float>(-2.12194440e-4f);
        Vector<float> p = new Vector<float>(1.9875691500e-4f);
        p = p * r + new Vector<float>(1.3981999507e-3f);
        p = p * r + new Vector<float>(8.3334519073e-3f);
        p = p * r + new Vector<float>(4.1665795894e-2f);
        p = p * r + new Vector<float>(1.6666665459e-1f);
        p = p * r + new Vector<float>(5.0000001201e-1f);
        p = p * (r * r) + r + Vector<float>.One;
        Vector<float> scale = Vector.AsVectorSingle(Vector.ShiftLeft(Vector.ConvertToInt32(n) + new Vector<int>(127), 23));
        Vector<float> sigmoid = Vector<float>.One / (Vector<float>.One + p * scale);
        return Vector.ConditionalSelect(Vector.GreaterThan(-x, new Vector<float>(88.3f)), Vector<float>.Zero, sigmoid);
    }

    private void MaxPoolPlane(int plane)
    {
        float* src = a + (long)plane * inH * inW, dst = y + (long)plane * outH * outW;
        const int MaxRow = 8192;
        if (outW <= 0) return;
        if (inW > MaxRow || padding >= kernelSize)
        {
            MaxPoolPlaneDirect(src, dst);
            return;
        }
        // columnMax between borders of -inf, so that every window load stays inside the buffer;
        // windowMax[j] is the max of the kernelSize columns from j - padding (the outputs are every
        // stride-th of them). The per-output scalar loop this replaces compared with a branch, which
        // real (ReLU) inputs mispredict: R-50's max-pool at 800x1216 took ~14 ns per output.
        int border = kernelSize + Vector<float>.Count;
        int dense = (outW - 1) * stride + 1;
        float* buffer = stackalloc float[inW + 2 * border];
        float* windowMax = stackalloc float[dense + Vector<float>.Count];
        float* columnMax = buffer + border;
        new Span<float>(buffer, border).Fill(float.NegativeInfinity);
        new Span<float>(columnMax + inW, border).Fill(float.NegativeInfinity);
        for (int oy = 0; oy < outH; oy++)
        {
            int y0 = oy * stride - padding;
            int ky0 = Math.Max(0, -y0), ky1 = Math.Min(kernelSize, inH - y0);
            float* outRow = dst + (long)oy * outW;
            if (ky1 <= ky0)
            {
                new Span<float>(outRow, outW).Fill(float.NegativeInfinity);
                continue;
            }
            float* first = src + (long)(y0 + ky0) * inW;
            new ReadOnlySpan<float>(first, inW).CopyTo(new Span<float>(columnMax, inW));
            for (int ky = ky0 + 1; ky < ky1; ky++)
            {
                float* row = src + (long)(y0 + ky) * inW;
                int x = 0;
                for (; x <= inW - Vector<float>.Count; x += Vector<float>.Count)
                    Vector.Store(Vector.Max(Vector.Load(columnMax + x), Vector.Load(row + x)), columnMax + x);
                for (; x < inW; x++) columnMax[x] = Max(columnMax[x], row[x]);
            }
            // The last vector may run past dense (into windowMax's slack, reading the right border).
            for (int j = 0; j < dense; j += Vector<float>.Count)
            {
                float* at = columnMax + j - padding;
                Vector<float> best = Vector.Load(at);
                for (int kx = 1; kx < kernelSize; kx++) best = Vector.Max(best, Vector.Load(at + kx));
                Vector.Store(best, windowMax + j);
            }
            for (int ox = 0; ox < outW; ox++) outRow[ox] = windowMax[ox * stride];
        }
    }

    // Max of two window values; the inputs hold no NaN, so a plain compare matches MathF.Max.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max(float left, float right) => left > right ? left : right;

    // Per output, over the clipped window (rows wider than the row buffer).
    private void MaxPoolPlaneDirect(float* src, float* dst)
    {
        for (int oy = 0; oy < outH; oy++)
        {
            int y0 = oy * stride - padding;
            int ky0 = Math.Max(0, -y0), ky1 = Math.Min(kernelSize, inH - y0);
            float* outRow = dst + (long)oy * outW;
            for (int ox = 0; ox < outW; ox++)
            {
                int x0 = ox * stride - padding;
                int kx0 = Math.Max(0, -x0), kx1 = Math.Min(kernelSize, inW - x0);
                float best = float.NegativeInfinity;
                for (int ky = ky0; ky < ky1; ky++)
                {
                    float* row = src + (long)(y0 + ky) * inW + x0;
                    for (int kx = kx0; kx < kx1; kx++) best = MathF.Max(best, row[kx]);
                }
                outRow[ox] = best;
            }
        }
    }

    // Per output in row-major order: the window's first maximum (strictly greater, or NaN: PyTorch's
    // CPU rule, the first valid element starting as the winner) takes dy. An output's window lies
    // in its plane, so planes are independent. Stride 2 (the stem's pool) finds the winners of 16
    // interior outputs at once (AVX-512: even elements of two loads per tap); the scatter-adds
    // stay in output order, as do those of the scalar edges.
    private void MaxPoolBackwardPlane(int plane)
    {
        float* src = a + (long)plane * inH * inW, grad = b + (long)plane * outH * outW, dst = y + (long)plane * inH * inW;
        if (!accumulate) new Span<float>(dst, inH * inW).Clear();
        bool vector = stride == 2 && Avx512F.IsSupported && Vector512.IsHardwareAccelerated;
        int* winners = stackalloc int[16];
        for (int oy = 0; oy < outH; oy++)
        {
            int y0 = oy * stride - padding;
            int ky0 = Math.Max(0, -y0), ky1 = Math.Min(kernelSize, inH - y0);
            if (ky1 <= ky0) continue;
            float* gradRow = grad + (long)oy * outW;
            int ox = 0;
            while (ox < outW)
            {
                int x0 = ox * stride - padding;
                if (vector && x0 >= 0 && ox + 16 <= outW && x0 + kernelSize + 30 < inW)
                {
                    WindowWinners16(src, y0, ky0, ky1, x0, winners);
                    for (int lane = 0; lane < 16; lane++) dst[winners[lane]] += gradRow[ox + lane];
                    ox += 16;
                    continue;
                }
                int kx0 = Math.Max(0, -x0), kx1 = Math.Min(kernelSize, inW - x0);
                if (kx1 > kx0)
                {
                    long winner = (long)(y0 + ky0) * inW + x0 + kx0;
                    float best = src[winner];
                    for (int ky = ky0; ky < ky1; ky++)
                    {
                        long rowStart = (long)(y0 + ky) * inW + x0;
                        for (int kx = ky == ky0 ? kx0 + 1 : kx0; kx < kx1; kx++)
                        {
                            float v = src[rowStart + kx];
                            if (v > best || float.IsNaN(v))
                            {
                                best = v;
                                winner = rowStart + kx;
                            }
                        }
                    }
                    dst[winner] += gradRow[ox];
                }
                ox++;
            }
        }
    }

    // The winners (plane offsets) of 16 stride-2 windows starting at columns x0, x0 + 2, ..
    // (all columns of every window inside the row), rows y0 + ky0 .. y0 + ky1, same rule as above.
    private void WindowWinners16(float* src, int y0, int ky0, int ky1, int x0, int* winners)
    {
        Vector512<int> even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        Vector512<float> best = default;
        Vector512<int> index = default;
        bool first = true;
        for (int ky = ky0; ky < ky1; ky++)
        {
            int rowStart = (y0 + ky) * inW + x0;
            for (int kx = 0; kx < kernelSize; kx++)
            {
                float* at = src + rowStart + kx;
                Vector512<float> v = Avx512F.PermuteVar16x32x2(Vector512.Load(at), even, Vector512.Load(at + 16));
                Vector512<int> candidate = Vector512.Create(rowStart + kx) + even;
                if (first)
                {
                    best = v;
                    index = candidate;
                    first = false;
                    continue;
                }
                Vector512<float> wins = Vector512.GreaterThan(v, best) | ~Vector512.Equals(v, v);
                best = Vector512.ConditionalSelect(wins, v, best);
                index = Vector512.ConditionalSelect(wins.AsInt32(), candidate, index);
            }
        }
        index.Store(winners);
    }

    // dUpper[sy, sx] (+)= dLower[y, x] over the cells whose nearest source is (sy, sx), in lower
    // row-major order (the same index rule as UpsampleAddPlane).
    private void UpsampleBackwardPlane(int plane)
    {
        float scaleY = (float)inH / outH, scaleX = (float)inW / outW;
        float* src = a + (long)plane * outH * outW, dst = y + (long)plane * inH * inW;
        if (!accumulate) new Span<float>(dst, inH * inW).Clear();
        for (int oy = 0; oy < outH; oy++)
        {
            float* dstRow = dst + (long)Math.Min((int)MathF.Floor(oy * scaleY), inH - 1) * inW;
            float* srcRow = src + (long)oy * outW;
            int sx = 0;
            if (outW == 2 * inW && Avx2.IsSupported)
            {
                // Exactly 2x wide (the FPN case): dst[sx] += src[2 sx] + src[2 sx + 1], 8 at a time.
                for (; sx <= inW - 8; sx += 8)
                {
                    Vector256<float> lo = Vector256.Load(srcRow + 2 * sx), hi = Vector256.Load(srcRow + 2 * sx + 8);
                    // Per 128-bit lane: even and odd elements of lo then hi; the pair sums come out in
                    // 64-bit order 0, 2, 1, 3.
                    Vector256<float> pairs = Avx.Add(Avx.Shuffle(lo, hi, 0x88), Avx.Shuffle(lo, hi, 0xDD));
                    Vector256<float> ordered = Avx2.Permute4x64(pairs.AsDouble(), 0b11_01_10_00).AsSingle();
                    (Vector256.Load(dstRow + sx) + ordered).Store(dstRow + sx);
                }
                for (; sx < inW; sx++) dstRow[sx] += srcRow[2 * sx] + srcRow[2 * sx + 1];
                continue;
            }
            for (int ox = 0; ox < outW; ox++)
                dstRow[Math.Min((int)MathF.Floor(ox * scaleX), inW - 1)] += srcRow[ox];
        }
    }

    private void UpsampleAddPlane(int plane)
    {
        // PyTorch's 'nearest' with an output size: scale = (float)in / out in float32,
        // src = min(floor(dst * scale), in - 1). For exactly 2x sizes this is dst / 2.
        float scaleY = (float)inH / outH, scaleX = (float)inW / outW;
        float* src = a + (long)plane * inH * inW, dst = y + (long)plane * outH * outW;
        for (int oy = 0; oy < outH; oy++)
        {
            float* srcRow = src + (long)Math.Min((int)MathF.Floor(oy * scaleY), inH - 1) * inW;
            float* dstRow = dst + (long)oy * outW;
            if (outW == 2 * inW && Avx.IsSupported)
            {
                // Exactly 2x wide (the FPN case): each source value added to two neighbours.
                int sxv = 0;
                for (; sxv <= inW - 8; sxv += 8)
                {
                    Vector256<float> v = Vector256.Load(srcRow + sxv);
                    Vector256<float> low = Avx.UnpackLow(v, v), high = Avx.UnpackHigh(v, v);
                    float* d = dstRow + 2 * sxv;
                    (Vector256.Load(d) + Avx.Permute2x128(low, high, 0x20)).Store(d);
                    (Vector256.Load(d + 8) + Avx.Permute2x128(low, high, 0x31)).Store(d + 8);
                }
                for (; sxv < inW; sxv++)
                {
                    dstRow[2 * sxv] += srcRow[sxv];
                    dstRow[2 * sxv + 1] += srcRow[sxv];
                }
                continue;
            }
            for (int ox = 0; ox < outW; ox++)
                dstRow[ox] += srcRow[Math.Min((int)MathF.Floor(ox * scaleX), inW - 1)];
        }
    }
}
