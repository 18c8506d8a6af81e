// Convolution over small maps: at most MaxColumns (48) output pixels over the whole batch, one group,
// 8-row weight panels (the AVX-512 kernel's layout) or 6-row ones (the AVX2 kernel's: each 256-bit load
// then also reads the next depth step's first two rows, whose lanes are dropped, and a panel's last step
// is a masked load). A GEMV-like pass reads each packed weight
// panel once per 8 output pixels (from L2 after the first: a panel is 8 x K floats, 74 KB for a
// 3x3 over 256 channels) and keeps one 8-row accumulator per output pixel, where the GEMM's
// 48-column tile would compute mostly padding and repack the input per row chunk (P6/P7 of the
// head at every input size, C4/C5 and P4/P5 at small inputs: a 3x3 256->256 on a 4x6 map went
// from ~1.0 ms on the GEMM to ~0.2 ms here). From about 64 pixels on the GEMM is faster again (a
// 3x3 256->256 on 8x8: 0.57 ms here; on 8x12, 96 pixels, the GEMM takes 0.48 ms), hence 48.
// With the AVX-512 kernel CpuBackend now runs it only up to 8 pixels (SharedInputConvolution.MinimumColumns):
// from 9 on, the shared-input GEMM's 8x16 / 8x32 tiles are faster; up to 8, the last partial group
// runs with 4, 2 or 1 accumulators.
// Two phases of work items: the implicit im2col columns [depth, stride] (stride = the pixel count
// rounded up to 8, unused columns zero) in blocks of rows, then one item per weight panel.
// Shapes: x [N, C, H, W] -> y [N, O, OH, OW], N*OH*OW <= MaxColumns; bias, residual and ReLU fused.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/SmallMapConvolutionTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using GhmGen.Backends;

namespace GhmGen.Backends.Cpu;

/// <summary>Convolutions whose whole output has at most <see cref="MaxColumns"/> pixels.</summary>
internal sealed unsafe class SmallMapConvolution : IParallelWork, IDisposable
{
    /// <summary>Most output pixels (over the batch) this path takes.</summary>
    public const int MaxColumns = 48;

    private const int Group = 8;          // output pixels per accumulator set
    private const int GatherRows = 512;   // im2col rows per gather item
    private float* columns;     // im2col: [depth, stride], unused columns zero
    private long capacity;
    private PackedConvWeights conv = null!;
    private float* x, panels, bias, y, residual;
    private bool relu, gathering;
    private int count, stride, pixels, depth, outChannels, inHeight, inWidth;
    // The panels' MR (8: AVX-512, 6: AVX2), and the depth up to which a 256-bit load of one depth step's rows
    // stays inside the panels (MR 6: the load also reads the next step's first two rows, so the last step of
    // a panel is loaded with a mask).
    private int rows, fullLoads;
    private int* columnImage, columnY, columnX; // per output pixel: image, first input row and column of its window

    /// <summary>Whether a convolution of this shape takes this path.</summary>
    public static bool Applies(PackedConvWeights conv, int batch, int outHeight, int outWidth) =>
        conv.Spec.Groups == 1 && conv.PanelRows is 8 or 6 && (long)batch * outHeight * outWidth <= MaxColumns && Avx.IsSupported;

    /// <summary>Sets up one call; returns the items of the gather phase (then call <see cref="PrepareProducts"/>).</summary>
    public int Prepare(PackedConvWeights conv, TensorView xView, float* x, float* y, float* residual, float* panels, float* bias, bool relu)
    {
        ConvSpec s = conv.Spec;
        int oh = s.OutputSize(xView.H), ow = s.OutputSize(xView.W);
        this.conv = conv;
        this.x = x;
        this.panels = panels;
        this.bias = bias;
        this.y = y;
        this.residual = residual;
        this.relu = relu;
        pixels = oh * ow;
        count = xView.N * pixels;
        stride = (count + Group - 1) / Group * Group;
        depth = conv.Depth;
        rows = conv.PanelRows;
        fullLoads = rows == Group ? depth : depth - 1;
        outChannels = s.OutChannels;
        inHeight = xView.H;
        inWidth = xView.W;
        long needed = (long)depth * stride;
        if (needed > capacity)
        {
            NativeMemory.AlignedFree(columns);
            columns = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
            capacity = needed;
        }
        if (columnImage == null)
        {
            columnImage = (int*)NativeMemory.Alloc(3 * MaxColumns, sizeof(int));
            columnY = columnImage + MaxColumns;
            columnX = columnY + MaxColumns;
        }
        for (int c = 0; c < count; c++)
        {
            int p = c % pixels;
            columnImage[c] = c / pixels;
            columnY[c] = p / ow * s.Stride - s.Padding;
            columnX[c] = p % ow * s.Stride - s.Padding;
        }
        gathering = true;
        return (depth + GatherRows - 1) / GatherRows;
    }

