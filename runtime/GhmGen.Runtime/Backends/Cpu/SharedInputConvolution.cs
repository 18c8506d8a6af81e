// Convolution as a GEMM for outputs of few pixels per image (the P5-P7 levels at every input size,
// most of the network at small inputs such as 64x96 or 320x320), on the AVX-512 kernel's 8-row
// weight panels or the AVX2 kernel's 6-row ones (then always its 6x16 tile). GemmConvolution packs the input per work item and, when a map has too few
// 48-pixel column blocks to keep every worker busy, splits the output channels into chunks that
// each pack the same input block again; its 48-pixel tile is mostly padding on a 4x6 map. Here
// the implicit im2col matrix of every image is packed once per call into one buffer that all
// workers read (phase 1: items of PackRows im2col rows, by GatheredColumns' gathers from a
// zero-framed copy of each channel where the AVX2 gathers are available and the plane is small enough,
// else by PackColumns' runs), as panels of NR = 16, 32 or 48 pixels,
// whichever pads the image's pixel count least (24 pixels: one 8x32 tile, not half a 48-wide one);
// phase 2 has one work item per (image, chunk of output-channel panels), each running the 8xNR
// micro-kernel (GemmMicroKernels.Avx512Tile16 / Tile32 / Avx512Tile) over all of its image's
// column panels, with the whole depth in one k block while the image's packed input fits L2
// (GemmConvolution's 128-deep blocks otherwise).
// y[n, m, p] = act(bias[m] + sum_k A[m, k] * X_n[k, p] (+ residual[n, m, p])); groups = 1.
// The residual may be y itself: with one k block each tile reads it before writing; with several,
// y first gets the bias and every block accumulates onto it (as GemmConvolution).
// Reference test: tests/GhmGen.Runtime.Tests/Backends/SharedInputConvolutionTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>GEMM convolutions of small outputs with the input packed once per call, shared by the workers.</summary>
[SkipLocalsInit]
internal sealed unsafe class SharedInputConvolution : IParallelWork, IDisposable
{
    /// <summary>Most output pixels per image this path takes.</summary>
    public const int MaxPixels = 512;

    /// <summary>
    /// Fewest output pixels (over the batch) for which this path is preferred to SmallMapConvolution: up to 8,
    /// the GEMV-like path wastes no lanes (one accumulator per pixel) and needs no 16-pixel tile.
    /// </summary>
    public const int MinimumColumns = 9;

    /// <summary>Most floats of packed input (all images of the batch) this path allocates.</summary>
    public const long MaxPackedElements = 4L << 20;

    private const int PackRows = 64;           // im2col rows per packing item
    private const long SingleBlockElements = 96 * 1024; // packed floats of one image kept in one k block (384 KB, in L2)
    private const int MaxTileElements = 8 * 48;

    private float* packed;
    private long capacity;
    private PackedConvWeights conv = null!;
    private float* x, y, residual, panels, bias;
    private bool relu, packing, inPlace;
    private int rows; // MR: 8 (AVX-512) or 6 (AVX2)
    private int batch, inChannels, height, width, outWidth, pixels, depth, nr, columnPanels, outChannels;
    private int packItemsPerImage, panelsPerChunk, chunks, depthBlock;
    private long imageStride;
    private readonly GatheredColumns gathered = new();
    private bool gathering; // packing by GatheredColumns, else by PackColumns

    /// <summary>Whether calls may pack by <see cref="GatheredColumns"/> (tests turn it off to check the other packing).</summary>
    public bool Gathers { get; set; } = true;

    /// <summary>Whether the call prepared last packs by <see cref="GatheredColumns"/>.</summary>
    public bool Gathering => gathering;
    private delegate*<int, float*, float*, float*, nint, float*, float*, int, void> tile;

