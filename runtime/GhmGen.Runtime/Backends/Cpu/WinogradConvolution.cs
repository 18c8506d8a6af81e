// Winograd F(4x4, 3x3) for dense 3x3 stride-1 pad-1 convolutions (groups 1): each 4x4 output tile
// of y[n, o] comes from a 6x6 input patch d of every channel c (rows 4ty-1 .. 4ty+4, zero outside):
//   U[o, c] = G g[o, c] G^T (6x6, once, WinogradWeights),  V[c, t] = B^T d[c, t] B (6x6),
//   M_xi[o, t] = sum_c U_xi[o, c] V_xi[c, t] for each of the 36 positions xi (36 GEMMs on the
//   packed micro-kernel), Y[o, t] = A^T M[o, t] A (4x4) + bias (+ residual), ReLU.
// 36 multiplies per 16 outputs instead of 144: 4x fewer multiply-adds than the direct GEMM, at
// the price of transforms (vectorized over tiles) and a larger float32 rounding error (the
// transform matrices have entries up to 8; see the tolerance in CpuBackendTests).
// Work items are (image, block of 1 or 2 panels of NR tiles; 2 when that leaves two blocks per
// worker: each transformed-weight panel, streamed from L3, then serves 2 NR tiles, ~10% faster
// at 100x152). Per item: the input transform of all channels into V (already in the
// micro-kernel's NR-panel layout: V_xi[(panel * C + c) * NR + j]), then, per chunk of 64 output
// channels, the 36 GEMMs into M and the output transform. On AVX-512 the input transform first
// copies the block's input rows of a channel into a zero-framed buffer, so that every group of 8
// tiles (interior, at a border, or across two tile rows) reads its 6x6 patches by deinterleaving
// contiguous loads (vpermt2ps, one blended run per tile row) instead of gathering or staging them.
// Shapes: x [N, C, H, W], y and residual [N, O, H, W].
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs (Winograd cases).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>Weights of a 3x3 convolution transformed for Winograd F(4x4, 3x3), in micro-kernel panels.</summary>
internal sealed class WinogradWeights
{
    /// <summary>Positions of the 6x6 transformed tile.</summary>
    public const int Positions = 36;

    /// <summary>Allocates the panels of a [out, in, 3, 3] convolution; <see cref="Repack"/> fills them.</summary>
    public WinogradWeights(ConvSpec spec, int panelRows)
    {
        InChannels = spec.InChannels;
        OutChannels = spec.OutChannels;
        PanelRows = panelRows;
        PanelCount = (OutChannels + panelRows - 1) / panelRows;
        // Layout [xi][panel][c][r]: for each xi an A matrix [O, C] in MR-row panels, K = C.
        Panels = GC.AllocateArray<float>(checked(Positions * PanelCount * panelRows * InChannels), pinned: true);
        Bias = GC.AllocateArray<float>(PanelCount * panelRows, pinned: true);
    }

    /// <summary>
    /// Transforms <paramref name="weight"/> [out, in, 3, 3] and pads <paramref name="bias"/>, in
    /// place. With <paramref name="transposed"/>, <paramref name="weight"/> is that of the
    /// forward convolution [in, out, 3, 3] whose input gradient this is: g[o, c] = its
    /// [c, o] kernel flipped in both axes.
    /// </summary>
    public void Repack(ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, bool transposed) =>
        RepackRows(weight, bias, transposed, 0, OutChannels);

    /// <summary>
    /// <see cref="Repack"/> for output channels <paramref name="first"/> .. <paramref name="end"/> - 1 only
    /// (<paramref name="first"/> a multiple of <see cref="PanelRows"/>), so that disjoint ranges can be
    /// transformed on several threads at once (CpuBackend.UpdateConv); every value is the same as Repack's.
    /// </summary>
    public void RepackRows(ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, bool transposed, int first, int end)
    {
        // u[a, b] = sum over i, j (i outer) of (G[a, i] * g[i, j]) * G[b, j], in double, then rounded to
        // float. The products G[a, i] * g[i, j] do not depend on b, so they are made once per (o, c)
        // (54 instead of 324), and eight (AVX-512) or four output channels of a panel (adjacent in it) go
        // through the same operations in the lanes of a Vector512/Vector256<double> (multiply, then add:
        // never fused); every value and every addition is the same as term by term, so the panels are
        // bitwise those of the plain triple loop (WinogradRepackTests). This runs on every UpdateConv
        // (after each optimizer step).
        if (first % PanelRows != 0 || first < 0 || end > OutChannels)
            throw new ArgumentOutOfRangeException(nameof(first), $"rows {first} .. {end} are not panel-aligned rows of {OutChannels}");
        if (bias.Length > 0)
            for (int o = first; o < end; o++) Bias[o] = bias[o];
        int vectorStart = first;
        if (Avx512F.IsSupported && PanelRows % 8 == 0)
        {
            int eightEnd = first + (end - first) / 8 * 8;
            for (int panelStart = first; panelStart < eightEnd; panelStart += PanelRows)
            {
                int panelEnd = Math.Min(panelStart + PanelRows, eightEnd);
                for (int c = 0; c < InChannels; c++)
                    for (int o0 = panelStart; o0 < panelEnd; o0 += 8) RepackEight(weight, transposed, o0, c);
            }
            vectorStart = eightEnd;
        }
        int vectorEnd = vectorStart;
        if (Vector256.IsHardwareAccelerated && PanelRows % 4 == 0)
        {
            // Panel by panel, channel by channel: all the floats of a (xi, panel, c) row are written
            // together, so the panels are written once, front to back.
            vectorEnd = vectorStart + (end - vectorStart) / 4 * 4;
            for (int panelStart = vectorStart; panelStart < vectorEnd;)
            {
                int panelEnd = Math.Min((panelStart / PanelRows + 1) * PanelRows, vectorEnd);
                for (int c = 0; c < InChannels; c++)
                    for (int o0 = panelStart; o0 < panelEnd; o0 += 4) RepackFour(weight, transposed, o0, c);
                panelStart = panelEnd;
            }
        }
        for (int o = vectorEnd; o < end; o++) RepackOne(weight, transposed, o);
    }

