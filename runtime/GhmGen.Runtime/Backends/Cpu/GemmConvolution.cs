// Convolution as a blocked GEMM, per image n and group g:
//   y[n, g*M + m, p] = act(bias[m] + sum_k A_g[m, k] * X_g[k, p] (+ residual[n, g*M + m, p]))
// with M = out/groups, K = in/groups*kh*kw, p over the OH*OW output pixels, and the implicit
// im2col matrix X_g[(c*kh + ky)*kw + kx, (oy, ox)] = x[n, g*in/groups + c, oy*s - pad + ky,
// ox*s - pad + kx] (zero outside). No im2col buffer is built: each worker packs only a
// KC x NC block of X_g into its scratch, as NR-wide panels (panel[k*NR + j]), then runs the
// MR x NR micro-kernel over the weight panels (packed once, PackedConvWeights). A 1x1 stride-1
// convolution packs plain copies of the input rows (out[o, hw] = W[o, c] * X[c, hw]).
// Blocking (GotoBLAS order): column block NC = 10 NR pixels (one work item), k block KC = 256
// (a 256 x 48 input panel = 48 KB, read from L2; K <= 192 is one block), row block MC = 256
// output channels (a 256 x 256 weight block = 256 KB stays in L2). KC was 128 (the panel in L1):
// 256 passes half as often over each output tile, which for large K is read and written once per
// k block; the 1x1 convolutions of R-50 with K >= 256 took ~9% less time on a Zen 4 (bench/README).
// 1x1 convolutions with K > 192 instead run the whole depth in one block over fewer columns (as many
// NR panels as fit the same scratch: K = 1024 two, K = 2048 one), each weight panel (MR x K, streamed
// from L3) over them: every output tile is then loaded and stored once instead of once per k block
// (X-101-64x4d's 45 1x1 1024-1024s at 50x76, ~45% of its forward, 38.8-40.9 -> 37.7-38.0 ms each on a
// Zen 4, bench/README). The order of the additions does not depend on KC, so neither do the results. Work items are (image, group, column block, row chunk);
// rows are split into chunks only when there are too few items to keep every worker busy.
// Shapes: x [N, in, H, W], y and residual [N, out, OH, OW]. The residual may be y itself
// (y += conv(x)): then each work item first adds the bias to its part of y and accumulates onto it.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one GEMM convolution, run as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class GemmConvolution : IParallelWork
{
    /// <summary>
    /// KC of the shared-input and concatenated GEMM paths: k steps per packed block.
    /// </summary>
    public const int DepthBlock = 128;

    /// <summary>KC of this class's own loop: k steps per packed input block when K exceeds <see cref="SingleDepthBlock"/>.</summary>
    public const int LargeDepthBlock = 256;

    /// <summary>
    /// Largest K run as one k block (1.5 KC). Up to it, a residual that is the output itself gives
    /// bitwise the result of a separate residual (the generator plans such in-place writes only up to it).
    /// </summary>
    public const int SingleDepthBlock = DepthBlock * 3 / 2;

    /// <summary>NR multiples per column block (NC = this * NR).</summary>
    public const int PanelsPerColumnBlock = 10;

    /// <summary>
    /// Rows ahead that a 1x1 stride-1 convolution's packing prefetches (conv-table 5 2 1x1 on a Zen 4,
    /// R-50's 1x1s at 800x1216, alternated 3 times: 462-470 ms against 476-482 without; 4 and 16 no better).
    /// </summary>
    private const int PrefetchDistance = 8;

    /// <summary>MC: output channels per weight block that stays in L2.</summary>
    public const int RowBlock = 256;

    /// <summary>Largest MR x NR tile of any kernel, for the edge-tile scratch.</summary>
    private const int MaxTileElements = 1024;

    private readonly GemmKernel kernel;
    private readonly float*[] scratch;

    // Per-call arguments (set by Prepare, read by Execute on every worker).
    private PackedConvWeights conv = null!;
    private float* x, y, residual, panels, bias;
    private int inChannels, height, width, outHeight, outWidth, pixels;
    private int columnBlocks, rowChunks, panelsPerChunk, columnBlock, depthBlock;
    private bool relu, wholeDepth;

    /// <summary>Uses <paramref name="kernel"/> and one scratch block of <see cref="ScratchElements"/> per worker.</summary>
    public GemmConvolution(GemmKernel kernel, float*[] scratch)
    {
        this.kernel = kernel;
        this.scratch = scratch;
    }

    /// <summary>Floats of scratch each worker needs.</summary>
    public static long ScratchElements(GemmKernel kernel) => (long)Math.Max(LargeDepthBlock, SingleDepthBlock) * PanelsPerColumnBlock * kernel.Columns;

    /// <summary>Sets up one call and returns the number of work items.</summary>
    public int Prepare(PackedConvWeights conv, TensorView xView, float* x, float* y, float* residual,
        float* panels, float* bias, bool relu, int workers)
    {
        this.conv = conv;
        this.x = x;
        this.y = y;
        this.residual = residual;
        this.panels = panels;
        this.bias = bias;
        this.relu = relu;
        ConvSpec s = conv.Spec;
        inChannels = s.InChannels;
        height = xView.H;
        width = xView.W;
        outHeight = s.OutputSize(height);
        outWidth = s.OutputSize(width);
        pixels = outHeight * outWidth;
        int nr = kernel.Columns;
        int depth = conv.Depth;
        // A 1x1 convolution whose whole depth fits the scratch as one input panel or more runs in one k block (see the top).
        long budget = ScratchElements(kernel);
        wholeDepth = depth > SingleDepthBlock && s.Kernel == 1 && (long)depth * nr <= budget;
        depthBlock = depth <= SingleDepthBlock || wholeDepth ? depth : LargeDepthBlock;
        columnBlock = (wholeDepth ? (int)Math.Min(PanelsPerColumnBlock, budget / ((long)depth * nr)) : PanelsPerColumnBlock) * nr;
        columnBlocks = (pixels + columnBlock - 1) / columnBlock;
        long images = (long)xView.N * s.Groups;
        long items = images * columnBlocks;
        int wanted = 4 * workers;
        if (items < wanted)
        {
            // Small feature maps: narrower column blocks first (no work is repeated) ...
            long blocksPerImage = (wanted + images - 1) / images;
            int width = (int)((pixels + blocksPerImage - 1) / blocksPerImage);
            columnBlock = Math.Min(columnBlock, Math.Max(nr, (width + nr - 1) / nr * nr));
            columnBlocks = (pixels + columnBlock - 1) / columnBlock;
            items = images * columnBlocks;
        }
        // ... then output-channel chunks of at least 8 panels; each chunk packs the same input
        // block again, so they stay few.
        int maxChunks = Math.Max(1, conv.PanelsPerGroup / 8);
        rowChunks = items >= wanted ? 1 : (int)Math.Min(maxChunks, (wanted + items - 1) / items);
        panelsPerChunk = (conv.PanelsPerGroup + rowChunks - 1) / rowChunks;
        rowChunks = (conv.PanelsPerGroup + panelsPerChunk - 1) / panelsPerChunk;
        return checked((int)(items * rowChunks));
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int item, int worker)
    {
        GemmKernel kernel = conv.Kernel;
        int mr = kernel.Rows, nr = kernel.Columns;
        int chunk = item % rowChunks;
        item /= rowChunks;
        int block = item % columnBlocks;
        item /= columnBlocks;
        ConvSpec s = conv.Spec;
        int g = item % s.Groups, n = item / s.Groups;
        int m = conv.OutPerGroup, depth = conv.Depth;
        int firstColumn = block * columnBlock, columns = Math.Min(columnBlock, pixels - firstColumn);
        int columnPanels = (columns + nr - 1) / nr;
        int firstPanel = chunk * panelsPerChunk, endPanel = Math.Min(conv.PanelsPerGroup, firstPanel + panelsPerChunk);
        // Row blocks of MC rows whose weight block stays in L2 while the column panels pass; with the whole depth
        // in one block, one panel at a time (streamed from L3 over the item's few column panels).
        int panelsPerRowBlock = wholeDepth ? 1 : Math.Max(1, RowBlock / mr);

        float* image = x + ((long)n * inChannels + (long)g * (inChannels / s.Groups)) * height * width;
        long outStart = ((long)n * s.OutChannels + (long)g * m) * pixels + firstColumn;
        float* yGroup = y + outStart;
        // residual == y: with one k block each tile reads its residual before writing it, so the
        // plain path gives bitwise the result of a separate residual; with several, the partial sums
        // would overwrite it, so y then starts as residual + bias and every block accumulates.
        bool inPlace = residual == y && depth > SingleDepthBlock;
        float* rGroup = residual == null || inPlace ? null : residual + outStart;
        if (inPlace)
        {
            // y already holds the residual: add the bias now, then accumulate (no First mode).
            for (int row = firstPanel * mr; row < Math.Min(m, endPanel * mr); row++)
            {
                float rowBias = bias[(long)g * conv.PanelsPerGroup * mr + row];
                float* line = yGroup + (long)row * pixels;
                for (int j = 0; j < columns; j++) line[j] += rowBias;
            }
        }
        float* aGroup = panels + g * conv.GroupStride;
        float* biasGroup = bias + (long)g * conv.PanelsPerGroup * mr;
        float* packed = scratch[worker];
        float* edge = stackalloc float[2 * MaxTileElements];

        for (int k0 = 0; k0 < depth; k0 += depthBlock)
        {
            int kc = Math.Min(depthBlock, depth - k0);
            PackInput(packed, image, k0, kc, firstColumn, columns, columnPanels * nr);
            int mode = (k0 == 0 && !inPlace ? GemmMicroKernels.First : 0)
                | (k0 + kc == depth ? GemmMicroKernels.Last | (relu ? GemmMicroKernels.Relu : 0) : 0);
            for (int p0 = firstPanel; p0 < endPanel; p0 += panelsPerRowBlock)
            {
                int p1 = Math.Min(endPanel, p0 + panelsPerRowBlock);
                for (int jp = 0; jp < columnPanels; jp++)
                {
                    float* b = packed + (long)jp * kc * nr;
                    int tileColumns = Math.Min(nr, columns - jp * nr);
                    for (int ip = p0; ip < p1; ip++)
                    {
                        float* a = aGroup + (long)ip * mr * depth + (long)k0 * mr;
                        int tileRows = Math.Min(mr, m - ip * mr);
                        long at = (long)ip * mr * pixels + jp * nr;
                        float* c = yGroup + at;
                        float* r = rGroup == null ? null : rGroup + at;
                        if (tileRows == mr && tileColumns == nr)
                            kernel.Tile(kc, a, b, c, pixels, biasGroup + ip * mr, r, mode);
                        else
                            GemmMicroKernels.EdgeTile(kernel.Tile, mr, nr, kc, a, b, c, pixels, biasGroup + ip * mr, r, mode, tileRows, tileColumns, edge, edge + MaxTileElements);
                    }
                }
            }
        }
    }

    // Packs rows k0 .. k0+kc of the implicit im2col matrix, output pixels firstColumn ..
    // firstColumn+columns, as NR-wide panels: dst[(q / NR) * kc * NR + (k - k0) * NR + q % NR];
    // columns past `columns` (up to paddedColumns) are zero. The columns are first cut into runs
    // that stay in one panel and one output row (the same for every k); each row k then copies
    // or gathers one input-row segment per run.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PackInput(float* dst, float* image, int k0, int kc, int firstColumn, int columns, int paddedColumns)
    {
        ConvSpec s = conv.Spec;
        int kernelSize = s.Kernel, taps = kernelSize * kernelSize, stride = s.Stride, pad = s.Padding;
        int nr = kernel.Columns;
        long panelStride = (long)kc * nr;
        long plane = (long)height * width;

        // Runs: destination offset (panel part), output row, output column, length.
        const int MaxRuns = 256;
        int* runDst = stackalloc int[MaxRuns];
        int* runY = stackalloc int[MaxRuns];
        int* runX = stackalloc int[MaxRuns];
        int* runLength = stackalloc int[MaxRuns];
        int runs = 0;
        {
            int oy = firstColumn / outWidth, ox = firstColumn % outWidth, q = 0;
            while (q < columns)
            {
                if (runs == MaxRuns) break;
                int j = q % nr;
                int run = Math.Min(nr - j, Math.Min(columns - q, outWidth - ox));
                runDst[runs] = (int)(q / nr * panelStride + j);
                runY[runs] = oy;
                runX[runs] = ox;
                runLength[runs] = run;
                runs++;
                q += run;
                ox += run;
                if (ox == outWidth)
                {
                    ox = 0;
                    oy++;
                }
            }
            if (q < columns)
            {
                PackInputByElement(dst, image, k0, kc, firstColumn, columns, paddedColumns);
                return;
            }
        }

        bool pointwise = taps == 1 && stride == 1 && pad == 0 && Sse.IsSupported;
        for (int kk = 0; kk < kc; kk++)
        {
            int k = k0 + kk;
            int channel = k / taps, tap = k % taps, ky = tap / kernelSize, kx = tap % kernelSize;
            float* source = image + channel * plane;
            float* rowDst = dst + (long)kk * nr;
            if (pointwise && k + PrefetchDistance < conv.Depth)
            {
                // A 1x1 stride-1 block's rows are runs of ~2 KB from planes far apart: the hardware
                // prefetcher does not ramp up on them, so ask for a later row's run now (past the
                // block's end: the next block's first rows).
                float* ahead = source + PrefetchDistance * plane + firstColumn;
                for (int line = 0; line < columns; line += 16) Sse.Prefetch0(ahead + line);
            }
            for (int r = 0; r < runs; r++)
            {
                float* d = rowDst + runDst[r];
                int run = runLength[r];
                int iy = runY[r] * stride - pad + ky;
                if ((uint)iy >= (uint)height)
                {
                    Clear(d, run);
                    continue;
                }
                float* row = source + (long)iy * width;
                int ix0 = runX[r] * stride - pad + kx;
                if (stride == 1)
                {
                    // valid t: 0 <= ix0 + t < width
                    int lo = Math.Clamp(-ix0, 0, run), hi = Math.Clamp(width - ix0, lo, run);
                    Clear(d, lo);
                    Copy(row + ix0 + lo, d + lo, hi - lo);
                    Clear(d + hi, run - hi);
                }
                else
                {
                    int t = 0;
                    if (stride == 2 && Avx512F.IsSupported)
                    {
                        // Even elements of 32 contiguous floats, while all 32 lie in the row.
                        for (; t < run && ix0 + 2 * t < 0; t++) d[t] = 0f;
                        for (; t + 16 <= run && ix0 + 2 * t + 32 <= width; t += 16) CopyEven16(row + ix0 + 2 * t, d + t);
                    }
                    for (; t < run; t++)
                    {
                        int ix = ix0 + t * stride;
                        d[t] = (uint)ix < (uint)width ? row[ix] : 0f;
                    }
                }
            }
            // Zero columns past the end, up to the last panel's width.
            for (int q = columns; q < paddedColumns; q++) rowDst[q / nr * panelStride + q % nr] = 0f;
        }
    }

    /// <summary>destination[0 .. 16) = source[0, 2, .., 30] (AVX-512: one two-source permute of 32 floats).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void CopyEven16(float* source, float* destination) =>
        Avx512F.PermuteVar16x32x2(Vector512.Load(source), Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            Vector512.Load(source + 16)).Store(destination);

    /// <summary>destination[0 .. count) = source[0 .. count) (short runs: inline vector moves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Copy(float* source, float* destination, int count)
    {
        int t = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; t + 16 <= count; t += 16) Vector512.Load(source + t).Store(destination + t);
        for (; t + 8 <= count; t += 8) Vector256.Load(source + t).Store(destination + t);
        for (; t < count; t++) destination[t] = source[t];
    }

    /// <summary>
    /// Prefetches into L2 the weight block that follows panel <paramref name="ip"/>'s block at depth
    /// <paramref name="k0"/> (<paramref name="kc"/> deep) in a loop over the panels
    /// <paramref name="firstPanel"/> .. <paramref name="endPanel"/> inside each k block: the next panel's
    /// block, or after the last panel the first panel's next k block (panels of the AVX-512 kernel's
    /// 8 rows, the only ones its callers use). Each block is MR x kc floats
    /// cut from a panel of MR x <paramref name="depth"/>, a run of at most 4 KB (kc = 128), so the
    /// hardware prefetcher restarts at every block; on small maps (the weights read once per call from
    /// memory, little arithmetic per weight) this hides part of the wait (RetinaNet head at 64x96: the
    /// concatenated 3x3 256-256s 6.4 -> 5.5 ms CPU per forward).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchNextWeights(float* panels, int depth, int firstPanel, int endPanel, int ip, int k0, int kc)
    {
        const int Rows = 8, MaxLines = 64;
        float* next = ip + 1 < endPanel ? panels + (long)(ip + 1) * Rows * depth + (long)k0 * Rows
            : k0 + kc < depth ? panels + (long)firstPanel * Rows * depth + (long)(k0 + kc) * Rows : null;
        if (next == null) return;
        int blockDepth = ip + 1 < endPanel ? kc : Math.Min(kc, depth - k0 - kc);
        int lines = Math.Min(MaxLines, blockDepth * Rows / 16);
        for (int line = 0; line < lines; line++) Sse.Prefetch1(next + line * 16);
    }

    /// <summary>destination[0 .. count) = 0 (short runs: inline vector stores).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Clear(float* destination, int count)
    {
        int t = 0;
        for (; t + 8 <= count; t += 8) Vector256<float>.Zero.Store(destination + t);
        for (; t < count; t++) destination[t] = 0f;
    }

    // The plain per-element packing, for column blocks cut into more runs than PackInput keeps
    // (output rows narrower than ~2 pixels).
    private void PackInputByElement(float* dst, float* image, int k0, int kc, int firstColumn, int columns, int paddedColumns)
    {
        ConvSpec s = conv.Spec;
        int kernelSize = s.Kernel, taps = kernelSize * kernelSize, stride = s.Stride, pad = s.Padding;
        int nr = kernel.Columns;
        long panelStride = (long)kc * nr;
        long plane = (long)height * width;
        for (int kk = 0; kk < kc; kk++)
        {
            int k = k0 + kk;
            int channel = k / taps, tap = k % taps, ky = tap / kernelSize, kx = tap % kernelSize;
            float* source = image + channel * plane;
            for (int q = 0; q < paddedColumns; q++)
            {
                float value = 0f;
                if (q < columns)
                {
                    int p = firstColumn + q;
                    int iy = p / outWidth * stride - pad + ky, ix = p % outWidth * stride - pad + kx;
                    if ((uint)iy < (uint)height && (uint)ix < (uint)width) value = source[(long)iy * width + ix];
                }
                dst[q / nr * panelStride + (long)kk * nr + q % nr] = value;
            }
        }
    }
}
