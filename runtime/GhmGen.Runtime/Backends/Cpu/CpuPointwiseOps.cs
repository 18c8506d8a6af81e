// The CPU backend's non-convolution ops, as parallel work items:
// - elementwise over flat arrays of any length, in chunks of 16384 floats (SIMD, scalar tail):
//   add: y = a + b, add-relu: y = max(a + b, 0), relu: y = max(x, 0), sigmoid: y = 1 / (1 + exp(-x))
//   (y may alias an input);
// - max-pool, one item per (n, c) plane: x [N, C, H, W] -> y [N, C, OH, OW], square window,
//   padding counted as -infinity (separable: column max of the window rows, then row max);
// - nearest upsample-add, one item per (n, c) plane: lower[n, c, y, x] += upper[n, c,
//   floor(y * inH / outH), floor(x * inW / outW)] (PyTorch 'nearest'; AVX path for exactly 2x wide).
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
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; i <= count - Vector512<float>.Count; i += Vector512<float>.Count)
                        (Vector512<float>.One / (Vector512<float>.One + Vector512.Exp(-Vector512.Load(pa + i)))).Store(py + i);
                }
                else if (Vector256.IsHardwareAccelerated)
                {
                    for (; i <= count - Vector256<float>.Count; i += Vector256<float>.Count)
                        (Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-Vector256.Load(pa + i)))).Store(py + i);
                }
                for (; i < count; i++) py[i] = 1f / (1f + MathF.Exp(-pa[i]));
                break;
            default:
                throw new InvalidOperationException($"{op} is not elementwise");
        }
    }

    // Separable: per output row, the column-wise max of the window's input rows (contiguous, SIMD)
    // into a row buffer, then the max over each output's window columns in that buffer.
    private void MaxPoolPlane(int plane)
    {
        float* src = a + (long)plane * inH * inW, dst = y + (long)plane * outH * outW;
        const int MaxRow = 8192;
        if (inW > MaxRow)
        {
            MaxPoolPlaneDirect(src, dst);
            return;
        }
        float* columnMax = stackalloc float[inW];
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
            for (int ox = 0; ox < outW; ox++)
            {
                int x0 = ox * stride - padding;
                int kx0 = Math.Max(0, -x0), kx1 = Math.Min(kernelSize, inW - x0);
                float best = float.NegativeInfinity;
                for (int kx = kx0; kx < kx1; kx++) best = Max(best, columnMax[x0 + kx]);
                outRow[ox] = best;
            }
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

    private void UpsampleAddPlane(int plane)
    {
        float* src = a + (long)plane * inH * inW, dst = y + (long)plane * outH * outW;
        for (int oy = 0; oy < outH; oy++)
        {
            float* srcRow = src + (long)oy * inH / outH * inW;
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
            // sx = floor(ox * inW / outW), kept incrementally: numerator = ox * inW - sx * outW.
            int sx = 0;
            long numerator = 0;
            for (int ox = 0; ox < outW; ox++)
            {
                dstRow[ox] += srcRow[sx];
                numerator += inW;
                while (numerator >= outW)
                {
                    numerator -= outW;
                    sx++;
                }
            }
        }
    }
}