    /// <summary>Output channels <paramref name="o0"/> .. + 7 (one panel, rows r .. r + 7), one lane each, for input channel <paramref name="c"/>.</summary>
    private void RepackEight(ReadOnlySpan<float> weight, bool transposed, int o0, int c)
    {
        Span<Vector512<double>> gv = stackalloc Vector512<double>[9];
        Span<Vector512<double>> p = stackalloc Vector512<double>[9];
        ReadOnlySpan<double> gf = GFlat;
        float[] panels = Panels;
        long positionStride = (long)PanelCount * InChannels * PanelRows;
        int panel = o0 / PanelRows, r = o0 % PanelRows;
        Span<double> lanes = stackalloc double[8];
        for (int t = 0; t < 9; t++)
        {
            for (int l = 0; l < 8; l++)
                lanes[l] = transposed ? weight[(c * OutChannels + o0 + l) * 9 + 8 - t] : weight[((o0 + l) * InChannels + c) * 9 + t];
            gv[t] = Vector512.Create<double>(lanes);
        }
        long at = ((long)panel * InChannels + c) * PanelRows + r;
        for (int a = 0; a < 6; a++)
        {
            for (int i = 0; i < 3; i++)
            {
                var gai = Vector512.Create(gf[a * 3 + i]);
                p[i * 3] = gai * gv[i * 3];
                p[i * 3 + 1] = gai * gv[i * 3 + 1];
                p[i * 3 + 2] = gai * gv[i * 3 + 2];
            }
            for (int b = 0; b < 6; b++)
            {
                var gb0 = Vector512.Create(gf[b * 3]);
                var gb1 = Vector512.Create(gf[b * 3 + 1]);
                var gb2 = Vector512.Create(gf[b * 3 + 2]);
                Vector512<double> sum = Vector512<double>.Zero;
                sum += p[0] * gb0;
                sum += p[1] * gb1;
                sum += p[2] * gb2;
                sum += p[3] * gb0;
                sum += p[4] * gb1;
                sum += p[5] * gb2;
                sum += p[6] * gb0;
                sum += p[7] * gb1;
                sum += p[8] * gb2;
                // Round each lane to float as (float)double does (to nearest even, the default rounding mode).
                Vector256<float> u = Avx512F.ConvertToVector256Single(sum);
                u.StoreUnsafe(ref panels[(a * 6 + b) * positionStride + at]);
            }
        }
    }

    /// <summary>Output channels <paramref name="o0"/> .. + 3 (one panel, rows r .. r + 3), one lane each, for input channel <paramref name="c"/>.</summary>
    private void RepackFour(ReadOnlySpan<float> weight, bool transposed, int o0, int c)
    {
        Span<Vector256<double>> gv = stackalloc Vector256<double>[9];
        Span<Vector256<double>> p = stackalloc Vector256<double>[9];
        ReadOnlySpan<double> gf = GFlat;
        float[] panels = Panels;
        long positionStride = (long)PanelCount * InChannels * PanelRows;
        int panel = o0 / PanelRows, r = o0 % PanelRows;
        for (int t = 0; t < 9; t++)
        {
            gv[t] = transposed
                ? Vector256.Create(
                    (double)weight[(c * OutChannels + o0) * 9 + 8 - t], weight[(c * OutChannels + o0 + 1) * 9 + 8 - t],
                    weight[(c * OutChannels + o0 + 2) * 9 + 8 - t], weight[(c * OutChannels + o0 + 3) * 9 + 8 - t])
                : Vector256.Create(
                    (double)weight[(o0 * InChannels + c) * 9 + t], weight[((o0 + 1) * InChannels + c) * 9 + t],
                    weight[((o0 + 2) * InChannels + c) * 9 + t], weight[((o0 + 3) * InChannels + c) * 9 + t]);
        }
        long at = ((long)panel * InChannels + c) * PanelRows + r;
        for (int a = 0; a < 6; a++)
        {
            for (int i = 0; i < 3; i++)
            {
                var gai = Vector256.Create(gf[a * 3 + i]);
                p[i * 3] = gai * gv[i * 3];
                p[i * 3 + 1] = gai * gv[i * 3 + 1];
                p[i * 3 + 2] = gai * gv[i * 3 + 2];
            }
            for (int b = 0; b < 6; b++)
            {
                var gb0 = Vector256.Create(gf[b * 3]);
                var gb1 = Vector256.Create(gf[b * 3 + 1]);
                var gb2 = Vector256.Create(gf[b * 3 + 2]);
                Vector256<double> sum = Vector256<double>.Zero;
                sum += p[0] * gb0;
                sum += p[1] * gb1;
                sum += p[2] * gb2;
                sum += p[3] * gb0;
                sum += p[4] * gb1;
                sum += p[5] * gb2;
                sum += p[6] * gb0;
                sum += p[7] * gb1;
                sum += p[8] * gb2;
                // Round each lane to float as (float)double does (to nearest even).
                Vector128<float> u = Vector128.Narrow(sum.GetLower(), sum.GetUpper());
                u.StoreUnsafe(ref panels[(a * 6 + b) * positionStride + at]);
            }
        }
    }

