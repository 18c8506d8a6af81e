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
// The work runs in passes over blocks of <= 256 output and <= 288 input channels (dU of a pass:
// at most 36 x 256 x 288 floats, 10.6 MB), each over the batch's tiles in chunks of 128, in a fixed
// order, so the result depends neither on scheduling nor on the thread count. Per chunk two parallel
// phases: (1) the transforms, each E and V row of the pass made once (items: one NR panel of input
// channels, or six MR panels of output channels), 8 tiles at a time, their patches read by stride-4
// deinterleaves of contiguous rows where the 8 tiles lie in one tile row inside the map (AVX-512), else
// by masked AVX2 gathers (zero outside the map), transposed by 8x8 blocks into shared micro-kernel panels (a tile
// per reduction step); (2) the 36 GEMMs into the pass's dU (items: 128 output x 2 NR input channels).
// After the last chunk of a pass, dW = G^T dU G (+ the existing dW when accumulating), one item per
// output channel; a last pass sums the bias gradient (as ConvWeightGradient's). A pass's dU and E
// panels live in memory the caller lends (CpuBackend: the transient panels' scratch) when they fit
// there, the V panels and anything that does not fit in this object's own scratch.
// Shapes: x [N, C, H, W], dy [N, M, H, W], dW [M, C, 3, 3], dBias [M].
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (against ReferenceBackend).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>One Winograd weight gradient, run as parallel phases on the CPU backend's workers.</summary>
[SkipLocalsInit]
internal sealed unsafe class WinogradWeightGradient : IParallelWork, IDisposable
{
    /// <summary>
    /// Tiles per reduction chunk (micro-kernel depth): 128, as the forward GEMM's k blocks; each chunk reads and
    /// writes the pass's dU (up to 10.6 MB, from L3) once, so longer chunks halve that traffic against 64.
    /// </summary>
    public const int TileChunk = 128;

    /// <summary>
    /// Fewest tiles (over the batch) for which this path is chosen by default for convolutions of at most one
    /// pass of input channels (<see cref="MinimumTilesFor"/>): R-50 at 512x640, batch 2, from P5 (two 16x20 maps,
    /// 40 tiles: the head's 3x3 256-256 weight gradients took 40-43 ms instead of 54-56 ms per step as the
    /// pixel-reduction GEMM) up; not P6 (12 tiles).
    /// </summary>
    public const int MinimumTiles = 40;

    /// <summary>
    /// Fewest tiles for convolutions of more input channels than one pass takes (288: layer4's 512): 64. At 40
    /// tiles layer4's 3x3 512-512s gained ~7 ms per step and raised the step's peak RSS by ~22 MB (not traced;
    /// most likely their pass scratch outgrew the memory lent at that point of the backward pass and was
    /// allocated), against a memory goal that the step meets by little.
    /// </summary>
    public const int MinimumTilesWide = 64;

    /// <summary>The default tile threshold of <paramref name="spec"/>: <see cref="MinimumTiles"/> or <see cref="MinimumTilesWide"/>.</summary>
    public static int MinimumTilesFor(ConvSpec spec) => spec.InChannels <= PassColumnPanels * 48 /* the AVX-512 NR: this path's only kernel */ ? MinimumTiles : MinimumTilesWide;

    private const int Positions = 36;
    private const int PassRows = 256;          // output channels per pass
    private const int PassColumnPanels = 6;    // NR-wide input-channel panels per pass
    private const int GemmRows = 128;          // output channels per GEMM item
    private const int GemmColumnPanels = 2;    // NR panels per GEMM item
    private const int TransformPanels = 6;     // MR panels of output channels per transform item
    private const int Lanes = 8;               // tiles per transform (Vector256)
    private const int Groups = TileChunk / Lanes;

    private enum Phase { Transform, Gemm, Finish, Bias }

