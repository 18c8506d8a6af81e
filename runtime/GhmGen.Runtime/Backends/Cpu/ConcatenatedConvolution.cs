// One convolution applied to several small inputs at once (IBackend.Conv2dShared: a shared head's
// pyramid levels, each image of each level a "part"), as one GEMM whose columns are the parts'
// im2col columns side by side. Run level by level, each part is a GEMM of its own: the weights
// (2.4 MB for a 3x3 256-256) come from memory once per part, and a map of 1, 2 or 6 pixels fills 1,
// 2 or 6 of a 16-wide tile's columns; at 64x96 the RetinaNet head's P5-P7 ran at 20-66 GFLOP/s
// that way. Here phase 1 packs every part's columns into one sequence of NR-wide panels (NR = 16,
// 32 or 48, whichever pads the total least (AVX2's 6-row panels: its 6x16 tile); items of PackRows
// im2col rows of every part by GatheredColumns, or of one part when the parts' planes are too large for it), and phase
// 2 has one item per chunk of output-channel panels that runs the 8xNR micro-kernel over every
// column panel into a products matrix (M x padded columns), then copies its rows out to the parts.
// The depth runs in one k block while the packed input fits L2 (as SharedInputConvolution), else
// in GemmConvolution's 128-deep blocks. y_p = act(bias + A * X_p); groups = 1, no residual.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/ConcatenatedConvolutionTests.cs.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>One convolution over several small inputs as one GEMM of their concatenated im2col columns.</summary>
[SkipLocalsInit]
internal sealed unsafe class ConcatenatedConvolution : IParallelWork, IDisposable
{
    private const int PackRows = 64;           // im2col rows per packing item
    private const long SingleBlockElements = 96 * 1024; // packed floats kept in one k block (384 KB, in L2)
    private const int MaxTileElements = 8 * 48;
    private int rows; // MR: 8 (AVX-512) or 6 (AVX2)

    private struct Part
    {
        public float* X, Y;
        public int Height, Width, OutHeight, OutWidth, Column;
    }

    private Part[] parts = new Part[16];
    private int partCount, columns;
    private float* packed, products;
    private long packedCapacity, productsCapacity;
    private PackedConvWeights conv = null!;
    private float* panels, bias;
    private bool relu, packing;
    private int depth, nr, paddedColumns, columnPanels, outChannels, packItemsPerPart, panelsPerChunk, chunks, depthBlock;
    private readonly GatheredColumns gathered = new();
    private bool gathering; // packing by GatheredColumns (items of PackRows rows over every part), else per part

    /// <summary>Whether calls may pack by <see cref="GatheredColumns"/> (tests turn it off to check the other packing).</summary>
    public bool Gathers { get; set; } = true;

    /// <summary>Whether the call prepared last packs by <see cref="GatheredColumns"/>.</summary>
    public bool Gathering => gathering;
    private nint[] sources = new nint[16];
    private delegate*<int, float*, float*, float*, nint, float*, float*, int, void> tile;

    /// <summary>Whether a convolution of this kind can take this path (per part: see <see cref="Fits"/>).</summary>
    public static bool Applies(PackedConvWeights conv) =>
        conv.Spec.Groups == 1 && SharedInputConvolution.Supported(conv);

    /// <summary>Whether an output map of <paramref name="outHeight"/> x <paramref name="outWidth"/> is small enough to be a part.</summary>
    public static bool Fits(int outHeight, int outWidth) => (long)outHeight * outWidth <= SharedInputConvolution.MaxPixels;

    /// <summary>Parts added since <see cref="Begin"/>.</summary>
    public int PartCount => partCount;

    /// <summary>Starts collecting the parts of one call of <paramref name="conv"/>.</summary>
    public void Begin(PackedConvWeights conv)
    {
        this.conv = conv;
        depth = conv.Depth;
        outChannels = conv.Spec.OutChannels;
        partCount = 0;
        columns = 0;
    }

    /// <summary>
    /// Adds the <paramref name="batch"/> images of one input (C x <paramref name="height"/> x
    /// <paramref name="width"/> each, at <paramref name="x"/>; outputs at <paramref name="y"/>) as parts,
    /// all or none: false when their columns would take the packed input past
    /// <see cref="SharedInputConvolution.MaxPackedElements"/>.
    /// </summary>
    public bool TryAdd(float* x, float* y, int batch, int height, int width)
    {
        ConvSpec s = conv.Spec;
        int oh = s.OutputSize(height), ow = s.OutputSize(width), pixels = oh * ow;
        long total = columns + (long)batch * pixels;
        if ((long)depth * (total + 47) > SharedInputConvolution.MaxPackedElements) return false;
        if (partCount + batch > parts.Length) Array.Resize(ref parts, Math.Max(2 * parts.Length, partCount + batch));
        long inImage = (long)s.InChannels * height * width, outImage = (long)outChannels * pixels;
        for (int n = 0; n < batch; n++)
        {
            parts[partCount++] = new Part
            {
                X = x + n * inImage, Y = y + n * outImage,
                Height = height, Width = width, OutHeight = oh, OutWidth = ow, Column = columns,
            };
            columns += pixels;
        }
        return true;
    }

