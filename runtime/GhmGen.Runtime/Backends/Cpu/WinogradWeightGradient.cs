// The weight gradient of a dense 3x3 stride-1 pad-1 convolution (groups 1) by Winograd F(4x4, 3x3),
// the forward's transforms (WinogradConvolution) run backwards. Per 4x4 output tile the forward is
//   y = A^T [U ⊙ V] A,  U = G g G^T,  V = B^T d B  (d: the tile's 6x6 input patch),
// so for the tile's output gradient e (4x4) dU = (A e A^T) ⊙ V and dg = G^T dU G. Summed over the
// tiles t of every image:
//   dW[m, c] = G^T (sum_t E_t[m] ⊙ V_t[c]) G,  E_t[m] = A e_t[m] A^T,  V_t[c] = B^T d_t[c] B (6x6),
// and for each of the 36 positions xi the tile sum is a GEMM, dU_xi[m, c] = sum_t E_xi[m, t] V_xi[c, t],
// with the tiles as the reduction: 36 multiplies per tile and (m, c) instead of the 144 of the
// pixel-reduction GEMM (ConvWeightGradient), at the price of the transforms and a larger float32
// rounding (the transform matrices have entries up to 8; see the tolerance in CpuBackwardTests).
// Work items are (block of <= 128 output channels, block of <= 2 NR input channels). Each runs the
// whole reduction in chunks of 64 tiles, in a fixed order, so the result does not depend on
// scheduling or on the thread count: per chunk it transforms the tiles of its channels, 8 at a time
// (the patches read by masked AVX2 gathers, zero outside the map), transposes them into micro-kernel
// panels (a tile per reduction step: MR output channels of E, NR input channels of V) and runs the
// 36 GEMMs into its dU block; at the end dW = G^T dU G (+ the existing dW when accumulating). A
// second pass sums the bias gradient (as ConvWeightGradient's).
// Shapes: x [N, C, H, W], dy [N, M, H, W], dW [M, C, 3, 3], dBias [M].
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (against ReferenceBackend).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one Winograd weight gradient, run as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class WinogradWeightGradient : IParallelWork, IDisposable
{
    /// <summary>Tiles per reduction chunk (micro-kernel depth).</summary>
    public const int TileChunk = 64;

    /// <summary>Fewest tiles (over the batch) for which this path is chosen by default.</summary>
    public const int MinimumTiles = TileChunk;

    private const int Positions = 36;
    private const int RowBlock = 128;      // output channels per item (16 panels of 8)
    private const int ColumnPanels = 2;    // NR-wide input-channel panels per item
    private const int Lanes = 8;           // tiles per transform (Vector256)

    private readonly GemmKernel kernel;
    private readonly float* zeroBias;
    private readonly float*[] scratch;

    private float* x, dy, dw, db;
    private int inChannels, outChannels, height, width, tilesX, imageTiles, mr, nr;
    private int rowBlocks, columnBlocks, columnsPerBlock;
    private long tiles;
    private bool accumulate, finishing;

    /// <summary>Uses <paramref name="kernel"/> (8-row panels) and <paramref name="zeroBias"/> (at least MR zeros).</summary>
    public WinogradWeightGradient(GemmKernel kernel, float* zeroBias, int workers)
    {
        this.kernel = kernel;
        this.zeroBias = zeroBias;
        scratch = new float*[workers];
    }

    /// <summary>
    /// Whether this path can take the weight gradient of <paramref name="spec"/> over <paramref name="x"/>
    /// on <paramref name="kernel"/>: dense 3x3 stride 1 pad 1, a kernel whose panels the 8x8 transposes fill
    /// (MR and NR multiples of 8), AVX2 gathers, and tensors whose element offsets fit the gathers' 32-bit indices.
    /// </summary>
    public static bool Applies(ConvSpec spec, TensorView x, long dyElements, GemmKernel kernel) =>
        WinogradWeights.Applies(spec) && Avx2.IsSupported && Vector<float>.Count == 8 && kernel.Rows % 8 == 0 && kernel.Columns % 8 == 0
        && x.ElementCount <= int.MaxValue && dyElements <= int.MaxValue;

    /// <summary>Tiles of the reduction for a batch <paramref name="x"/>.</summary>
    public static long TileCount(TensorView x) => (long)x.N * WinogradConvolution.TileCount(x.H, x.W);

    // Per worker: dU [36][RowBlock][2 NR], the E panels [36][RowBlock / MR][TileChunk][MR], the V panels
    // [36][2][TileChunk][NR] and one panel's transforms in natural order [36][max(MR, NR)][TileChunk].
    private long ScratchElements => (long)Positions * (RowBlock * ColumnPanels * kernel.Columns
        + (RowBlock + ColumnPanels * kernel.Columns + Math.Max(kernel.Rows, kernel.Columns)) * TileChunk);

    /// <summary>Sets up one call (growing the per-worker scratch on first use) and returns the items of the GEMM pass.</summary>
    public int Prepare(ConvSpec spec, TensorView xView, float* x, float* dy, float* dw, float* db, bool accumulate, int workers)
    {
        for (int i = 0; i < scratch.Length; i++)
            if (scratch[i] == null) scratch[i] = (float*)NativeMemory.AlignedAlloc((nuint)(ScratchElements * sizeof(float)), 64);
        this.x = x;
        this.dy = dy;
        this.dw = dw;
        this.db = db;
        this.accumulate = accumulate;
        finishing = false;
        inChannels = spec.InChannels;
        outChannels = spec.OutChannels;
        height = xView.H;
        width = xView.W;
        tilesX = (width + 3) / 4;
        imageTiles = WinogradConvolution.TileCount(height, width);
        tiles = (long)xView.N * imageTiles;
        mr = kernel.Rows;
        nr = kernel.Columns;
        rowBlocks = (outChannels + RowBlock - 1) / RowBlock;
        // Two NR panels per item, or one when that leaves fewer than 4 items per worker.
        int panels = (inChannels + nr - 1) / nr;
        int perBlock = (long)rowBlocks * ((panels + ColumnPanels - 1) / ColumnPanels) >= 4L * workers ? ColumnPanels : 1;
        columnsPerBlock = perBlock * nr;
        columnBlocks = (panels + perBlock - 1) / perBlock;
        return rowBlocks * columnBlocks;
    }

    /// <summary>Whether the finishing pass (the bias gradient) must run.</summary>
    public bool NeedsFinish => db != null;

    /// <summary>Switches to the finishing pass; returns its work items (one per output channel).</summary>
    public int PrepareFinish()
    {
        finishing = true;
        return outChannels;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (finishing)
        {
            db[item] = ConvWeightGradient.BiasSum(dy, tiles / imageTiles, outChannels, height * width, item, accumulate ? db[item] : 0f, accumulate);
            return;
        }
        int rb = item / columnBlocks, cb = item % columnBlocks;
        int m0 = rb * RowBlock, m1 = Math.Min(outChannels, m0 + RowBlock);
        int c0 = cb * columnsPerBlock, c1 = Math.Min(inChannels, c0 + columnsPerBlock);
        int rowPanels = (m1 - m0 + mr - 1) / mr, columnPanels = (c1 - c0 + nr - 1) / nr;
        int ldc = columnPanels * nr, rows = rowPanels * mr;

        float* du = scratch[worker];
        float* aPack = du + (long)Positions * RowBlock * ColumnPanels * nr;
        float* bPack = aPack + (long)Positions * RowBlock * TileChunk;
        float* natural = bPack + (long)Positions * ColumnPanels * nr * TileChunk;
        long aPosition = (long)rowPanels * TileChunk * mr, bPosition = (long)columnPanels * TileChunk * nr;
        int naturalRows = Math.Max(mr, nr);
        float** rowPointers = stackalloc float*[naturalRows];
        // Per 8-tile group of a chunk: the gathers' element offsets (image, row, column) and validity, for
        // the 6x6 input patches (V) and the 4x4 output-gradient tiles (E).
        const int Groups = TileChunk / Lanes;
        Vector256<int>* xRow = stackalloc Vector256<int>[Groups * 6], xColumn = stackalloc Vector256<int>[Groups * 6];
        Vector256<int>* xRowOk = stackalloc Vector256<int>[Groups * 6], xColumnOk = stackalloc Vector256<int>[Groups * 6];
        Vector256<int>* eRow = stackalloc Vector256<int>[Groups * 4], eColumn = stackalloc Vector256<int>[Groups * 4];
        Vector256<int>* eRowOk = stackalloc Vector256<int>[Groups * 4], eColumnOk = stackalloc Vector256<int>[Groups * 4];
        int* laneTile = stackalloc int[Lanes];

        bool first = true;
        for (long t0 = 0; t0 < tiles; t0 += TileChunk)
        {
            int tc = (int)Math.Min(TileChunk, tiles - t0);
            TileOffsets(t0, tc, xRow, xColumn, xRowOk, xColumnOk, eRow, eColumn, eRowOk, eColumnOk, laneTile);

            // V panels: input channels c0 + jp * NR + j, tiles as reduction steps.
            for (int jp = 0; jp < columnPanels; jp++)
            {
                for (int j = 0; j < nr; j++)
                {
                    int c = c0 + jp * nr + j;
                    if (c < c1)
                        for (int g = 0; g * Lanes < tc; g++)
                            InputTransform(x + (long)c * height * width, g, xRow, xColumn, xRowOk, xColumnOk, natural + (long)j * TileChunk + g * Lanes, (long)naturalRows * TileChunk);
                }
                for (int xi = 0; xi < Positions; xi++)
                {
                    for (int j = 0; j < nr; j++)
                        rowPointers[j] = c0 + jp * nr + j < c1 ? natural + ((long)xi * naturalRows + j) * TileChunk : null;
                    ConvWeightGradient.TransposeRows(rowPointers, nr, tc, bPack + xi * bPosition + (long)jp * TileChunk * nr);
                }
            }
            // E panels: output channels m0 + ip * MR + r.
            for (int ip = 0; ip < rowPanels; ip++)
            {
                for (int r = 0; r < mr; r++)
                {
                    int m = m0 + ip * mr + r;
                    if (m < m1)
                        for (int g = 0; g * Lanes < tc; g++)
                            GradientTransform(dy + (long)m * height * width, g, eRow, eColumn, eRowOk, eColumnOk, natural + (long)r * TileChunk + g * Lanes, (long)naturalRows * TileChunk);
                }
                for (int xi = 0; xi < Positions; xi++)
                {
                    for (int r = 0; r < mr; r++)
                        rowPointers[r] = m0 + ip * mr + r < m1 ? natural + ((long)xi * naturalRows + r) * TileChunk : null;
                    ConvWeightGradient.TransposeRows(rowPointers, mr, tc, aPack + xi * aPosition + (long)ip * TileChunk * mr);
                }
            }
            // 36 GEMMs: dU_xi[m, c] (+)= sum over the chunk's tiles of E_xi[m, t] V_xi[c, t].
            int mode = first ? GemmMicroKernels.First : 0;
            for (int xi = 0; xi < Positions; xi++)
            {
                float* duXi = du + (long)xi * rows * ldc;
                for (int jp = 0; jp < columnPanels; jp++)
                {
                    float* b = bPack + xi * bPosition + (long)jp * TileChunk * nr;
                    for (int ip = 0; ip < rowPanels; ip++)
                        kernel.Tile(tc, aPack + xi * aPosition + (long)ip * TileChunk * mr, b, duXi + (long)ip * mr * ldc + jp * nr, ldc, zeroBias, null, mode);
                }
            }
            first = false;
        }

        // dW[m, c] (+)= G^T dU[m, c] G, 8 input channels at a time.
        long position = (long)rows * ldc;
        Vector256<float>* u = stackalloc Vector256<float>[Positions];
        Vector256<float>* half = stackalloc Vector256<float>[18];
        float* result = stackalloc float[9 * Lanes];
        Vector256<float>* three = stackalloc Vector256<float>[3];
        for (int m = m0; m < m1; m++)
        {
            for (int c = c0; c < c1; c += Lanes)
            {
                float* at = du + (long)(m - m0) * ldc + (c - c0);
                for (int xi = 0; xi < Positions; xi++) u[xi] = Vector256.Load(at + xi * position);
                for (int b = 0; b < 6; b++) GtColumn(u[b], u[6 + b], u[12 + b], u[18 + b], u[24 + b], u[30 + b], half + b, 6);
                for (int i = 0; i < 3; i++)
                {
                    Vector256<float>* row = half + i * 6;
                    GtColumn(row[0], row[1], row[2], row[3], row[4], row[5], three, 1);
                    for (int j = 0; j < 3; j++) three[j].Store(result + (i * 3 + j) * Lanes);
                }
                int count = Math.Min(Lanes, c1 - c);
                for (int l = 0; l < count; l++)
                {
                    float* target = dw + ((long)m * inChannels + c + l) * 9;
                    for (int k = 0; k < 9; k++) target[k] = accumulate ? target[k] + result[k * Lanes + l] : result[k * Lanes + l];
                }
            }
        }
    }

    // The gathers' offsets for tiles t0 .. t0 + tc - 1 (global over the batch): per 8-tile group g, for patch row i
    // of V (input rows 4ty - 1 + i) and of E (output rows 4ty + i): the image and row offset and whether the row
    // lies in the map (and the tile exists); the same for the columns.
    private void TileOffsets(long t0, int tc, Vector256<int>* xRow, Vector256<int>* xColumn, Vector256<int>* xRowOk, Vector256<int>* xColumnOk,
        Vector256<int>* eRow, Vector256<int>* eColumn, Vector256<int>* eRowOk, Vector256<int>* eColumnOk, int* laneTile)
    {
        int* values = stackalloc int[Lanes];
        int* ok = stackalloc int[Lanes];
        for (int g = 0; g * Lanes < tc; g++)
        {
            for (int i = 0; i < 6; i++)
            {
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    bool exists = g * Lanes + l < tc;
                    int n = (int)(t / imageTiles), ty = (int)(t % imageTiles) / tilesX;
                    int y = 4 * ty - 1 + i;
                    values[l] = exists ? n * inChannels * height * width + y * width : 0;
                    ok[l] = exists && (uint)y < (uint)height ? -1 : 0;
                }
                xRow[g * 6 + i] = Vector256.Load(values);
                xRowOk[g * 6 + i] = Vector256.Load(ok);
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    int tx = (int)(t % imageTiles) % tilesX, column = 4 * tx - 1 + i;
                    values[l] = column;
                    ok[l] = (uint)column < (uint)width ? -1 : 0;
                }
                xColumn[g * 6 + i] = Vector256.Load(values);
                xColumnOk[g * 6 + i] = Vector256.Load(ok);
            }
            for (int i = 0; i < 4; i++)
            {
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    bool exists = g * Lanes + l < tc;
                    int n = (int)(t / imageTiles), ty = (int)(t % imageTiles) / tilesX;
                    int y = 4 * ty + i;
                    values[l] = exists ? n * outChannels * height * width + y * width : 0;
                    ok[l] = exists && y < height ? -1 : 0;
                }
                eRow[g * 4 + i] = Vector256.Load(values);
                eRowOk[g * 4 + i] = Vector256.Load(ok);
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    int tx = (int)(t % imageTiles) % tilesX, column = 4 * tx + i;
                    values[l] = column;
                    ok[l] = column < width ? -1 : 0;
                }
                eColumn[g * 4 + i] = Vector256.Load(values);
                eColumnOk[g * 4 + i] = Vector256.Load(ok);
            }
        }
    }

    // V = B^T d B for the 8 tiles of group g of channel plane `channel` (image 0's plane; the offsets add the image):
    // output[xi * positionStride + l].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InputTransform(float* channel, int g, Vector256<int>* row, Vector256<int>* column, Vector256<int>* rowOk, Vector256<int>* columnOk,
        float* output, long positionStride)
    {
        Vector<float>* t = stackalloc Vector<float>[36];
        for (int i = 0; i < 6; i++)
        {
            Vector256<int> r = row[g * 6 + i], ok = rowOk[g * 6 + i];
            WinogradConvolution.BtRow(Gather(channel, r, ok, column, columnOk, g * 6), Gather(channel, r, ok, column, columnOk, g * 6 + 1),
                Gather(channel, r, ok, column, columnOk, g * 6 + 2), Gather(channel, r, ok, column, columnOk, g * 6 + 3),
                Gather(channel, r, ok, column, columnOk, g * 6 + 4), Gather(channel, r, ok, column, columnOk, g * 6 + 5), t + i * 6, 1);
        }
        Vector<float>* v = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            WinogradConvolution.BtRow(t[b], t[6 + b], t[12 + b], t[18 + b], t[24 + b], t[30 + b], v + b, 6);
        for (int xi = 0; xi < 36; xi++) v[xi].Store(output + xi * positionStride);
    }

    // E = A e A^T for the 8 output-gradient tiles of group g of plane `plane`: output[xi * positionStride + l].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GradientTransform(float* plane, int g, Vector256<int>* row, Vector256<int>* column, Vector256<int>* rowOk, Vector256<int>* columnOk,
        float* output, long positionStride)
    {
        Vector<float>* t = stackalloc Vector<float>[24];
        for (int i = 0; i < 4; i++)
        {
            Vector256<int> r = row[g * 4 + i], ok = rowOk[g * 4 + i];
            ARow(Gather(plane, r, ok, column, columnOk, g * 4), Gather(plane, r, ok, column, columnOk, g * 4 + 1),
                Gather(plane, r, ok, column, columnOk, g * 4 + 2), Gather(plane, r, ok, column, columnOk, g * 4 + 3), t + i * 6, 1);
        }
        Vector<float>* e = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            ARow(t[b], t[6 + b], t[12 + b], t[18 + b], e + b, 6);
        for (int xi = 0; xi < 36; xi++) e[xi].Store(output + xi * positionStride);
    }

    // plane[row + column[k]] for the lanes whose row and column both lie in the map, else 0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Gather(float* plane, Vector256<int> row, Vector256<int> rowOk, Vector256<int>* column, Vector256<int>* columnOk, int k)
    {
        Vector256<float> mask = (rowOk & columnOk[k]).AsSingle();
        return Avx2.GatherMaskVector256(Vector256<float>.Zero, plane, row + column[k], mask, 4).AsVector();
    }

    // r = A e for one 4-vector e (A: 6x4, the transpose of the forward's A^T): r[a] goes to dst[a * stride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ARow(Vector<float> e0, Vector<float> e1, Vector<float> e2, Vector<float> e3, Vector<float>* dst, int stride)
    {
        Vector<float> s02 = e0 + e2, s13 = e1 + e3;
        Vector<float> p = e0 + new Vector<float>(4f) * e2, q = new Vector<float>(2f) * e1 + new Vector<float>(8f) * e3;
        dst[0] = e0;
        dst[stride] = s02 + s13;
        dst[2 * stride] = s02 - s13;
        dst[3 * stride] = p + q;
        dst[4 * stride] = p - q;
        dst[5 * stride] = e3;
    }

    // r = G^T u for one 6-vector u (G of F(4, 3), 6x3): r[i] goes to dst[i * stride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GtColumn(Vector256<float> u0, Vector256<float> u1, Vector256<float> u2, Vector256<float> u3, Vector256<float> u4, Vector256<float> u5,
        Vector256<float>* dst, int stride)
    {
        Vector256<float> s12 = u1 + u2, s34 = u3 + u4;
        dst[0] = u0 * Vector256.Create(1f / 4) - s12 * Vector256.Create(1f / 6) + s34 * Vector256.Create(1f / 24);
        dst[stride] = (u2 - u1) * Vector256.Create(1f / 6) + (u3 - u4) * Vector256.Create(1f / 12);
        dst[2 * stride] = (s34 - s12) * Vector256.Create(1f / 6) + u5;
    }

    /// <summary>Frees the scratch.</summary>
    public void Dispose()
    {
        for (int i = 0; i < scratch.Length; i++)
        {
            NativeMemory.AlignedFree(scratch[i]);
            scratch[i] = null;
        }
    }
}
