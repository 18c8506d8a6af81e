// The input gradient of a convolution that is not a stride-1 convolution of dy (stride 2, or
// padding above k - 1), as columns then scatter, per image n and group g:
//   cols[k, p] = sum over m of W_g^T[k, m] * dY[n, g*M + m, p]            (GEMM, K x pixels)
//   dx[n, g*in/groups + c, oy*s - pad + ky, ox*s - pad + kx] += cols[(c*kh + ky)*kw + kx, (oy, ox)]
// (col2im; taps outside the image are dropped). Stride-1 convolutions with padding <= k - 1 do
// not come here: their input gradient is a forward convolution with transposed, flipped weights
// (PackedConvWeights.BackwardData), which runs on the forward GEMM or Winograd paths.
// Work items are (image, group, band of R output rows, chunk of the group's input channels: more
// than one only on small maps, see Prepare). A band's columns land in input rows
// [oy0*s - pad, (oy1 - 1)*s - pad + k); bands two apart never overlap (R*s >= k - s), so the even
// bands run as one parallel pass and the odd bands as a second (one pass when k <= s: no band
// overlaps another); chunks write disjoint channels. Every dx element therefore gets its
// contributions in one fixed order whatever the scheduling. Per band and chunk: column blocks of
// <= 10 NR pixels, row blocks of 256 column rows, the reduction over M in blocks of 128 (dY rows
// copied into NR-pixel panels, the weights pre-packed as MR-row panels of W_g^T,
// PackedConvWeights.TransposedPanels, repacked on all workers when stale), the micro-kernel into
// a per-worker column tile, then the scatter-add of that tile.
// Not accumulating, each band first zeroes the dx rows it is the first to write (in its chunk's
// channels): band b owns input rows [b*R*s - pad, (b+1)*R*s - pad) (band 0 from row 0, the last
// to row H) and spills k - s rows into the next band's; an even band zeroes its rows and its
// spill, an odd band its rows past the previous band's spill (no separate pass over dx; when
// pad > R*s the rows do not line up like that and dx is zeroed in a pass of its own first).
// Shapes: dy [N, out, OH, OW], dx [N, in, H, W].
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (against ReferenceBackend).
using System.Runtime.InteropServices;

namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one columns-then-scatter input gradient, run as parallel work items.</summary>
[System.Runtime.CompilerServices.SkipLocalsInit]
internal sealed unsafe class ConvInputGradient : IParallelWork, IDisposable
{
    /// <summary>NR multiples per column block (pixels of one column tile).</summary>
    public const int ColumnBlockPanels = 10;

    /// <summary>Most column rows (of K) per column tile (rounded down to whole MR panels).</summary>
    public const int RowBlock = 256;

    /// <summary>Reduction steps (output channels) per packed dY block.</summary>
    public const int DepthBlock = 128;

    /// <summary>Fewest column rows per channel chunk (see <see cref="Prepare"/>).</summary>
    public const int MinimumChunkRows = 256;

    private readonly GemmKernel kernel;
    private readonly float* zeroBias;
    private readonly float*[] scratch;

    // Per-call arguments.
    private PackedConvWeights conv = null!;
    private float* dy, dx, panels;
    private int height, width, outHeight, outWidth, pixels, inPerGroup, outPerGroup, depth, rowPanelsPerGroup;
    private int bandRows, bands, phases, phase, images, chunks, chunkChannels;
    private bool zeroInBands;

    /// <summary>Uses <paramref name="kernel"/> (the backend's full kernel) and <paramref name="zeroBias"/> (at least MR zeros).</summary>
    public ConvInputGradient(GemmKernel kernel, float* zeroBias, int workers)
    {
        this.kernel = kernel;
        this.zeroBias = zeroBias;
        scratch = new float*[workers];
    }

    private int ColumnTile => ColumnBlockPanels * kernel.Columns; // the column tile's row stride

    // Per worker: the column tile (RowBlock x ColumnTile) and the packed dY block (DepthBlock x ColumnTile).
    private long ScratchElements => (long)(RowBlock + DepthBlock) * ColumnTile;

