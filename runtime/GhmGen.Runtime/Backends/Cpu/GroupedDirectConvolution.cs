// Grouped stride-1 and stride-2 convolution without im2col (ResNeXt's 3x3 g32/g64), AVX-512 kernels only.
// The GEMM path packs the implicit im2col matrix of each group: with M = out/groups = 4..32
// output channels per group (ResNeXt-101 64x4d: 4, 8, 16, 32), each packed value feeds only M
// multiply-adds, so the packing (K = in/groups * 9 rows per pixel) costs as much as the products
// (X-101 64x4d at 800x1216: its grouped 3x3s ran at 35-92 GFLOP/s on a Zen 4 with a 228 GFLOP/s
// peak). Here each work item copies its part of the group's input once into a zero-padded window
// and the micro-kernel reads the kernel taps straight from it:
//   padded row pr = iy + pad, column pc = ix + pad, Wp = W + 2 pad; the output is computed on the
//   flat grid q = oy * Wp + ox (ox < Wp, so the last 2 pad columns of each row are computed and
//   dropped), where tap (c, ky, kx) of output q reads window[c][q + ky * Wp + kx]: a constant
//   offset per depth step k = (c * kh + ky) * kw + kx, the weight panels' order. So 48
//   consecutive flat outputs are three plain (unaligned) vector loads per k, as in the GEMM
//   micro-kernel, with the offset table instead of a packed panel.
// Stride s > 1 (the first block of each ResNeXt stage) becomes the same by phases: the window holds,
// per channel, the s x s phase planes P[py][px][r][j] = padded[s r + py][s j + px] (width
// Wf = ceil(Wp / s), the flat grid's width), and tap (ky, kx) of output (oy, ox) reads
// P[ky % s][kx % s][oy + ky / s][ox + kx / s]: again one constant offset per depth step. (Through
// im2col, X-101 64x4d's three stride-2 grouped 3x3s ran at 40-101 GFLOP/s.)
// A tile (MR = the panels' 8 or 4 rows x 48 flat outputs) is summed in registers (bias first, the
// whole depth at once) into a small scratch, then its valid columns are copied to y with the
// residual and ReLU. Work items are (image, group, block of flat outputs); a block is sized so
// that its window (every channel of the group, the block's rows plus kh - 1) fits the scratch.
// The sums run in the GEMM path's order (bias, then k = 0 .. K-1, one fused multiply-add each; its
// k blocks only store and reload the partial sums), so results are bitwise those of
// GemmConvolution, except for a residual that is y itself with K > 192 (there the GEMM adds it first).
// Shapes: x [N, in, H, W], y and residual [N, out, OH, OW]; residual may be y.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/GroupedDirectConvolutionTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>Grouped stride-1 and stride-2 convolutions computed from a padded input window (no im2col packing).</summary>
[SkipLocalsInit]
internal sealed unsafe class GroupedDirectConvolution : IParallelWork
{
    /// <summary>Flat outputs per tile (three 16-float vectors).</summary>
    private const int TileColumns = 48;

    /// <summary>Most tiles per work item (a block of 480 flat outputs when the window allows).</summary>
    private const int MaxTilesPerBlock = 40;

    /// <summary>Largest depth (in/groups * kh * kw) taken: the size of the offset table.</summary>
    private const int MaxDepth = 4096;

    private readonly float*[] scratch;
    private readonly long scratchElements;

    // Depth step k of every work item of a call reads window[offsets[k] + (q - firstRow * Wf)] (filled by Prepare;
    // a pinned array, read through a pointer).
    private readonly int[] offsetTable = GC.AllocateArray<int>(MaxDepth, pinned: true);
    private readonly int* offsets;

    // Per-call arguments (set by Prepare, read by Execute on every worker).
    private PackedConvWeights conv = null!;
    private float* x, y, residual, panels, bias;
    private bool relu;
    private int height, width, outHeight, outWidth, flatWidth, flat, blockColumns, blocks;
    private long planeStride;

    /// <summary>Uses one block of <paramref name="scratchElements"/> floats per worker (the GEMM path's scratch).</summary>
    public GroupedDirectConvolution(float*[] scratch, long scratchElements)
    {
        this.scratch = scratch;
        this.scratchElements = scratchElements;
        offsets = (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(offsetTable));
    }