    /// <summary>Whether a convolution of this shape takes this path.</summary>
    public static bool Applies(PackedConvWeights conv, int batch, int outHeight, int outWidth)
    {
        int pixels = outHeight * outWidth;
        return conv.Spec.Groups == 1 && Supported(conv)
            && pixels <= MaxPixels && (long)batch * conv.Depth * PaddedPixels(pixels, TileWidth(pixels, conv.Kernel.Kind)) <= MaxPackedElements;
    }

    /// <summary>
    /// Whether the convolution's panels are those of a kernel this path runs: the AVX-512 one (8 rows; 8x16, 8x32
    /// and 8x48 tiles) or the AVX2 one (6 rows; its 6x16 tile).
    /// </summary>
    internal static bool Supported(PackedConvWeights conv) =>
        conv.Kernel.Kind == GemmKernelKind.Avx512 && conv.PanelRows == 8 && Avx512F.IsSupported
        || conv.Kernel.Kind == GemmKernelKind.Avx2 && conv.PanelRows == 6 && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>The tile width for <paramref name="pixels"/> columns on the kernel <paramref name="kind"/>: 16 on AVX2, else <see cref="TileWidth(int)"/>.</summary>
    internal static int TileWidth(int pixels, GemmKernelKind kind) => kind == GemmKernelKind.Avx2 ? 16 : TileWidth(pixels);

    // The micro-kernel of panels `conv` for tiles nr wide.
    internal static delegate*<int, float*, float*, float*, nint, float*, float*, int, void> TileFor(PackedConvWeights conv, int nr)
    {
        if (conv.Kernel.Kind == GemmKernelKind.Avx2) return conv.Kernel.Tile;
        return nr switch
        {
            16 => &GemmMicroKernels.Avx512Tile16,
            32 => &GemmMicroKernels.Avx512Tile32,
            _ => &GemmMicroKernels.Avx512Tile,
        };
    }

    /// <summary>NR for an image of <paramref name="pixels"/> output pixels: 48, 32 or 16, whichever pads least (ties: the wider).</summary>
    public static int TileWidth(int pixels)
    {
        int best = 48;
        foreach (int width in (ReadOnlySpan<int>)[32, 16])
            if (PaddedPixels(pixels, width) < PaddedPixels(pixels, best)) best = width;
        return best;
    }

    private static int PaddedPixels(int pixels, int width) => (pixels + width - 1) / width * width;

    /// <summary><paramref name="columns"/> rounded up to whole tiles of the width <see cref="TileWidth(int, GemmKernelKind)"/> gives them.</summary>
    internal static long PaddedColumns(long columns, GemmKernelKind kind)
    {
        int width = TileWidth((int)Math.Min(columns, int.MaxValue / 2), kind);
        return (columns + width - 1) / width * width;
    }

    /// <summary>Sets up one call; returns the items of the packing phase (then call <see cref="PrepareProducts"/>).</summary>
    public int Prepare(PackedConvWeights conv, TensorView xView, float* x, float* y, float* residual, float* panels, float* bias, bool relu)
    {
        ConvSpec s = conv.Spec;
        this.conv = conv;
        this.x = x;
        this.y = y;
        this.residual = residual;
        this.panels = panels;
        this.bias = bias;
        this.relu = relu;
        batch = xView.N;
        inChannels = s.InChannels;
        height = xView.H;
        width = xView.W;
        outWidth = s.OutputSize(width);
        pixels = s.OutputSize(height) * outWidth;
        depth = conv.Depth;
        outChannels = s.OutChannels;
        rows = conv.PanelRows;
        nr = TileWidth(pixels, conv.Kernel.Kind);
        columnPanels = (pixels + nr - 1) / nr;
        imageStride = (long)depth * columnPanels * nr;
        tile = TileFor(conv, nr);
        depthBlock = depth <= GemmConvolution.SingleDepthBlock || imageStride <= SingleBlockElements ? depth : GemmConvolution.DepthBlock;
        inPlace = residual == y && depthBlock < depth;
        long needed = imageStride * batch;
        if (needed > capacity)
        {
            NativeMemory.AlignedFree(packed);
            packed = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
            capacity = needed;
        }
        packItemsPerImage = (depth + PackRows - 1) / PackRows;
        packing = true;
        gathering = false;
        if (Gathers && GatheredColumns.Applies(s))
        {
            gathered.Begin(s, depth, nr);
            gathering = gathered.TryAdd(height, width) && gathered.Build(columnPanels * nr);
        }
        return batch * packItemsPerImage;
    }