    /// <summary>Switches to the product phase; returns its items (weight panels).</summary>
    public int PrepareProducts()
    {
        gathering = false;
        return conv.PanelsPerGroup;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (gathering) Gather(item);
        else Products(item);
    }

    // im2col rows item * GatherRows .. + GatherRows.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Gather(int item)
    {
        ConvSpec s = conv.Spec;
        int k = s.Kernel, kk = k * k;
        long plane = (long)inHeight * inWidth, imageStride = (long)s.InChannels * plane;
        int end = Math.Min(depth, (item + 1) * GatherRows);
        for (int d = item * GatherRows; d < end; d++)
        {
            int ci = d / kk, ky = d / k % k, kx = d % k;
            float* source = x + ci * plane;
            float* row = columns + (long)d * stride;
            for (int c = 0; c < count; c++)
            {
                int iy = columnY[c] + ky, ix = columnX[c] + kx;
                row[c] = (uint)iy < (uint)inHeight && (uint)ix < (uint)inWidth ? source[columnImage[c] * imageStride + (long)iy * inWidth + ix] : 0f;
            }
            for (int c = count; c < stride; c++) row[c] = 0f;
        }
    }

    // Output rows of one weight panel, 8 output pixels at a time; a last group of fewer pixels
    // runs with as many accumulators as it has pixels (4, 2, 1 at a time, the depth split over
    // 2 or 4 partial sums so that the FMA chains stay independent), not 8 of which most are zero.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Products(int panel)
    {
        float* w = panels + (long)panel * this.rows * depth;
        Vector256<float>* acc = stackalloc Vector256<float>[Group];
        int firstRow = panel * this.rows, rows = Math.Min(this.rows, outChannels - firstRow);
        for (int c0 = 0; c0 < count;)
        {
            int width = count - c0 >= 8 ? 8 : count - c0 >= 4 ? 4 : count - c0 >= 2 ? 2 : 1;
            float* col = columns + c0;
            if (width == 8) Columns8(w, col, acc);
            else if (width == 4) Columns4(w, col, acc);
            else if (width == 2) Columns2(w, col, acc);
            else Columns1(w, col, acc);
            for (int c = c0; c < c0 + width; c++)
            {
                int n = c / pixels, p = c % pixels;
                float* values = (float*)(acc + (c - c0));
                for (int r = 0; r < rows; r++)
                {
                    int o = firstRow + r;
                    long at = ((long)n * outChannels + o) * pixels + p;
                    float v = values[r] + bias[o];
                    if (residual != null) v += residual[at];
                    y[at] = relu ? MathF.Max(v, 0f) : v;
                }
            }
            c0 += width;
        }
    }

    // The rows of depth step d of the panel at w: a plain 256-bit load up to fullLoads, masked after it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector256<float> Load(float* w, int d) =>
        d < fullLoads ? Avx.LoadVector256(w + (long)d * rows) : Avx.MaskLoad(w + (long)d * rows, LastRows());