    /// <summary>
    /// Whether this path takes the convolution: groups above 1, stride 1 or 2, panels of the AVX-512
    /// kernel (8 rows, or the narrow kernel's 4), a depth the offset table holds, and a window of
    /// at least one tile that fits the scratch.
    /// </summary>
    public bool Applies(PackedConvWeights conv, int width)
    {
        ConvSpec s = conv.Spec;
        return s.Groups > 1 && s.Stride is 1 or 2 && conv.PanelRows is 8 or 4 && conv.Kernel.Kind == GemmKernelKind.Avx512
            && conv.Depth <= MaxDepth && Avx512F.IsSupported
            && WindowElements(s, FlatWidth(s, width), TileColumns) <= scratchElements;
    }

    // The flat grid's width: the padded width, or for stride s a phase plane's ceil(Wp / s).
    private static int FlatWidth(ConvSpec s, int width) => (width + 2 * s.Padding + s.Stride - 1) / s.Stride;

    // Floats of scratch for a block of `columns` flat outputs: the window over every channel (and phase) of a
    // group (rows covering the block's tiles plus (kh - 1) / s, and some for a block that starts mid-row;
    // Execute needs at most this many), then one MR x 48 tile.
    private static long WindowElements(ConvSpec s, int flatWidth, int columns) =>
        (long)(s.InChannels / s.Groups) * s.Stride * s.Stride * PlaneStride(WindowRows(s, flatWidth, columns), flatWidth)
        + 8 * TileColumns;

    // The most phase-plane rows a block of `columns` flat outputs reads (its tiles plus (kh - 1) / s rows, and
    // some for a block that starts mid-row).
    private static long WindowRows(ConvSpec s, int flatWidth, int columns) =>
        (columns + flatWidth - 1) / flatWidth + (s.Kernel - 1) / s.Stride + 3;

    private static long PlaneStride(long rows, int flatWidth) => (rows * flatWidth + 15) / 16 * 16;

    /// <summary>Sets up one call and returns the number of work items.</summary>
    public int Prepare(PackedConvWeights conv, TensorView xView, float* x, float* y, float* residual,
        float* panels, float* bias, bool relu)
    {
        this.conv = conv;
        this.x = x;
        this.y = y;
        this.residual = residual;
        this.panels = panels;
        this.bias = bias;
        this.relu = relu;
        ConvSpec s = conv.Spec;
        height = xView.H;
        width = xView.W;
        outHeight = s.OutputSize(height);
        outWidth = s.OutputSize(width);
        flatWidth = FlatWidth(s, width);
        flat = outHeight * flatWidth;
        int tiles = MaxTilesPerBlock;
        while (tiles > 1 && WindowElements(s, flatWidth, tiles * TileColumns) > scratchElements) tiles--;
        blockColumns = tiles * TileColumns;
        blocks = (flat + blockColumns - 1) / blockColumns;

        // One plane stride for every block (room for the most rows a block reads, WindowElements' count), so
        // that the offsets are the same for all work items.
        planeStride = PlaneStride(WindowRows(s, flatWidth, blockColumns), flatWidth);
        long channelStride = s.Stride * s.Stride * planeStride;
        int taps = s.Kernel * s.Kernel;
        for (int k = 0; k < conv.Depth; k++)
        {
            int c = k / taps, tap = k % taps, ky = tap / s.Kernel, kx = tap % s.Kernel;
            offsets[k] = (int)(c * channelStride + (ky % s.Stride * s.Stride + kx % s.Stride) * planeStride)
                + ky / s.Stride * flatWidth + kx / s.Stride;
        }
        return checked((int)((long)xView.N * s.Groups * blocks));
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int item, int worker)
    {
        ConvSpec s = conv.Spec;
        int block = item % blocks;
        item /= blocks;
        int g = item % s.Groups, n = item / s.Groups;
        int channels = s.InChannels / s.Groups, kernelSize = s.Kernel, pad = s.Padding, stride = s.Stride, wf = flatWidth;
        int mr = conv.PanelRows, m = conv.OutPerGroup, depth = conv.Depth;
        int q0 = block * blockColumns, q1 = Math.Min(flat, q0 + blockColumns);
        int tiles = (q1 - q0 + TileColumns - 1) / TileColumns;

        // The window: rows firstRow .. firstRow + rows - 1 of every phase plane of every channel of the group
        // (stride 1: one plane, the padded rows).
        int firstRow = q0 / wf;
        int reach = (kernelSize - 1) / stride;
        int lastRead = q0 + tiles * TileColumns - 1 + reach * (wf + 1);
        int rows = lastRead / wf - firstRow + 1;
        long planeStride = this.planeStride, channelStride = stride * stride * planeStride;
        float* window = scratch[worker];
        float* tile = window + channels * channelStride;
        float* image = x + ((long)n * s.InChannels + (long)g * channels) * height * width;
        for (int c = 0; c < channels; c++)
        {
            float* source = image + (long)c * height * width;
            // Input rows in memory order (row r of phase row py is input row (firstRow + r) s + py - pad), each
            // into its s phase planes.
            for (int r = 0; r < rows; r++)
                for (int py = 0; py < stride; py++)
                {
                    int iy = (firstRow + r) * stride + py - pad;
                    for (int px = 0; px < stride; px++)
                    {
                        float* line = window + c * channelStride + (py * stride + px) * planeStride + (long)r * wf;
                        if ((uint)iy >= (uint)height)
                            GemmConvolution.Clear(line, wf);
                        else
                            PhaseRow(source + (long)iy * width, line, px - pad, stride);
                    }
                }
        }

        float* aGroup = panels + g * conv.GroupStride;
        float* biasGroup = bias + (long)g * conv.PanelsPerGroup * mr;
        long outGroup = ((long)n * s.OutChannels + (long)g * m) * outHeight * outWidth;
        float* yGroup = y + outGroup;
        float* rGroup = residual == null ? null : residual + outGroup;
        for (int t = 0; t < tiles; t++)
        {
            int qt = q0 + t * TileColumns, columns = Math.Min(TileColumns, q1 - qt);
            float* b = window + (qt - firstRow * wf);
            for (int ip = 0; ip < conv.PanelsPerGroup; ip++)
            {
                float* a = aGroup + (long)ip * mr * depth;
                if (mr == 8) Tile8(depth, a, b, offsets, tile, biasGroup + ip * mr);
                else Tile4(depth, a, b, offsets, tile, biasGroup + ip * mr);
                int tileRows = Math.Min(mr, m - ip * mr);
                Scatter(tile, tileRows, ip * mr, qt, columns, yGroup, rGroup);
            }
        }
    }