    private readonly GemmKernel kernel;
    private readonly float* zeroBias;
    private readonly float*[] natural; // per worker: one item's transforms in natural order [36][48][TileChunk]
    private Vector256<int>* offsets; // the chunk's gather offsets and validity (TileOffsets)
    private int* interior;           // per group of the chunk: the V and E patch origins of an interior run, or -1
    private float* shared;              // the V panels of a pass, then (unless lent memory holds them) dU and the E panels
    private long sharedCapacity;

    private float* x, dy, dw, db;
    private int inChannels, outChannels, height, width, tilesX, imageTiles, mr, nr, naturalRows;
    private long tiles;
    private bool accumulate;
    private Phase phase;
    // The pass and chunk being run.
    private int m0, rows, rowPanels, c0, columns, columnPanels, ldc, tc, gemmColumnBlocks;
    private bool firstChunk;
    private float* du, aPack, bPack;
    private long aPosition, bPosition, duPosition;

    /// <summary>Uses <paramref name="kernel"/> and <paramref name="zeroBias"/> (at least MR zeros).</summary>
    public WinogradWeightGradient(GemmKernel kernel, float* zeroBias, int workers)
    {
        this.kernel = kernel;
        this.zeroBias = zeroBias;
        natural = new float*[workers];
        offsets = (Vector256<int>*)NativeMemory.AlignedAlloc((nuint)(Groups * 40 * sizeof(Vector256<int>)), 64);
        interior = (int*)NativeMemory.AlignedAlloc((nuint)(Groups * 2 * sizeof(int)), 64);
    }

    /// <summary>
    /// Whether this path can take the weight gradient of <paramref name="spec"/> over <paramref name="x"/>
    /// on <paramref name="kernel"/>: dense 3x3 stride 1 pad 1, a kernel whose panels the 8x8 transposes fill
    /// (MR and NR multiples of 8), AVX2 gathers on 8-float vectors, and tensors whose element offsets fit the
    /// gathers' 32-bit indices.
    /// </summary>
    public static bool Applies(ConvSpec spec, TensorView x, long dyElements, GemmKernel kernel) =>
        WinogradWeights.Applies(spec) && Avx2.IsSupported && Vector<float>.Count == 8 && kernel.Rows % 8 == 0 && kernel.Columns % 8 == 0
        && x.ElementCount <= int.MaxValue && dyElements <= int.MaxValue;

    /// <summary>Passes run so far whose dU and output-gradient panels were in the caller's lent memory (tests).</summary>
    internal long LentPasses { get; private set; }

    /// <summary>Tiles of the reduction for a batch <paramref name="x"/>.</summary>
    public static long TileCount(TensorView x) => (long)x.N * WinogradConvolution.TileCount(x.H, x.W);