    /// <summary>Switches to the product phase; returns its items (image x chunk of weight panels) for <paramref name="workers"/> threads.</summary>
    public int PrepareProducts(int workers)
    {
        int panelCount = conv.PanelsPerGroup;
        int wanted = 4 * workers;
        int chunksPerImage = Math.Clamp((wanted + batch - 1) / batch, 1, panelCount);
        panelsPerChunk = (panelCount + chunksPerImage - 1) / chunksPerImage;
        chunks = (panelCount + panelsPerChunk - 1) / panelsPerChunk;
        packing = false;
        return batch * chunks;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (packing) Pack(item / packItemsPerImage, item % packItemsPerImage);
        else Products(item / chunks, item % chunks);
    }

    // im2col rows block * PackRows .. + PackRows of image n, as NR-wide panels:
    // dst[(q / NR) * depth * NR + k * NR + q % NR], columns past the pixel count zero.
    private void Pack(int n, int block)
    {
        float* image = x + (long)n * inChannels * height * width;
        if (gathering)
        {
            nint source = (nint)image;
            gathered.Pack(new ReadOnlySpan<nint>(in source), block * PackRows, Math.Min(depth, (block + 1) * PackRows), packed + n * imageStride);
            return;
        }
        int outHeight = pixels / outWidth;
        PackColumns(conv.Spec, x + (long)n * inChannels * height * width, height, width, outHeight, outWidth,
            packed + n * imageStride, depth, nr, block * PackRows, Math.Min(depth, (block + 1) * PackRows), 0, columnPanels * nr);
    }