    /// <summary>
    /// Sets up one call; returns the number of passes (1 or 2; run each with <see cref="PreparePhase"/>).
    /// Not accumulating, the caller zeroes dx first when <see cref="ZeroesInBands"/> is false.
    /// </summary>
    public int Prepare(PackedConvWeights conv, TensorView dyView, TensorView dxView, float* dy, float* dx, float* panels, bool accumulate, int workers)
    {
        for (int i = 0; i < scratch.Length; i++)
            if (scratch[i] == null) scratch[i] = (float*)NativeMemory.AlignedAlloc((nuint)(ScratchElements * sizeof(float)), 64);
        ConvSpec s = conv.Spec;
        this.conv = conv;
        this.dy = dy;
        this.dx = dx;
        this.panels = panels;
        images = dyView.N;
        height = dxView.H;
        width = dxView.W;
        outHeight = dyView.H;
        outWidth = dyView.W;
        pixels = outHeight * outWidth;
        inPerGroup = s.InChannels / s.Groups;
        outPerGroup = s.OutChannels / s.Groups;
        depth = conv.Depth;
        rowPanelsPerGroup = (depth + kernel.Rows - 1) / kernel.Rows;

        // Bands: as tall as one column tile of pixels. While a pass would have fewer than two items per
        // worker, first split the group's input channels into chunks (each of whole MR panels of column rows and
        // at least MinimumChunkRows of them): chunks write disjoint dx channels, so they never overlap, and cost
        // nothing extra (each row block packs its dY block anyway). Only then lower the bands (not below the
        // overlap limit): a band of one short output row fills a fraction of a column tile (P6's 8x10 map ran
        // its 3x3/2 2048-256 input gradient in bands of 10 pixels, 48 wide, at ~22 GFLOP/s).
        phases = s.Kernel > s.Stride ? 2 : 1;
        int minimumRows = phases == 1 ? 1 : (s.Kernel - s.Stride + s.Stride - 1) / s.Stride;
        bandRows = Math.Max(minimumRows, Math.Min(outHeight, (ColumnTile + outWidth - 1) / outWidth));
        int kk = s.Kernel * s.Kernel, unitChannels = kernel.Rows / Gcd(kk, kernel.Rows);
        long wanted = 2L * workers, perPhase = (long)images * s.Groups * ((outHeight + bandRows - 1) / bandRows / phases);
        int maxChunks = Math.Max(1, Math.Min((inPerGroup + unitChannels - 1) / unitChannels, depth / MinimumChunkRows));
        chunks = perPhase >= wanted ? 1 : (int)Math.Min(maxChunks, (wanted + Math.Max(1, perPhase) - 1) / Math.Max(1, perPhase));
        chunkChannels = ((inPerGroup + chunks - 1) / chunks + unitChannels - 1) / unitChannels * unitChannels;
        chunks = (inPerGroup + chunkChannels - 1) / chunkChannels;
        while (bandRows > minimumRows && (long)images * s.Groups * chunks * ((outHeight + bandRows - 1) / bandRows / phases) < wanted)
            bandRows--;
        bands = (outHeight + bandRows - 1) / bandRows;
        zeroInBands = !accumulate && s.Padding <= bandRows * s.Stride;
        return phases;
    }

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);

    /// <summary>Chunks each group's input channels are split into (set by <see cref="Prepare"/>).</summary>
    public int Chunks => chunks;

    /// <summary>Whether the passes zero dx themselves (set by <see cref="Prepare"/>).</summary>
    public bool ZeroesInBands => zeroInBands;

    /// <summary>Selects pass <paramref name="phase"/> (0: even bands, 1: odd); returns its work items.</summary>
    public int PreparePhase(int phase)
    {
        this.phase = phase;
        int bandsInPhase = phases == 1 ? bands : (bands - phase + 1) / 2;
        return checked(images * conv.Spec.Groups * bandsInPhase * chunks);
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        ConvSpec s = conv.Spec;
        int bandsInPhase = phases == 1 ? bands : (bands - phase + 1) / 2;
        int chunk = item % chunks;
        item /= chunks;
        int band = item % bandsInPhase;
        if (phases == 2) band = 2 * band + phase;
        item /= bandsInPhase;
        int g = item % s.Groups, n = item / s.Groups;
        int mr = kernel.Rows, nr = kernel.Columns, ldc = ColumnTile, rowBlock = RowBlock / mr * mr;
        int oy0 = band * bandRows, oy1 = Math.Min(outHeight, oy0 + bandRows);
        int bandPixels = (oy1 - oy0) * outWidth, bandStart = oy0 * outWidth;
        float* cols = scratch[worker];
        float* packed = cols + (long)RowBlock * ldc;
        float* dyGroup = dy + ((long)n * s.OutChannels + (long)g * outPerGroup) * pixels;
        float* dxGroup = dx + ((long)n * s.InChannels + (long)g * inPerGroup) * height * width;
        float* aGroup = panels + (long)g * rowPanelsPerGroup * outPerGroup * mr;
        int c0 = chunk * chunkChannels, c1 = Math.Min(inPerGroup, c0 + chunkChannels);
        int kk = s.Kernel * s.Kernel, rowStart = c0 * kk, rowEnd = c1 * kk; // rowStart: whole MR panels (Prepare)
        if (zeroInBands) ZeroOwnedRows(dxGroup, band, c0, c1);

        for (int q0 = 0; q0 < bandPixels; q0 += ldc)
        {
            int columns = Math.Min(ldc, bandPixels - q0), columnPanels = (columns + nr - 1) / nr;
            for (int k0 = rowStart; k0 < rowEnd; k0 += rowBlock)
            {
                int rows = Math.Min(rowBlock, rowEnd - k0), rowPanels = (rows + mr - 1) / mr;
                for (int m0 = 0; m0 < outPerGroup; m0 += DepthBlock)
                {
                    int mc = Math.Min(DepthBlock, outPerGroup - m0);
                    PackRows(packed, dyGroup + (long)m0 * pixels + bandStart + q0, mc, columns, columnPanels * nr);
                    int mode = m0 == 0 ? GemmMicroKernels.First : 0;
                    for (int jp = 0; jp < columnPanels; jp++)
                    {
                        float* b = packed + (long)jp * mc * nr;
                        for (int ip = 0; ip < rowPanels; ip++)
                        {
                            float* a = aGroup + ((long)(k0 / mr + ip) * outPerGroup + m0) * mr;
                            kernel.Tile(mc, a, b, cols + (long)ip * mr * ldc + jp * nr, ldc, zeroBias, null, mode);
                        }
                    }
                }
                Scatter(cols, ldc, dxGroup, k0, rows, bandStart + q0, columns);
            }
        }
    }

    // The rows of dx that band `band` writes first (see the header), in channels c0 .. c1 - 1 of the group.
    private void ZeroOwnedRows(float* dxGroup, int band, int c0, int c1)
    {
        ConvSpec s = conv.Spec;
        int spill = Math.Max(0, s.Kernel - s.Stride);
        int start = OwnedStart(band), end = OwnedStart(band + 1);
        if (phases == 2 && band % 2 == 0) end = Math.Min(height, end + spill);
        else if (phases == 2) start = Math.Min(end, start + spill);
        if (end <= start) return;
        long plane = (long)height * width;
        for (int c = c0; c < c1; c++)
            new Span<float>(dxGroup + c * plane + (long)start * width, (end - start) * width).Clear();
    }

    private int OwnedStart(int band) =>
        band == 0 ? 0 : band >= bands ? height : Math.Clamp(band * bandRows * conv.Spec.Stride - conv.Spec.Padding, 0, height);

    // dY rows (row stride `pixels`), `columns` pixels each, into NR-pixel panels of mc steps:
    // dst[(q / NR) * mc * NR + m * NR + q % NR]; columns past the end (to paddedColumns) zero.
    private void PackRows(float* dst, float* source, int mc, int columns, int paddedColumns)
    {
        int nr = kernel.Columns;
        for (int m = 0; m < mc; m++)
        {
            float* row = source + (long)m * pixels;
            for (int q = 0; q < paddedColumns; q += nr)
            {
                int count = Math.Min(nr, columns - q);
                float* d = dst + (long)q / nr * mc * nr + (long)m * nr;
                count = Math.Max(count, 0);
                GemmConvolution.Copy(row + q, d, count);
                GemmConvolution.Clear(d + count, nr - count);
            }
        }
    }

    // dx[c, oy*s - pad + ky, ox*s - pad + kx] += cols[k - k0, q - first] for column rows k0 ..
    // k0+rows (k = (c*kh + ky)*kw + kx) and output pixels first .. first+columns.
    private void Scatter(float* cols, int ldc, float* dxGroup, int k0, int rows, int first, int columns)
    {
        ConvSpec s = conv.Spec;
        int ksize = s.Kernel, kk = ksize * ksize, stride = s.Stride, pad = s.Padding;
        long plane = (long)height * width;
        for (int r = 0; r < rows; r++)
        {
            int k = k0 + r, c = k / kk, tap = k % kk, ky = tap / ksize, kx = tap % ksize;
            float* source = cols + (long)r * ldc;
            float* channel = dxGroup + c * plane;
            int oy = first / outWidth, ox = first % outWidth, t = 0;
            while (t < columns)
            {
                int run = Math.Min(outWidth - ox, columns - t);
                int iy = oy * stride - pad + ky;
                if ((uint)iy < (uint)height)
                {
                    float* row = channel + (long)iy * width;
                    int ix0 = ox * stride - pad + kx;
                    int lo = Math.Min(run, ix0 >= 0 ? 0 : (-ix0 + stride - 1) / stride);
                    int hi = Math.Max(lo, Math.Min(run, ix0 >= width ? 0 : (width - 1 - ix0) / stride + 1));
                    float* from = source + t;
                    if (stride == 1)
                        for (int u = lo; u < hi; u++) row[ix0 + u] += from[u];
                    else
                        for (int u = lo; u < hi; u++) row[ix0 + u * stride] += from[u];
                }
                t += run;
                ox = 0;
                oy++;
            }
        }
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