    /// <summary>
    /// Computes dW (and dBias when <paramref name="db"/> is not null), (+)= when <paramref name="accumulate"/>. A pass's
    /// dU and output-gradient panels use <paramref name="lent"/> (<paramref name="lentLength"/> floats of the caller's
    /// free scratch) when they fit there, else this object's own scratch, as do the input panels.
    /// </summary>
    public void Run(CpuWorkerPool pool, ConvSpec spec, TensorView xView, float* x, float* dy, float* dw, float* db, bool accumulate,
        float* lent, long lentLength)
    {
        mr = kernel.Rows;
        nr = kernel.Columns;
        naturalRows = Math.Max(TransformPanels * mr, nr);
        for (int i = 0; i < natural.Length; i++)
            if (natural[i] == null) natural[i] = (float*)NativeMemory.AlignedAlloc((nuint)((long)Positions * naturalRows * TileChunk * sizeof(float)), 64);
        this.x = x;
        this.dy = dy;
        this.dw = dw;
        this.db = db;
        this.accumulate = accumulate;
        inChannels = spec.InChannels;
        outChannels = spec.OutChannels;
        height = xView.H;
        width = xView.W;
        tilesX = (width + 3) / 4;
        imageTiles = WinogradConvolution.TileCount(height, width);
        tiles = (long)xView.N * imageTiles;

        int passColumns = PassColumnPanels * nr;
        for (int pm = 0; pm < outChannels; pm += PassRows)
        {
            for (int pc = 0; pc < inChannels; pc += passColumns)
            {
                m0 = pm;
                rows = Math.Min(PassRows, outChannels - pm);
                rowPanels = (rows + mr - 1) / mr;
                c0 = pc;
                columns = Math.Min(passColumns, inChannels - pc);
                columnPanels = (columns + nr - 1) / nr;
                ldc = columnPanels * nr;
                gemmColumnBlocks = (columnPanels + GemmColumnPanels - 1) / GemmColumnPanels;
                duPosition = (long)rowPanels * mr * ldc;
                aPosition = (long)rowPanels * TileChunk * mr;
                bPosition = (long)columnPanels * TileChunk * nr;
                bool useLent = lent != null && Positions * (duPosition + aPosition) <= lentLength;
                long needed = Positions * (bPosition + (useLent ? 0 : duPosition + aPosition));
                if (needed > sharedCapacity)
                {
                    NativeMemory.AlignedFree(shared);
                    shared = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
                    sharedCapacity = needed;
                }
                bPack = shared;
                du = useLent ? lent : shared + Positions * bPosition;
                if (useLent) LentPasses++;
                aPack = du + Positions * duPosition;
                for (long t0 = 0; t0 < tiles; t0 += TileChunk)
                {
                    tc = (int)Math.Min(TileChunk, tiles - t0);
                    firstChunk = t0 == 0;
                    TileOffsets(t0);
                    phase = Phase.Transform;
                    pool.Run(this, columnPanels + (rowPanels + TransformPanels - 1) / TransformPanels);
                    phase = Phase.Gemm;
                    pool.Run(this, (rowPanels * mr + GemmRows - 1) / GemmRows * gemmColumnBlocks);
                }
                phase = Phase.Finish;
                pool.Run(this, rows);
            }
        }
        if (db != null)
        {
            phase = Phase.Bias;
            pool.Run(this, outChannels);
        }
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        switch (phase)
        {
            case Phase.Transform:
                if (item < columnPanels)
                    TransformInputs(item, natural[worker]);
                else
                    TransformGradients(item - columnPanels, natural[worker]);
                break;
            case Phase.Gemm:
                Gemm(item);
                break;
            case Phase.Finish:
                Finish(m0 + item);
                break;
            default:
                db[item] = ConvWeightGradient.BiasSum(dy, tiles / imageTiles, outChannels, height * width, item, db[item], accumulate);
                break;
        }
    }

    // V panel jp of the pass: input channels c0 + jp * NR + j, the chunk's tiles as reduction steps.
    private void TransformInputs(int jp, float* scratch)
    {
        long stride = (long)naturalRows * TileChunk;
        int count = Math.Min(nr, columns - jp * nr);
        for (int j = 0; j < count; j++)
        {
            float* plane = x + (long)(c0 + jp * nr + j) * height * width;
            for (int g = 0; g * Lanes < tc; g++)
                InputTransform(plane, g, scratch + (long)j * TileChunk + g * Lanes, stride);
        }
        float** rowPointers = stackalloc float*[nr];
        for (int xi = 0; xi < Positions; xi++)
        {
            for (int j = 0; j < nr; j++) rowPointers[j] = j < count ? scratch + ((long)xi * naturalRows + j) * TileChunk : null;
            ConvWeightGradient.TransposeRows(rowPointers, nr, tc, bPack + xi * bPosition + (long)jp * TileChunk * nr);
        }
    }