    /// <summary>
    /// Packs im2col rows <paramref name="kBegin"/> .. <paramref name="kEnd"/> of one image (C x
    /// <paramref name="height"/> x <paramref name="width"/> at <paramref name="image"/>) as columns
    /// <paramref name="firstColumn"/> .. + OH*OW of a sequence of <paramref name="nr"/>-wide panels:
    /// column q of row k at <c>dst[(q / nr) * depth * nr + k * nr + q % nr]</c>; columns from the
    /// image's last up to <paramref name="clearEnd"/> are zeroed (the padding of the last panel).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackColumns(ConvSpec s, float* image, int height, int width, int outHeight, int outWidth,
        float* dst, int depth, int nr, int kBegin, int kEnd, int firstColumn, int clearEnd)
    {
        int kernelSize = s.Kernel, taps = kernelSize * kernelSize, stride = s.Stride, pad = s.Padding;
        if (kernelSize == 1 && stride == 1 && pad == 0)
        {
            // Row k is channel k's plane as it is: one output row of every pixel, cut only at the panels' ends.
            width = outWidth = outHeight * outWidth;
            height = outHeight = 1;
        }
        long plane = (long)height * width, panelStride = (long)depth * nr;
        int endColumn = firstColumn + outHeight * outWidth;
        for (int k = kBegin; k < kEnd; k++)
        {
            int channel = k / taps, tap = k % taps, ky = tap / kernelSize, kx = tap % kernelSize;
            float* source = image + channel * plane;
            float* rowDst = dst + (long)k * nr;
            int jp = firstColumn / nr, j = firstColumn % nr;
            for (int oy = 0; oy < outHeight; oy++)
            {
                int iy = oy * stride - pad + ky;
                float* row = source + (long)iy * width;
                bool rowInside = (uint)iy < (uint)height;
                for (int ox = 0; ox < outWidth;)
                {
                    // One run: the rest of this output row, cut at the panel's end.
                    int run = Math.Min(outWidth - ox, nr - j);
                    float* d = rowDst + jp * panelStride + j;
                    if (!rowInside)
                    {
                        GemmConvolution.Clear(d, run);
                    }
                    else
                    {
                        int ix0 = ox * stride - pad + kx;
                        if (stride == 1)
                        {
                            int lo = Math.Clamp(-ix0, 0, run), hi = Math.Clamp(width - ix0, lo, run);
                            GemmConvolution.Clear(d, lo);
                            GemmConvolution.Copy(row + ix0 + lo, d + lo, hi - lo);
                            GemmConvolution.Clear(d + hi, run - hi);
                        }
                        else
                        {
                            for (int t = 0; t < run; t++)
                            {
                                int ix = ix0 + t * stride;
                                d[t] = (uint)ix < (uint)width ? row[ix] : 0f;
                            }
                        }
                    }
                    ox += run;
                    j += run;
                    if (j == nr)
                    {
                        j = 0;
                        jp++;
                    }
                }
            }
            for (int q = endColumn; q < clearEnd;)
            {
                int run = Math.Min(nr - q % nr, clearEnd - q);
                GemmConvolution.Clear(rowDst + q / nr * panelStride + q % nr, run);
                q += run;
            }
        }
    }

    // Output channels of panels chunk * panelsPerChunk .. of image n, every column panel.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Products(int n, int chunk)
    {
        int m = outChannels;
        int firstPanel = chunk * panelsPerChunk, endPanel = Math.Min(conv.PanelsPerGroup, firstPanel + panelsPerChunk);
        long outStart = (long)n * outChannels * pixels;
        float* yImage = y + outStart;
        float* rImage = residual == null || inPlace ? null : residual + outStart;
        float* bImage = packed + n * imageStride;
        long panelStride = (long)depth * nr;
        float* edge = stackalloc float[2 * MaxTileElements];
        if (inPlace)
        {
            // y already holds the residual: add the bias now, then accumulate (no First mode).
            for (int row = firstPanel * rows; row < Math.Min(m, endPanel * rows); row++)
            {
                float rowBias = bias[row];
                float* line = yImage + (long)row * pixels;
                for (int q = 0; q < pixels; q++) line[q] += rowBias;
            }
        }
        for (int k0 = 0; k0 < depth; k0 += depthBlock)
        {
            int kc = Math.Min(depthBlock, depth - k0);
            int mode = (k0 == 0 && !inPlace ? GemmMicroKernels.First : 0)
                | (k0 + kc == depth ? GemmMicroKernels.Last | (relu ? GemmMicroKernels.Relu : 0) : 0);
            for (int ip = firstPanel; ip < endPanel; ip++)
            {
                float* a = panels + (long)ip * rows * depth + (long)k0 * rows;
                int tileRows = Math.Min(rows, m - ip * rows);
                if (rows == 8) GemmConvolution.PrefetchNextWeights(panels, depth, firstPanel, endPanel, ip, k0, kc);
                for (int jp = 0; jp < columnPanels; jp++)
                {
                    float* b = bImage + jp * panelStride + (long)k0 * nr;
                    int tileColumns = Math.Min(nr, pixels - jp * nr);
                    long at = (long)ip * rows * pixels + jp * nr;
                    float* c = yImage + at;
                    float* r = rImage == null ? null : rImage + at;
                    if (tileRows == rows && tileColumns == nr)
                        tile(kc, a, b, c, pixels, bias + ip * rows, r, mode);
                    else
                        GemmMicroKernels.EdgeTile(tile, rows, nr, kc, a, b, c, pixels, bias + ip * rows, r, mode, tileRows, tileColumns, edge, edge + MaxTileElements);
                }
            }
        }
    }


    /// <summary>Frees the packed input.</summary>
    public void Dispose()
    {
        gathered.Dispose();
        NativeMemory.AlignedFree(packed);
        packed = null;
        capacity = 0;
    }
}