    /// <summary>One output channel, scalar (the channels left after the groups of four).</summary>
    private void RepackOne(ReadOnlySpan<float> weight, bool transposed, int o)
    {
        Span<double> u = stackalloc double[Positions];
        Span<double> p = stackalloc double[9];
        Span<float> g = stackalloc float[9];
        ReadOnlySpan<double> gf = GFlat;
        float[] panels = Panels;
        long positionStride = (long)PanelCount * InChannels * PanelRows;
        int panel = o / PanelRows, r = o % PanelRows;
        for (int c = 0; c < InChannels; c++)
        {
            if (transposed)
                for (int t = 0; t < 9; t++) g[t] = weight[(c * OutChannels + o) * 9 + 8 - t];
            else
                weight.Slice((o * InChannels + c) * 9, 9).CopyTo(g);
            for (int a = 0; a < 6; a++)
            {
                // p[i * 3 + j] = G[a, i] * g[i, j] (double times float, as in the plain loop).
                for (int i = 0; i < 3; i++)
                {
                    double gai = gf[a * 3 + i];
                    p[i * 3] = gai * g[i * 3];
                    p[i * 3 + 1] = gai * g[i * 3 + 1];
                    p[i * 3 + 2] = gai * g[i * 3 + 2];
                }
                for (int b = 0; b < 6; b++)
                {
                    double gb0 = gf[b * 3], gb1 = gf[b * 3 + 1], gb2 = gf[b * 3 + 2];
                    double sum = 0;
                    sum += p[0] * gb0;
                    sum += p[1] * gb1;
                    sum += p[2] * gb2;
                    sum += p[3] * gb0;
                    sum += p[4] * gb1;
                    sum += p[5] * gb2;
                    sum += p[6] * gb0;
                    sum += p[7] * gb1;
                    sum += p[8] * gb2;
                    u[a * 6 + b] = sum;
                }
            }
            long at = ((long)panel * InChannels + c) * PanelRows + r;
            for (int xi = 0; xi < Positions; xi++) panels[xi * positionStride + at] = (float)u[xi];
        }
    }

    /// <summary>G of F(4, 3), 6x3 row-major: G[a, i] = GFlat[a * 3 + i].</summary>
    private static ReadOnlySpan<double> GFlat =>
    [
        1 / 4.0, 0, 0,
        -1 / 6.0, -1 / 6.0, -1 / 6.0,
        -1 / 6.0, 1 / 6.0, -1 / 6.0,
        1 / 24.0, 1 / 12.0, 1 / 6.0,
        1 / 24.0, -1 / 12.0, 1 / 6.0,
        0, 0, 1,
    ];

    /// <summary>C.</summary>
    public int InChannels { get; }

    /// <summary>O.</summary>
    public int OutChannels { get; }

    /// <summary>MR.</summary>
    public int PanelRows { get; }

    /// <summary>ceil(O / MR).</summary>
    public int PanelCount { get; }

    /// <summary>Transformed weights, [36][panel][C][MR] (pinned).</summary>
    public float[] Panels { get; }

    /// <summary>Bias padded to whole panels (pinned).</summary>
    public float[] Bias { get; }

    /// <summary>Whether Winograd F(4x4, 3x3) computes <paramref name="spec"/>.</summary>
    public static bool Applies(ConvSpec spec) => spec is { Kernel: 3, Stride: 1, Padding: 1, Groups: 1 };
}