    // E panels TransformPanels * group .. of the pass: output channels m0 + ip * MR + r.
    private void TransformGradients(int group, float* scratch)
    {
        long stride = (long)naturalRows * TileChunk;
        int first = group * TransformPanels * mr, count = Math.Min(TransformPanels * mr, rows - first);
        for (int r = 0; r < count; r++)
        {
            float* plane = dy + (long)(m0 + first + r) * height * width;
            for (int g = 0; g * Lanes < tc; g++)
                GradientTransform(plane, g, scratch + (long)r * TileChunk + g * Lanes, stride);
        }
        int panels = (count + mr - 1) / mr;
        float** rowPointers = stackalloc float*[mr];
        for (int xi = 0; xi < Positions; xi++)
            for (int p = 0; p < panels; p++)
            {
                for (int r = 0; r < mr; r++)
                    rowPointers[r] = p * mr + r < count ? scratch + ((long)xi * naturalRows + p * mr + r) * TileChunk : null;
                ConvWeightGradient.TransposeRows(rowPointers, mr, tc, aPack + xi * aPosition + (long)(first / mr + p) * TileChunk * mr);
            }
    }

    // GEMM item: dU_xi[m, c] (+)= sum over the chunk's tiles of E_xi[m, t] V_xi[c, t] for GemmRows output channels x
    // GemmColumnPanels NR panels of the pass.
    private void Gemm(int item)
    {
        int rowBlock = item / gemmColumnBlocks, columnBlock = item % gemmColumnBlocks;
        int ip0 = rowBlock * GemmRows / mr, ip1 = Math.Min(rowPanels, ip0 + GemmRows / mr);
        int jp0 = columnBlock * GemmColumnPanels, jp1 = Math.Min(columnPanels, jp0 + GemmColumnPanels);
        int mode = firstChunk ? GemmMicroKernels.First : 0;
        for (int xi = 0; xi < Positions; xi++)
        {
            float* duXi = du + xi * duPosition;
            for (int jp = jp0; jp < jp1; jp++)
            {
                float* b = bPack + xi * bPosition + (long)jp * TileChunk * nr;
                for (int ip = ip0; ip < ip1; ip++)
                    kernel.Tile(tc, aPack + xi * aPosition + (long)ip * TileChunk * mr, b, duXi + (long)ip * mr * ldc + jp * nr, ldc, zeroBias, null, mode);
            }
        }
    }

    // dW[m, c] (+)= G^T dU[m, c] G for the pass's input channels, 8 at a time.
    private void Finish(int m)
    {
        Vector256<float>* u = stackalloc Vector256<float>[Positions];
        Vector256<float>* half = stackalloc Vector256<float>[18];
        Vector256<float>* three = stackalloc Vector256<float>[3];
        float* result = stackalloc float[9 * Lanes];
        for (int c = 0; c < columns; c += Lanes)
        {
            float* at = du + (long)(m - m0) * ldc + c;
            for (int xi = 0; xi < Positions; xi++) u[xi] = Vector256.Load(at + xi * duPosition);
            for (int b = 0; b < 6; b++) GtColumn(u[b], u[6 + b], u[12 + b], u[18 + b], u[24 + b], u[30 + b], half + b, 6);
            for (int i = 0; i < 3; i++)
            {
                Vector256<float>* row = half + i * 6;
                GtColumn(row[0], row[1], row[2], row[3], row[4], row[5], three, 1);
                for (int j = 0; j < 3; j++) three[j].Store(result + (i * 3 + j) * Lanes);
            }
            int count = Math.Min(Lanes, columns - c);
            for (int l = 0; l < count; l++)
            {
                float* target = dw + ((long)m * inChannels + c0 + c + l) * 9;
                for (int k = 0; k < 9; k++) target[k] = accumulate ? target[k] + result[k * Lanes + l] : result[k * Lanes + l];
            }
        }
    }