    // One row of a phase plane: line[j] = row[s j + first] (first = px - pad) where that lies in the row, else 0,
    // for j < Wf (stride 1: the padded row); stride 1 by a copy, stride 2 by even-element permutes of 32 floats
    // while they lie in the row.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PhaseRow(float* row, float* line, int first, int stride)
    {
        int wf = flatWidth;
        int lo = first >= 0 ? 0 : Math.Min(wf, (-first + stride - 1) / stride);
        int hi = Math.Clamp((width - first + stride - 1) / stride, lo, wf); // j < hi <=> s j + first < W
        GemmConvolution.Clear(line, lo);
        int j = lo;
        if (stride == 1)
        {
            GemmConvolution.Copy(row + lo + first, line + lo, hi - lo);
            j = hi;
        }
        else if (stride == 2)
            for (; j + 16 <= hi && 2 * j + first + 32 <= width; j += 16) GemmConvolution.CopyEven16(row + 2 * j + first, line + j);
        for (; j < hi; j++) line[j] = row[stride * j + first];
        GemmConvolution.Clear(line + hi, wf - hi);
    }

    // Copies the tile's valid outputs (flat columns qt .. qt + columns - 1 whose ox < OW) of rows
    // firstRow .. firstRow + rowCount - 1 of the group to y, adding the residual, then ReLU.
    private void Scatter(float* tile, int rowCount, int firstRow, int qt, int columns, float* yGroup, float* rGroup)
    {
        int wf = flatWidth;
        long plane = (long)outHeight * outWidth;
        int q = qt, end = qt + columns;
        while (q < end)
        {
            int oy = q / wf, ox = q % wf;
            int run = Math.Min(end - q, wf - ox);
            int valid = Math.Min(run, outWidth - ox);
            if (valid > 0)
            {
                long at = (long)oy * outWidth + ox;
                for (int r = 0; r < rowCount; r++)
                {
                    float* source = tile + r * TileColumns + (q - qt);
                    long offset = (firstRow + r) * plane + at;
                    WriteRun(source, yGroup + offset, rGroup == null ? null : rGroup + offset, valid);
                }
            }
            q += run;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteRun(float* source, float* destination, float* residualRun, int count)
    {
        int j = 0;
        Vector512<float> zero = Vector512<float>.Zero;
        for (; j + 16 <= count; j += 16)
        {
            Vector512<float> v = Vector512.Load(source + j);
            if (residualRun != null) v += Vector512.Load(residualRun + j);
            if (relu) v = Avx512F.Max(v, zero);
            v.Store(destination + j);
        }
        for (; j < count; j++)
        {
            float v = source[j];
            if (residualRun != null) v += residualRun[j];
            if (relu) v = MathF.Max(v, 0f);
            destination[j] = v;
        }
    }

    /// <summary>c[8, 48] (row stride 48) = bias + sum_k a[k, 0..7] x b[offsets[k] + 0..47].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8(int depth, float* a, float* b, int* offsets, float* c, float* bias)
    {
        Vector512<float> c00 = Vector512.Create(bias[0]), c01 = c00, c02 = c00;
        Vector512<float> c10 = Vector512.Create(bias[1]), c11 = c10, c12 = c10;
        Vector512<float> c20 = Vector512.Create(bias[2]), c21 = c20, c22 = c20;
        Vector512<float> c30 = Vector512.Create(bias[3]), c31 = c30, c32 = c30;
        Vector512<float> c40 = Vector512.Create(bias[4]), c41 = c40, c42 = c40;
        Vector512<float> c50 = Vector512.Create(bias[5]), c51 = c50, c52 = c50;
        Vector512<float> c60 = Vector512.Create(bias[6]), c61 = c60, c62 = c60;
        Vector512<float> c70 = Vector512.Create(bias[7]), c71 = c70, c72 = c70;
        for (int k = 0; k < depth; k++)
        {
            float* p = b + offsets[k];
            Vector512<float> b0 = Vector512.Load(p), b1 = Vector512.Load(p + 16), b2 = Vector512.Load(p + 32);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01); c02 = Avx512F.FusedMultiplyAdd(ar, b2, c02);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11); c12 = Avx512F.FusedMultiplyAdd(ar, b2, c12);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21); c22 = Avx512F.FusedMultiplyAdd(ar, b2, c22);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31); c32 = Avx512F.FusedMultiplyAdd(ar, b2, c32);
            ar = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ar, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ar, b1, c41); c42 = Avx512F.FusedMultiplyAdd(ar, b2, c42);
            ar = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ar, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ar, b1, c51); c52 = Avx512F.FusedMultiplyAdd(ar, b2, c52);
            ar = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(ar, b0, c60); c61 = Avx512F.FusedMultiplyAdd(ar, b1, c61); c62 = Avx512F.FusedMultiplyAdd(ar, b2, c62);
            ar = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(ar, b0, c70); c71 = Avx512F.FusedMultiplyAdd(ar, b1, c71); c72 = Avx512F.FusedMultiplyAdd(ar, b2, c72);
            a += 8;
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32);
        c10.Store(c + 48); c11.Store(c + 64); c12.Store(c + 80);
        c20.Store(c + 96); c21.Store(c + 112); c22.Store(c + 128);
        c30.Store(c + 144); c31.Store(c + 160); c32.Store(c + 176);
        c40.Store(c + 192); c41.Store(c + 208); c42.Store(c + 224);
        c50.Store(c + 240); c51.Store(c + 256); c52.Store(c + 272);
        c60.Store(c + 288); c61.Store(c + 304); c62.Store(c + 320);
        c70.Store(c + 336); c71.Store(c + 352); c72.Store(c + 368);
    }

    /// <summary>c[4, 48] (row stride 48) = bias + sum_k a[k, 0..3] x b[offsets[k] + 0..47] (the narrow kernel's panels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4(int depth, float* a, float* b, int* offsets, float* c, float* bias)
    {
        Vector512<float> c00 = Vector512.Create(bias[0]), c01 = c00, c02 = c00;
        Vector512<float> c10 = Vector512.Create(bias[1]), c11 = c10, c12 = c10;
        Vector512<float> c20 = Vector512.Create(bias[2]), c21 = c20, c22 = c20;
        Vector512<float> c30 = Vector512.Create(bias[3]), c31 = c30, c32 = c30;
        for (int k = 0; k < depth; k++)
        {
            float* p = b + offsets[k];
            Vector512<float> b0 = Vector512.Load(p), b1 = Vector512.Load(p + 16), b2 = Vector512.Load(p + 32);
            Vector512<float> ar = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ar, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ar, b1, c01); c02 = Avx512F.FusedMultiplyAdd(ar, b2, c02);
            ar = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ar, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ar, b1, c11); c12 = Avx512F.FusedMultiplyAdd(ar, b2, c12);
            ar = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ar, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ar, b1, c21); c22 = Avx512F.FusedMultiplyAdd(ar, b2, c22);
            ar = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ar, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ar, b1, c31); c32 = Avx512F.FusedMultiplyAdd(ar, b2, c32);
            a += 4;
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32);
        c10.Store(c + 48); c11.Store(c + 64); c12.Store(c + 80);
        c20.Store(c + 96); c21.Store(c + 112); c22.Store(c + 128);
        c30.Store(c + 144); c31.Store(c + 160); c32.Store(c + 176);
    }
}