    private Vector256<float> LastRows() => Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(rows)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Columns8(float* w, float* col, Vector256<float>* acc)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < depth; d++, col += stride)
        {
            Ahead(w, d);
            Vector256<float> wv = Load(w, d);
            a0 = MultiplyAdd(wv, col[0], a0);
            a1 = MultiplyAdd(wv, col[1], a1);
            a2 = MultiplyAdd(wv, col[2], a2);
            a3 = MultiplyAdd(wv, col[3], a3);
            a4 = MultiplyAdd(wv, col[4], a4);
            a5 = MultiplyAdd(wv, col[5], a5);
            a6 = MultiplyAdd(wv, col[6], a6);
            a7 = MultiplyAdd(wv, col[7], a7);
        }
        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Columns4(float* w, float* col, Vector256<float>* acc)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int d = 0, step = rows;
        for (; d + 2 <= fullLoads; d += 2, col += 2 * stride)
        {
            Ahead(w, d);
            Vector256<float> wv = Avx.LoadVector256(w + (long)d * step), wu = Avx.LoadVector256(w + (long)(d + 1) * step);
            a0 = MultiplyAdd(wv, col[0], a0);
            a1 = MultiplyAdd(wv, col[1], a1);
            a2 = MultiplyAdd(wv, col[2], a2);
            a3 = MultiplyAdd(wv, col[3], a3);
            b0 = MultiplyAdd(wu, col[stride], b0);
            b1 = MultiplyAdd(wu, col[stride + 1], b1);
            b2 = MultiplyAdd(wu, col[stride + 2], b2);
            b3 = MultiplyAdd(wu, col[stride + 3], b3);
        }
        for (; d < depth; d++, col += stride)
        {
            Vector256<float> wv = Load(w, d);
            a0 = MultiplyAdd(wv, col[0], a0);
            a1 = MultiplyAdd(wv, col[1], a1);
            a2 = MultiplyAdd(wv, col[2], a2);
            a3 = MultiplyAdd(wv, col[3], a3);
        }
        acc[0] = a0 + b0; acc[1] = a1 + b1; acc[2] = a2 + b2; acc[3] = a3 + b3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Columns2(float* w, float* col, Vector256<float>* acc)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, b0 = a0, b1 = a0, e0 = a0, e1 = a0, f0 = a0, f1 = a0;
        int d = 0, step = rows;
        for (; d + 4 <= fullLoads; d += 4, col += 4 * stride)
        {
            float* wd = w + (long)d * step;
            Ahead(w, d);
            Ahead(w, d + 2);
            Vector256<float> w0 = Avx.LoadVector256(wd), w1 = Avx.LoadVector256(wd + step), w2 = Avx.LoadVector256(wd + 2 * step), w3 = Avx.LoadVector256(wd + 3 * step);
            a0 = MultiplyAdd(w0, col[0], a0);
            a1 = MultiplyAdd(w0, col[1], a1);
            b0 = MultiplyAdd(w1, col[stride], b0);
            b1 = MultiplyAdd(w1, col[stride + 1], b1);
            e0 = MultiplyAdd(w2, col[2 * stride], e0);
            e1 = MultiplyAdd(w2, col[2 * stride + 1], e1);
            f0 = MultiplyAdd(w3, col[3 * stride], f0);
            f1 = MultiplyAdd(w3, col[3 * stride + 1], f1);
        }
        for (; d < depth; d++, col += stride)
        {
            Vector256<float> wv = Load(w, d);
            a0 = MultiplyAdd(wv, col[0], a0);
            a1 = MultiplyAdd(wv, col[1], a1);
        }
        acc[0] = (a0 + b0) + (e0 + f0); acc[1] = (a1 + b1) + (e1 + f1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Columns1(float* w, float* col, Vector256<float>* acc)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        int d = 0, step = rows;
        for (; d + 4 <= fullLoads; d += 4, col += 4 * stride)
        {
            float* wd = w + (long)d * step;
            Ahead(w, d);
            Ahead(w, d + 2);
            a0 = MultiplyAdd(Avx.LoadVector256(wd), col[0], a0);
            a1 = MultiplyAdd(Avx.LoadVector256(wd + step), col[stride], a1);
            a2 = MultiplyAdd(Avx.LoadVector256(wd + 2 * step), col[2 * stride], a2);
            a3 = MultiplyAdd(Avx.LoadVector256(wd + 3 * step), col[3 * stride], a3);
        }
        for (; d < depth; d++, col += stride)
            a0 = MultiplyAdd(Load(w, d), col[0], a0);
        acc[0] = (a0 + a1) + (a2 + a3);
    }

    // Depth steps ahead that the products prefetch a panel (8 rows: 2 KB). Each panel is read once per
    // call from memory, and the hardware prefetcher alone kept these loops at ~15 GB/s on a Zen 4 that
    // reads 26-30 GB/s: R-50's layer4/P6/P7 at 64x96 (forward-profile, alternated 3 times) took
    // 5.26-6.11 ms per forward with it against 5.73-8.08 ms without; 32 and 128 steps were no better.
    private const int AheadSteps = 64;

    // Prefetches the panel AheadSteps depth steps past step d (past its end: harmless, prefetches never fault).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Ahead(float* w, int d)
    {
        if (Sse.IsSupported) Sse.Prefetch0(w + (long)(d + AheadSteps) * rows);
    }

    private static Vector256<float> MultiplyAdd(Vector256<float> w, float x, Vector256<float> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(w, Vector256.Create(x), acc) : Avx.Add(Avx.Multiply(w, Vector256.Create(x)), acc);

    /// <summary>Frees the column buffer.</summary>
    public void Dispose()
    {
        NativeMemory.AlignedFree(columns);
        NativeMemory.Free(columnImage);
        columns = null;
        columnImage = columnY = columnX = null;
        capacity = 0;
    }
}