    /// <summary>Sets up the call of the parts added; returns the items of the packing phase (then call <see cref="PrepareProducts"/>).</summary>
    public int Prepare(float* panels, float* bias, bool relu)
    {
        this.panels = panels;
        this.bias = bias;
        this.relu = relu;
        rows = conv.PanelRows;
        nr = SharedInputConvolution.TileWidth(columns, conv.Kernel.Kind);
        columnPanels = (columns + nr - 1) / nr;
        paddedColumns = columnPanels * nr;
        tile = SharedInputConvolution.TileFor(conv, nr);
        long packedElements = (long)depth * paddedColumns;
        depthBlock = depth <= GemmConvolution.SingleDepthBlock || packedElements <= SingleBlockElements ? depth : GemmConvolution.DepthBlock;
        Reserve(ref packed, ref packedCapacity, packedElements);
        Reserve(ref products, ref productsCapacity, (long)conv.PanelsPerGroup * rows * paddedColumns);
        packItemsPerPart = (depth + PackRows - 1) / PackRows;
        packing = true;
        gathering = false;
        if (Gathers && GatheredColumns.Applies(conv.Spec))
        {
            gathered.Begin(conv.Spec, depth, nr);
            gathering = true;
            for (int p = 0; p < partCount && gathering; p++) gathering = gathered.TryAdd(parts[p].Height, parts[p].Width);
            gathering = gathering && gathered.Build(paddedColumns);
        }
        if (gathering)
        {
            if (sources.Length < partCount) sources = new nint[parts.Length];
            for (int p = 0; p < partCount; p++) sources[p] = (nint)parts[p].X;
            return packItemsPerPart;
        }
        return partCount * packItemsPerPart;
    }

    /// <summary>Switches to the product phase; returns its items (chunks of weight panels) for <paramref name="workers"/> threads.</summary>
    public int PrepareProducts(int workers)
    {
        int panelCount = conv.PanelsPerGroup;
        int wanted = Math.Clamp(4 * workers, 1, panelCount);
        panelsPerChunk = (panelCount + wanted - 1) / wanted;
        chunks = (panelCount + panelsPerChunk - 1) / panelsPerChunk;
        packing = false;
        return chunks;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (packing && gathering)
            gathered.Pack(sources.AsSpan(0, partCount), item * PackRows, Math.Min(depth, (item + 1) * PackRows), packed);
        else if (packing)
        {
            int p = item / packItemsPerPart, block = item % packItemsPerPart;
            ref Part part = ref parts[p];
            // The last part also zeroes the padding columns of the last panel.
            int clearEnd = p == partCount - 1 ? paddedColumns : 0;
            SharedInputConvolution.PackColumns(conv.Spec, part.X, part.Height, part.Width, part.OutHeight, part.OutWidth, packed, depth, nr,
                block * PackRows, Math.Min(depth, (block + 1) * PackRows), part.Column, clearEnd);
        }
        else Products(item);
    }

    // Output channels of panels chunk * panelsPerChunk .., every column panel, then their rows out to the parts.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Products(int chunk)
    {
        int m = outChannels, ldc = paddedColumns;
        int firstPanel = chunk * panelsPerChunk, endPanel = Math.Min(conv.PanelsPerGroup, firstPanel + panelsPerChunk);
        long panelStride = (long)depth * nr;
        float* edge = stackalloc float[2 * MaxTileElements];
        for (int k0 = 0; k0 < depth; k0 += depthBlock)
        {
            int kc = Math.Min(depthBlock, depth - k0);
            int mode = (k0 == 0 ? GemmMicroKernels.First : 0) | (k0 + kc == depth ? GemmMicroKernels.Last | (relu ? GemmMicroKernels.Relu : 0) : 0);
            for (int ip = firstPanel; ip < endPanel; ip++)
            {
                float* a = panels + (long)ip * rows * depth + (long)k0 * rows;
                int tileRows = Math.Min(rows, m - ip * rows);
                if (rows == 8) GemmConvolution.PrefetchNextWeights(panels, depth, firstPanel, endPanel, ip, k0, kc);
                for (int jp = 0; jp < columnPanels; jp++)
                {
                    float* b = packed + jp * panelStride + (long)k0 * nr;
                    float* c = products + (long)ip * rows * ldc + jp * nr;
                    if (tileRows == rows)
                        tile(kc, a, b, c, ldc, bias + ip * rows, null, mode);
                    else
                        GemmMicroKernels.EdgeTile(tile, rows, nr, kc, a, b, c, ldc, bias + ip * rows, null, mode, tileRows, nr, edge, edge + MaxTileElements);
                }
            }
        }
        int rowEnd = Math.Min(m, endPanel * rows);
        for (int p = 0; p < partCount; p++)
        {
            ref Part part = ref parts[p];
            int pixels = part.OutHeight * part.OutWidth;
            for (int row = firstPanel * rows; row < rowEnd; row++)
                GemmConvolution.Copy(products + (long)row * ldc + part.Column, part.Y + (long)row * pixels, pixels);
        }
    }

    private static void Reserve(ref float* buffer, ref long capacity, long needed)
    {
        if (needed <= capacity) return;
        NativeMemory.AlignedFree(buffer);
        buffer = null;
        capacity = 0;
        buffer = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
        capacity = needed;
    }

    /// <summary>Frees the packed input and the products.</summary>
    public void Dispose()
    {
        gathered.Dispose();
        NativeMemory.AlignedFree(packed);
        NativeMemory.AlignedFree(products);
        packed = products = null;
        packedCapacity = productsCapacity = 0;
    }
}