    // The gathers' offsets for the chunk's tiles t0 .. t0 + tc - 1 (global over the batch), per 8-tile group g:
    // for patch row/column i of V (input rows and columns 4ty - 1 + i, 4tx - 1 + i) and of E (output rows and
    // columns 4ty + i, 4tx + i) the image-and-row offset, the column, and whether each lies in the map (rows:
    // and the tile exists). Layout per group: V rows, V row flags, V columns, V column flags (6 each), then E's (4 each).
    private void TileOffsets(long t0)
    {
        int* values = stackalloc int[Lanes];
        int* ok = stackalloc int[Lanes];
        for (int g = 0; g * Lanes < tc; g++)
        {
            // An interior run: 8 tiles of one tile row whose patches lie inside the map, read by contiguous loads.
            long first = t0 + g * Lanes;
            int n0 = (int)(first / imageTiles), ty0 = (int)(first % imageTiles) / tilesX, tx0 = (int)(first % imageTiles) % tilesX;
            bool run = g * Lanes + Lanes <= tc && tx0 + Lanes <= tilesX;
            interior[2 * g] = run && tx0 >= 1 && 4 * tx0 + 32 < width && ty0 >= 1 && 4 * ty0 + 4 < height
                ? n0 * inChannels * height * width + (4 * ty0 - 1) * width + 4 * tx0 - 1 : -1;
            interior[2 * g + 1] = run && 4 * tx0 + 31 < width && 4 * ty0 + 3 < height
                ? n0 * outChannels * height * width + 4 * ty0 * width + 4 * tx0 : -1;
            Vector256<int>* o = offsets + g * 40;
            for (int i = 0; i < 6; i++)
            {
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    bool exists = g * Lanes + l < tc;
                    int n = (int)(t / imageTiles), ty = (int)(t % imageTiles) / tilesX, y = 4 * ty - 1 + i;
                    values[l] = exists ? n * inChannels * height * width + y * width : 0;
                    ok[l] = exists && (uint)y < (uint)height ? -1 : 0;
                }
                o[i] = Vector256.Load(values);
                o[6 + i] = Vector256.Load(ok);
                for (int l = 0; l < Lanes; l++)
                {
                    int tx = (int)((t0 + g * Lanes + l) % imageTiles) % tilesX, column = 4 * tx - 1 + i;
                    values[l] = column;
                    ok[l] = (uint)column < (uint)width ? -1 : 0;
                }
                o[12 + i] = Vector256.Load(values);
                o[18 + i] = Vector256.Load(ok);
            }
            for (int i = 0; i < 4; i++)
            {
                for (int l = 0; l < Lanes; l++)
                {
                    long t = t0 + g * Lanes + l;
                    bool exists = g * Lanes + l < tc;
                    int n = (int)(t / imageTiles), ty = (int)(t % imageTiles) / tilesX, y = 4 * ty + i;
                    values[l] = exists ? n * outChannels * height * width + y * width : 0;
                    ok[l] = exists && y < height ? -1 : 0;
                }
                o[24 + i] = Vector256.Load(values);
                o[28 + i] = Vector256.Load(ok);
                for (int l = 0; l < Lanes; l++)
                {
                    int tx = (int)((t0 + g * Lanes + l) % imageTiles) % tilesX, column = 4 * tx + i;
                    values[l] = column;
                    ok[l] = column < width ? -1 : 0;
                }
                o[32 + i] = Vector256.Load(values);
                o[36 + i] = Vector256.Load(ok);
            }
        }
    }

    // V = B^T d B for the 8 tiles of group g of input plane `plane` (image 0's; the offsets add the image):
    // output[xi * positionStride + l].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputTransform(float* plane, int g, float* output, long positionStride)
    {
        Vector256<int>* o = offsets + g * 40;
        Vector<float>* t = stackalloc Vector<float>[36];
        int origin = interior[2 * g];
        if (origin >= 0 && Avx512F.IsSupported)
        {
            // Lane l, column k = row[4l + k] of the run's row (from column 4 tx0 - 1): stride-4 deinterleaves of
            // row[0..31] (k < 4) and row[2..33] (k = 4, 5), as the forward's padded-row transform.
            for (int i = 0; i < 6; i++)
            {
                float* row = plane + origin + (long)i * width;
                Vector512<float> lo = Vector512.Load(row), hi = Vector512.Load(row + 16);
                Vector512<float> lo2 = Vector512.Load(row + 2), hi2 = Vector512.Load(row + 18);
                WinogradConvolution.BtRow(Every4th(lo, hi, 0),
                    Every4th(lo, hi, 1), Every4th(lo, hi, 2),
                    Every4th(lo, hi, 3), Every4th(lo2, hi2, 2),
                    Every4th(lo2, hi2, 3), t + i * 6, 1);
            }
        }
        else
        {
            for (int i = 0; i < 6; i++)
            {
                Vector256<int> row = o[i], rowOk = o[6 + i];
                WinogradConvolution.BtRow(Gather(plane, row, rowOk, o[12], o[18]), Gather(plane, row, rowOk, o[13], o[19]),
                    Gather(plane, row, rowOk, o[14], o[20]), Gather(plane, row, rowOk, o[15], o[21]),
                    Gather(plane, row, rowOk, o[16], o[22]), Gather(plane, row, rowOk, o[17], o[23]), t + i * 6, 1);
            }
        }
        Vector<float>* v = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            WinogradConvolution.BtRow(t[b], t[6 + b], t[12 + b], t[18 + b], t[24 + b], t[30 + b], v + b, 6);
        for (int xi = 0; xi < 36; xi++) v[xi].Store(output + xi * positionStride);
    }

    // E = A e A^T for the 8 output-gradient tiles of group g of plane `plane`: output[xi * positionStride + l].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GradientTransform(float* plane, int g, float* output, long positionStride)
    {
        Vector256<int>* o = offsets + g * 40;
        Vector<float>* t = stackalloc Vector<float>[24];
        int origin = interior[2 * g + 1];
        if (origin >= 0 && Avx512F.IsSupported)
        {
            // Lane l, column k = row[4l + k] of the run's row (from column 4 tx0): stride-4 deinterleaves of row[0..31].
            for (int i = 0; i < 4; i++)
            {
                float* row = plane + origin + (long)i * width;
                Vector512<float> lo = Vector512.Load(row), hi = Vector512.Load(row + 16);
                ARow(Every4th(lo, hi, 0), Every4th(lo, hi, 1),
                    Every4th(lo, hi, 2), Every4th(lo, hi, 3), t + i * 6, 1);
            }
        }
        else
        {
            for (int i = 0; i < 4; i++)
            {
                Vector256<int> row = o[24 + i], rowOk = o[28 + i];
                ARow(Gather(plane, row, rowOk, o[32], o[36]), Gather(plane, row, rowOk, o[33], o[37]),
                    Gather(plane, row, rowOk, o[34], o[38]), Gather(plane, row, rowOk, o[35], o[39]), t + i * 6, 1);
            }
        }
        Vector<float>* e = stackalloc Vector<float>[36];
        for (int b = 0; b < 6; b++)
            ARow(t[b], t[6 + b], t[12 + b], t[18 + b], e + b, 6);
        for (int xi = 0; xi < 36; xi++) e[xi].Store(output + xi * positionStride);
    }

    // Lane l = element k + 4l of the 32 floats lo:hi (the forward's stride-4 deinterleave).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Every4th(Vector512<float> lo, Vector512<float> hi, int k) =>
        Avx512F.PermuteVar16x32x2(lo, WinogradConvolution.Stride4[k], hi).GetLower().AsVector();

    // plane[row + column] for the lanes whose row and column both lie in the map, else 0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Gather(float* plane, Vector256<int> row, Vector256<int> rowOk, Vector256<int> column, Vector256<int> columnOk) =>
        Avx2.GatherMaskVector256(Vector256<float>.Zero, plane, row + column, (rowOk & columnOk).AsSingle(), 4).AsVector();

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
        for (int i = 0; i < natural.Length; i++)
        {
            NativeMemory.AlignedFree(natural[i]);
            natural[i] = null;
        }
        NativeMemory.AlignedFree(shared);
        shared = null;
        sharedCapacity = 0;
        NativeMemory.AlignedFree(offsets);
        offsets = null;
        NativeMemory.AlignedFree(interior);
        interior = null;
    }
}