/// <summary>The per-call state of one Winograd convolution, run as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class WinogradConvolution : IParallelWork
{
    /// <summary>Output-channel panels per GEMM chunk (64 rows for MR = 8).</summary>
    private const int ChunkPanels = 8;

    /// <summary>Most NR-tile panels per block (each weight panel is used for all of them).</summary>
    private const int MaxBlockPanels = 2;

    /// <summary>
    /// Input channels per k block of the 36 GEMMs: 256, the head's whole depth, so that each product tile is
    /// stored once per position (with GemmConvolution's 128, twice and reloaded once). conv-table on a Zen 4,
    /// min of 6 alternated runs: 3x3 256-256 @100x152 37.2 -> 34.7 ms, @50x76 12.1 -> 10.0, @25x38 4.6 -> 4.0.
    /// The additions stay in the same order, so the results do not change.
    /// </summary>
    private const int DepthBlock = 256;

    private readonly GemmKernel kernel;
    private readonly float*[] inputScratch;
    private readonly float*[] productScratch;
    private readonly float* zeroBias;

    private float* x, y, residual, panels, bias;
    private int inChannels, outChannels, firstPanel, endPanel, passPanels;
    private int height, width, tilesX, tiles, tileBlocks, blockPanels, nr;
    private bool relu;
    private delegate*<int, float*, float*, float*, nint, float*, float*, int, void> tile;

    /// <summary>Uses <paramref name="kernel"/> and per-worker scratch (sizes: <see cref="InputScratchElements"/>, <see cref="ProductScratchElements"/>).</summary>
    public WinogradConvolution(GemmKernel kernel, float*[] inputScratch, float*[] productScratch, float* zeroBias)
    {
        this.kernel = kernel;
        this.inputScratch = inputScratch;
        this.productScratch = productScratch;
        this.zeroBias = zeroBias;
        padScratch = new float*[inputScratch.Length];
        padCapacity = new long[inputScratch.Length];
    }

    /// <summary>Floats of transformed input per worker for <paramref name="inChannels"/> channels.</summary>
    public static long InputScratchElements(GemmKernel kernel, int inChannels) => (long)WinogradWeights.Positions * MaxBlockPanels * inChannels * kernel.Columns;

    /// <summary>Floats of GEMM products per worker.</summary>
    public static long ProductScratchElements(GemmKernel kernel) => (long)WinogradWeights.Positions * ChunkPanels * kernel.Rows * MaxBlockPanels * kernel.Columns;

    /// <summary>Output tiles of an h x w image (4x4 each).</summary>
    public static int TileCount(int h, int w) => ((h + 3) / 4) * ((w + 3) / 4);

    /// <summary>Output-channel panels per GEMM chunk: a pass of transformed weights is a whole number of them.</summary>
    public static int PanelsPerChunk => ChunkPanels;

    /// <summary>Sets up one call with stored weights (every panel) and returns the number of work items.</summary>
    public int Prepare(WinogradWeights weights, TensorView xView, float* x, float* y, float* residual, float* panels, float* bias, bool relu, int workers) =>
        Prepare(weights.InChannels, weights.OutChannels, 0, weights.PanelCount, xView, x, y, residual, panels, bias, relu, workers);

    /// <summary>
    /// Sets up one call for output-channel panels <paramref name="firstPanel"/> .. + <paramref name="passPanels"/> - 1
    /// (<paramref name="panels"/>: their transformed weights, [36][passPanels][C][MR]; <paramref name="bias"/>: every
    /// panel's) and returns the number of work items; output rows of other panels are not written.
    /// </summary>
    public int Prepare(int inChannels, int outChannels, int firstPanel, int passPanels, TensorView xView, float* x, float* y, float* residual,
        float* panels, float* bias, bool relu, int workers)
    {
        this.inChannels = inChannels;
        this.outChannels = outChannels;
        this.firstPanel = firstPanel;
        this.passPanels = passPanels;
        endPanel = firstPanel + passPanels;
        this.x = x;
        this.y = y;
        this.residual = residual;
        this.panels = panels;
        this.bias = bias;
        this.relu = relu;
        height = xView.H;
        width = xView.W;
        tilesX = (width + 3) / 4;
        tiles = TileCount(height, width);
        // NR: on the AVX-512 kernel 48, 32 or 16 tiles, whichever pads an image's tiles least (blocks
        // do not span images: 100 tiles, a 40x40 map, fill 3 blocks of 48 = 144 but 7 of 16 = 112).
        nr = kernel.Kind == GemmKernelKind.Avx512 && kernel.Rows == 8 ? SharedInputConvolution.TileWidth(tiles) : kernel.Columns;
        tile = nr == kernel.Columns ? kernel.Tile : nr == 32 ? &GemmMicroKernels.Avx512Tile32 : &GemmMicroKernels.Avx512Tile16;
        // Two panels of NR tiles per block (each transformed-weight panel, streamed from L3, then
        // serves 2 NR tiles) when that still leaves two blocks per worker and, on small maps (under 8
        // panels), adds no padded panel; else one.
        int single = (tiles + nr - 1) / nr, pairs = (tiles + MaxBlockPanels * nr - 1) / (MaxBlockPanels * nr);
        blockPanels = (long)xView.N * pairs >= 2 * workers && (single % MaxBlockPanels == 0 || single >= 8) ? MaxBlockPanels : 1;
        tileBlocks = (tiles + blockPanels * nr - 1) / (blockPanels * nr);
        return checked(xView.N * tileBlocks);
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        int nr = this.nr, mr = kernel.Rows, lanes = Vector<float>.Count;
        int blockTiles = blockPanels * nr;
        int n = item / tileBlocks, firstTile = item % tileBlocks * blockTiles;
        int c = inChannels, o = outChannels;
        long plane = (long)height * width;
        float* image = x + (long)n * c * plane;
        float* v = inputScratch[worker];
        float* products = productScratch[worker];
        long vPosition = (long)blockPanels * c * nr; // V_xi stride; V_xi[(jp * C + ch) * NR + j]
        float* stage = stackalloc float[36 * Vector<float>.Count];
        float* result = stackalloc float[16 * Vector<float>.Count];

        // Input transform: V_xi[(jp * C + ch) * NR + j] for every channel and tile jp * NR + j of the block.
        if (PaddedRows)
            PaddedInputTransforms(worker, image, v, firstTile, blockTiles, vPosition);
        else
        {
            for (int ch = 0; ch < c; ch++)
            {
                float* channel = image + ch * plane;
                for (int t0 = 0; t0 < blockTiles; t0 += lanes)
                {
                    float* dst = v + ((long)(t0 / nr) * c + ch) * nr + t0 % nr;
                    if (FastTiles && InteriorRun(firstTile + t0, 0))
                        GatherInputTransform(channel, firstTile + t0, dst, vPosition);
                    else
                    {
                        StagePatches(channel, firstTile + t0, lanes, stage);
                        InputTransform(stage, dst, vPosition);
                    }
                }
            }
        }

        // Per chunk of output channels: 36 GEMMs M_xi[row, t] = U_xi[row, :] V_xi[:, t], then
        // the output transform of the chunk's rows.
        long productPosition = (long)ChunkPanels * mr * blockTiles; // M_xi[row * blockTiles + t]
        float* outImage = y + (long)n * o * plane;
        float* resImage = residual == null ? null : residual + (long)n * o * plane;
        for (int p0 = firstPanel; p0 < endPanel; p0 += ChunkPanels)
        {
            int p1 = Math.Min(endPanel, p0 + ChunkPanels);
            for (int xi = 0; xi < WinogradWeights.Positions; xi++)
            {
                float* aPosition = panels + (long)xi * passPanels * mr * c - (long)firstPanel * c * mr;
                for (int k0 = 0; k0 < c; k0 += DepthBlock)
                {
                    int kc = Math.Min(DepthBlock, c - k0);
                    int mode = k0 == 0 ? GemmMicroKernels.First : 0;
                    for (int ip = p0; ip < p1; ip++)
                    {
                        float* a = aPosition + ((long)ip * c + k0) * mr;
                        float* product = products + xi * productPosition + (long)(ip - p0) * mr * blockTiles;
                        for (int jp = 0; jp < blockPanels; jp++)
                            tile(kc, a, v + xi * vPosition + ((long)jp * c + k0) * nr, product + jp * nr, blockTiles, zeroBias, null, mode);
                    }
                }
            }
            int rowEnd = Math.Min(o, p1 * mr);
            for (int row = p0 * mr; row < rowEnd; row++)
            {
                float* m = products + (long)(row - p0 * mr) * blockTiles;
                for (int t0 = 0; t0 < blockTiles; t0 += lanes)
                {
                    OutputTransform(m + t0, productPosition, bias[row], result);
                    if (FastTiles && InteriorRun(firstTile + t0, 1))
                        WriteTileRun(result, firstTile + t0, outImage + row * plane, resImage == null ? null : resImage + row * plane);
                    else
                        WriteTiles(result, firstTile + t0, lanes, outImage + row * plane, resImage == null ? null : resImage + row * plane);
                }
            }
        }
    }


    // AVX2 paths for 8 tiles in one tile row away from the image border: gathered input patches,
    // and output tiles written as 4 rows of 32 contiguous floats.
    private static bool FastTiles => Avx2.IsSupported && Vector<float>.Count == 8;

    // Whether tiles firstTile .. firstTile+7 lie in one tile row with every input patch (margin 0)
    // or every output tile (margin 1) inside the image.
    private bool InteriorRun(int firstTile, int margin)
    {
        int last = firstTile + 7;
        if (last >= tiles) return false;
        int ty = firstTile / tilesX, tx = firstTile % tilesX;
        if (last / tilesX != ty) return false;
        return margin == 0
            ? ty * 4 - 1 >= 0 && ty * 4 + 5 <= height && tx * 4 - 1 >= 0 && (tx + 7) * 4 + 5 <= width
            : ty * 4 + 4 <= height && (tx + 7) * 4 + 4 <= width;
    }

    // Indices of the stride-4 elements j, j + 4, .., j + 28 of two concatenated 16-float vectors (lanes 0..7):
    // a run's row[k + 4l] for k = 0..3 from row[0..31] and, offset by 2, k = 4, 5 from row[2..33].
    internal static readonly Vector512<int>[] Stride4 =
        [.. Enumerable.Range(0, 4).Select(j => Vector512.Create(j, j + 4, j + 8, j + 12, j + 16, j + 20, j + 24, j + 28, 0, 0, 0, 0, 0, 0, 0, 0))];

    // InputTransform of 8 interior tiles, gathering d[i][k] = x[4ty - 1 + i, 4(tx + l) - 1 + k] (AVX2 without AVX-512).
    private void GatherInputTransform(float* channel, int firstTile, float* output, long positionStride)
    {
        int ty = firstTile / tilesX, tx = firstTile % tilesX;
        float* origin = channel + (long)(ty * 4 - 1) * width + tx * 4 - 1;
        Vector256<int> index = Vector256.Create(0, 4, 8, 12, 16, 20, 24, 28);
        Vector<float>* t = stackalloc Vector<float>[36];
        for (int i = 0; i < 6; i++)
        {
            float* row = origin + (long)i * width;
            BtRow(Avx2.GatherVector256(row, index, 4).AsVector(), Avx2.GatherVector256(row + 1, index, 4).AsVector(),
                Avx2.GatherVector256(row + 2, index, 4).AsVector(), Avx2.GatherVector256(row + 3, index, 4).AsVector(),
                Avx2.GatherVector256(row + 4, index, 4).AsVector(), Avx2.GatherVector256(row + 5, index, 4).AsVector(), t + i * 6, 1);
        }
        ColumnTransform(t, output, positionStride);
    }

    // The second half of V = B^T d B for 8 tiles whose rows t[i * 6 + k] are transformed: the columns, stored to output + xi * positionStride.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ColumnTransform(Vector<float>* t, float* output, long positionStride)
    {
        Vector<float>* v = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            BtRow(t[b], t[6 + b], t[12 + b], t[18 + b], t[24 + b], t[30 + b], v + b, 6);
        for (int xi = 0; xi < 36; xi++) v[xi].Store(output + xi * positionStride);
    }

    // The padded-row input transform (AVX-512 with 8-float Vector<T>, as FastTiles).
    private static bool PaddedRows => FastTiles && Avx512F.IsSupported;

    // Floats before column -1 in a padded row: a group's loads start up to 7 tiles (28 floats) early.
    private const int PadLead = 32;

    private readonly float*[] padScratch;
    private readonly long[] padCapacity;

    // Worker `worker`'s padded-row buffer of at least `elements` floats (grown on first need; each
    // worker touches only its own).
    private float* PadScratch(int worker, long elements)
    {
        if (elements > padCapacity[worker])
        {
            NativeMemory.AlignedFree(padScratch[worker]);
            padScratch[worker] = (float*)NativeMemory.AlignedAlloc((nuint)(elements * sizeof(float)), 64);
            padCapacity[worker] = elements;
        }
        return padScratch[worker];
    }

    /// <summary>Frees the padded-row buffers.</summary>
    public void Dispose()
    {
        for (int i = 0; i < padScratch.Length; i++)
        {
            NativeMemory.AlignedFree(padScratch[i]);
            padScratch[i] = null;
            padCapacity[i] = 0;
        }
    }

    // The input transform of one tile block on AVX-512: per channel, the block's input rows copied once
    // into a zero-framed buffer, so that every group of 8 tiles (across a tile row, at a border) loads its
    // patches by deinterleaving.
    private void PaddedInputTransforms(int worker, float* image, float* v, int firstTile, int blockTiles, long vPosition)
    {
        int c = inChannels, lanes = Vector<float>.Count;
        long plane = (long)height * width;
        int lastTile = Math.Min(tiles, firstTile + blockTiles) - 1;
        int ty0 = firstTile / tilesX, ty1 = lastTile / tilesX;
        int rowBase = 4 * ty0 - 1, padRows = 4 * (ty1 - ty0) + 6;
        int pitch = (PadLead + 4 * tilesX + 34 + 15) & ~15;
        // (+ 64: the lanes past a run at the last row's end read up to 7 tiles beyond it, then are discarded.)
        float* pad = PadScratch(worker, (long)padRows * pitch + 64);
        for (int ch = 0; ch < c; ch++)
        {
            float* channel = image + ch * plane;
            for (int pr = 0; pr < padRows; pr++)
            {
                float* line = pad + (long)pr * pitch;
                int r = rowBase + pr;
                if ((uint)r >= (uint)height)
                {
                    new Span<float>(line, pitch).Clear();
                    continue;
                }
                // The frame around the copied row: the lead and column -1, and everything past column width - 1.
                new Span<float>(line, PadLead + 1).Clear();
                new ReadOnlySpan<float>(channel + (long)r * width, width).CopyTo(new Span<float>(line + PadLead + 1, width));
                new Span<float>(line + PadLead + 1 + width, pitch - PadLead - 1 - width).Clear();
            }
            for (int t0 = 0; t0 < blockTiles; t0 += lanes)
            {
                float* dst = v + ((long)(t0 / nr) * c + ch) * nr + t0 % nr;
                PaddedInputTransform(pad, pitch, rowBase, firstTile + t0, dst, vPosition);
            }
        }
    }

    // InputTransform of tiles firstTile .. firstTile + 7 from padded rows (pad row pr = input row
    // rowBase + pr; index PadLead + 1 + x = column x, zeros around): each run of lanes in one tile row
    // deinterleaves contiguous loads, shifted back so that lane L reads tile tx0 + L - laneStart, and
    // the runs are blended by lane; lanes past the last tile stay zero.
    private void PaddedInputTransform(float* pad, int pitch, int rowBase, int firstTile, float* output, long positionStride)
    {
        Span<int> runTy = stackalloc int[8], runTx = stackalloc int[8], runLane = stackalloc int[8], runCount = stackalloc int[8];
        int runs = 0;
        for (int lane = 0; lane < 8;)
        {
            int t = firstTile + lane;
            if (t >= tiles) break;
            int ty = t / tilesX, tx = t % tilesX, count = Math.Min(8 - lane, Math.Min(tilesX - tx, tiles - t));
            runTy[runs] = ty;
            runTx[runs] = tx;
            runLane[runs] = lane;
            runCount[runs] = count;
            runs++;
            lane += count;
        }
        Vector256<int> laneIndex = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        Vector<float>* t6 = stackalloc Vector<float>[36];
        for (int i = 0; i < 6; i++)
        {
            Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default;
            for (int r = 0; r < runs; r++)
            {
                float* row = pad + (long)(4 * runTy[r] - 1 + i - rowBase) * pitch + PadLead + 4 * (runTx[r] - runLane[r]);
                Vector512<float> lo = Vector512.Load(row), hi = Vector512.Load(row + 16);
                Vector512<float> lo2 = Vector512.Load(row + 2), hi2 = Vector512.Load(row + 18);
                Vector256<float> p0 = Avx512F.PermuteVar16x32x2(lo, Stride4[0], hi).GetLower(), p1 = Avx512F.PermuteVar16x32x2(lo, Stride4[1], hi).GetLower();
                Vector256<float> p2 = Avx512F.PermuteVar16x32x2(lo, Stride4[2], hi).GetLower(), p3 = Avx512F.PermuteVar16x32x2(lo, Stride4[3], hi).GetLower();
                Vector256<float> p4 = Avx512F.PermuteVar16x32x2(lo2, Stride4[2], hi2).GetLower(), p5 = Avx512F.PermuteVar16x32x2(lo2, Stride4[3], hi2).GetLower();
                if (runs == 1 && runCount[0] == 8)
                {
                    (d0, d1, d2, d3, d4, d5) = (p0, p1, p2, p3, p4, p5);
                    break;
                }
                Vector256<float> mask = Vector256.BitwiseAnd(
                    Vector256.GreaterThanOrEqual(laneIndex, Vector256.Create(runLane[r])),
                    Vector256.LessThan(laneIndex, Vector256.Create(runLane[r] + runCount[r]))).AsSingle();
                d0 = Vector256.ConditionalSelect(mask, p0, d0);
                d1 = Vector256.ConditionalSelect(mask, p1, d1);
                d2 = Vector256.ConditionalSelect(mask, p2, d2);
                d3 = Vector256.ConditionalSelect(mask, p3, d3);
                d4 = Vector256.ConditionalSelect(mask, p4, d4);
                d5 = Vector256.ConditionalSelect(mask, p5, d5);
            }
            BtRow(d0.AsVector(), d1.AsVector(), d2.AsVector(), d3.AsVector(), d4.AsVector(), d5.AsVector(), t6 + i * 6, 1);
        }
        ColumnTransform(t6, output, positionStride);
    }

    // WriteTiles for 8 interior tiles of one tile row: transposes result[(i*4 + j)][l] into output
    // rows 4ty + i, columns 4(tx + l) + j (32 contiguous floats per row).
    private void WriteTileRun(float* result, int firstTile, float* outPlane, float* resPlane)
    {
        int ty = firstTile / tilesX, tx = firstTile % tilesX;
        Vector256<float> zero = Vector256<float>.Zero;
        for (int i = 0; i < 4; i++)
        {
            TileRow(result, i, out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2, out Vector256<float> o3);
            long at = (long)(ty * 4 + i) * width + tx * 4;
            if (resPlane != null)
            {
                float* res = resPlane + at;
                o0 += Vector256.Load(res);
                o1 += Vector256.Load(res + 8);
                o2 += Vector256.Load(res + 16);
                o3 += Vector256.Load(res + 24);
            }
            if (relu)
            {
                o0 = Avx.Max(o0, zero);
                o1 = Avx.Max(o1, zero);
                o2 = Avx.Max(o2, zero);
                o3 = Avx.Max(o3, zero);
            }
            float* dst = outPlane + at;
            o0.Store(dst);
            o1.Store(dst + 8);
            o2.Store(dst + 16);
            o3.Store(dst + 24);
        }
    }

    // stage[(i * 6 + k) * lanes + l] = x[4ty - 1 + i, 4tx - 1 + k] of tile firstTile + l (zero outside).
    private void StagePatches(float* channel, int firstTile, int lanes, float* stage)
    {
        for (int l = 0; l < lanes; l++)
        {
            int t = firstTile + l;
            if (t >= tiles)
            {
                for (int i = 0; i < 36; i++) stage[i * lanes + l] = 0f;
                continue;
            }
            int y0 = t / tilesX * 4 - 1, x0 = t % tilesX * 4 - 1;
            bool inside = y0 >= 0 && x0 >= 0 && y0 + 6 <= height && x0 + 6 <= width;
            for (int i = 0; i < 6; i++)
            {
                int iy = y0 + i;
                float* row = channel + (long)iy * width;
                float* s = stage + i * 6 * lanes + l;
                if (inside)
                {
                    s[0] = row[x0]; s[lanes] = row[x0 + 1]; s[2 * lanes] = row[x0 + 2];
                    s[3 * lanes] = row[x0 + 3]; s[4 * lanes] = row[x0 + 4]; s[5 * lanes] = row[x0 + 5];
                }
                else
                {
                    bool rowInside = (uint)iy < (uint)height;
                    for (int k = 0; k < 6; k++)
                    {
                        int ix = x0 + k;
                        s[k * lanes] = rowInside && (uint)ix < (uint)width ? row[ix] : 0f;
                    }
                }
            }
        }
    }

    // V = B^T d B for `lanes` tiles at once; V_xi goes to output + xi * positionStride.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputTransform(float* stage, float* output, long positionStride)
    {
        int lanes = Vector<float>.Count;
        Vector<float>* t = stackalloc Vector<float>[36];
        for (int i = 0; i < 6; i++)
        {
            float* s = stage + i * 6 * lanes;
            BtRow(Vector.Load(s), Vector.Load(s + lanes), Vector.Load(s + 2 * lanes), Vector.Load(s + 3 * lanes),
                Vector.Load(s + 4 * lanes), Vector.Load(s + 5 * lanes), t + i * 6, 1);
        }
        Vector<float>* v = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            BtRow(t[b], t[6 + b], t[12 + b], t[18 + b], t[24 + b], t[30 + b], v + b, 6);
        for (int xi = 0; xi < 36; xi++) v[xi].Store(output + xi * positionStride);
    }

    // r = B^T d for one 6-vector d; r[j] goes to dst[j * stride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void BtRow(Vector<float> d0, Vector<float> d1, Vector<float> d2, Vector<float> d3, Vector<float> d4, Vector<float> d5,
        Vector<float>* dst, int stride)
    {
        var four = new Vector<float>(4f);
        var five = new Vector<float>(5f);
        var two = new Vector<float>(2f);
        Vector<float> d4MinusD2 = d4 - d2;
        dst[0] = four * d0 - five * d2 + d4;
        Vector<float> s12 = four * (d1 + d2), s34 = d3 + d4;
        dst[stride] = s34 - s12;
        Vector<float> m12 = four * (d1 - d2), m34 = d4 - d3;
        dst[2 * stride] = m12 + m34;
        Vector<float> t13 = two * (d3 - d1);
        dst[3 * stride] = t13 + d4MinusD2;
        dst[4 * stride] = d4MinusD2 - t13;
        dst[5 * stride] = four * d1 - five * d3 + d5;
    }

    // Y = A^T M A + bias for `lanes` tiles: result[(i * 4 + j) * lanes + l].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputTransform(float* m, long positionStride, float rowBias, float* result)
    {
        int lanes = Vector<float>.Count;
        Vector<float>* t = stackalloc Vector<float>[24];
        for (int a = 0; a < 6; a++)
        {
            float* row = m + a * 6 * positionStride;
            AtRow(Vector.Load(row), Vector.Load(row + positionStride), Vector.Load(row + 2 * positionStride),
                Vector.Load(row + 3 * positionStride), Vector.Load(row + 4 * positionStride), Vector.Load(row + 5 * positionStride), t + a * 4, 1);
        }
        Vector<float>* yv = stackalloc Vector<float>[16];
        for (int j = 0; j < 4; j++)
            AtRow(t[j], t[4 + j], t[8 + j], t[12 + j], t[16 + j], t[20 + j], yv + j, 4);
        var b = new Vector<float>(rowBias);
        for (int i = 0; i < 16; i++) (yv[i] + b).Store(result + i * lanes);
    }

    // r = A^T m for one 6-vector m; r[i] goes to dst[i * stride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AtRow(Vector<float> m0, Vector<float> m1, Vector<float> m2, Vector<float> m3, Vector<float> m4, Vector<float> m5,
        Vector<float>* dst, int stride)
    {
        Vector<float> p12 = m1 + m2, n12 = m1 - m2, p34 = m3 + m4, n34 = m3 - m4;
        dst[0] = m0 + p12 + p34;
        dst[stride] = n12 + new Vector<float>(2f) * n34;
        dst[2 * stride] = p12 + new Vector<float>(4f) * p34;
        dst[3 * stride] = n12 + new Vector<float>(8f) * n34 + m5;
    }

    // Writes the 4x4 tiles (bias included) with residual and ReLU, clipped to the image.
    private void WriteTiles(float* result, int firstTile, int lanes, float* outPlane, float* resPlane)
    {
        if (FastTiles)
        {
            WriteTilesByRows(result, firstTile, outPlane, resPlane);
            return;
        }
        for (int l = 0; l < lanes; l++)
            WriteTile(result, firstTile, lanes, l, outPlane, resPlane);
    }

    // Row i of 8 tiles' outputs (result[(i * 4 + j) * 8 + l]) in tile order, 4 floats per tile: o0 holds
    // tiles 0-1, o1 tiles 2-3, o2 tiles 4-5, o3 tiles 6-7.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileRow(float* result, int i, out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2, out Vector256<float> o3)
    {
        float* r = result + i * 4 * 8;
        Vector256<float> r0 = Vector256.Load(r), r1 = Vector256.Load(r + 8), r2 = Vector256.Load(r + 16), r3 = Vector256.Load(r + 24);
        Vector256<float> a = Avx.UnpackLow(r0, r1), b = Avx.UnpackLow(r2, r3), c = Avx.UnpackHigh(r0, r1), d = Avx.UnpackHigh(r2, r3);
        Vector256<float> e = Avx.UnpackLow(a.AsDouble(), b.AsDouble()).AsSingle(); // tiles 0 and 4
        Vector256<float> f = Avx.UnpackHigh(a.AsDouble(), b.AsDouble()).AsSingle(); // tiles 1 and 5
        Vector256<float> g = Avx.UnpackLow(c.AsDouble(), d.AsDouble()).AsSingle(); // tiles 2 and 6
        Vector256<float> h = Avx.UnpackHigh(c.AsDouble(), d.AsDouble()).AsSingle(); // tiles 3 and 7
        o0 = Avx.Permute2x128(e, f, 0x20);
        o1 = Avx.Permute2x128(g, h, 0x20);
        o2 = Avx.Permute2x128(e, f, 0x31);
        o3 = Avx.Permute2x128(g, h, 0x31);
    }

    // WriteTiles for 8 lanes on AVX2: the result transposed once into tile order (TileRow, as WriteTileRun),
    // then every tile wholly inside the image written as 4 rows of 4 floats, the others clipped by
    // WriteTile. (The per-element loop took more time than WriteTileRun while writing ~1/5 of the
    // tiles at 100x152: 8-tile runs that cross a tile row, of which a 40x40 map has 4 in 7.)
    private void WriteTilesByRows(float* result, int firstTile, float* outPlane, float* resPlane)
    {
        float* rows = stackalloc float[4 * 32]; // rows[i * 32 + l * 4 + j] = tile l's value (i, j)
        for (int i = 0; i < 4; i++)
        {
            TileRow(result, i, out Vector256<float> o0, out Vector256<float> o1, out Vector256<float> o2, out Vector256<float> o3);
            float* dst = rows + i * 32;
            o0.Store(dst);
            o1.Store(dst + 8);
            o2.Store(dst + 16);
            o3.Store(dst + 24);
        }
        Vector128<float> zero = Vector128<float>.Zero;
        for (int l = 0; l < 8; l++)
        {
            int t = firstTile + l;
            if (t >= tiles) return;
            int oy0 = t / tilesX * 4, ox0 = t % tilesX * 4;
            if (oy0 + 4 > height || ox0 + 4 > width)
            {
                WriteTile(result, firstTile, 8, l, outPlane, resPlane);
                continue;
            }
            for (int i = 0; i < 4; i++)
            {
                long at = (long)(oy0 + i) * width + ox0;
                Vector128<float> value = Vector128.Load(rows + i * 32 + l * 4);
                if (resPlane != null) value += Vector128.Load(resPlane + at);
                if (relu) value = Sse.Max(value, zero);
                value.Store(outPlane + at);
            }
        }
    }

    // Tile firstTile + l of the result (lanes wide), clipped to the image, element by element.
    private void WriteTile(float* result, int firstTile, int lanes, int l, float* outPlane, float* resPlane)
    {
        int t = firstTile + l;
        if (t >= tiles) return;
        int oy0 = t / tilesX * 4, ox0 = t % tilesX * 4;
        int rows = Math.Min(4, height - oy0), columns = Math.Min(4, width - ox0);
        for (int i = 0; i < rows; i++)
        {
            long at = (long)(oy0 + i) * width + ox0;
            for (int j = 0; j < columns; j++)
            {
                float value = result[(i * 4 + j) * lanes + l];
                if (resPlane != null) value += resPlane[at + j];
                outPlane[at + j] = relu ? MathF.Max(value, 0f) : value;
            }
        }
    }
}
