// The weight and bias gradients of a convolution as one blocked GEMM per group g:
//   dW_g[m, k] (+)= sum over n, p of dY[n, g*M + m, p] * X_g[n][k, p]
//   dBias[o]   (+)= sum over n, p of dY[n, o, p]
// with M = out/groups, K = in/groups*kh*kw, p over the OH*OW output pixels and X_g[n] the implicit
// im2col matrix of image n (X_g[(c*kh + ky)*kw + kx, (oy, ox)] = x[n, g*in/groups + c, oy*s -
// pad + ky, ox*s - pad + kx], zero outside). The reduction runs over the N*OH*OW pixels, which
// both operands hold contiguously, so each is packed transposed: per block of KC pixels, dY rows
// into MR-row panels (a[p*MR + r]) and im2col rows into NR-column panels (b[p*NR + j]; the rows
// are first gathered into a small buffer, 1x1 stride-1 rows are read in place), by 8x8 AVX
// transposes. The micro-kernel (GemmMicroKernels) then writes MR x NR tiles of dW (row stride K).
// Work items are (pixel split, group, row block of <= 256 output channels, column block of <= 10
// NR columns); each item runs the whole reduction over its split in a fixed order. With few
// items (small M*K) the pixels are cut into a fixed number of splits, chosen from the shapes and
// the worker count only, each summing into its own partial dW; a second pass adds the partials
// in split order (and the existing dW when accumulating) and sums the bias rows. So the result
// does not depend on scheduling: runs with the same thread count are bitwise identical.
// Shapes: x [N, in, H, W], dy [N, out, OH, OW], dW [out, in/groups, k, k], dBias [out].
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (against ReferenceBackend).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one convolution weight-gradient GEMM, run as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class ConvWeightGradient : IParallelWork, IDisposable
{
    /// <summary>KC: pixels (reduction steps) per packed block.</summary>
    public const int PixelBlock = 128;

    /// <summary>NR multiples per column block.</summary>
    public const int ColumnBlockPanels = 10;

    /// <summary>Most output channels per row block.</summary>
    public const int RowBlock = 256;

    private const int MaxTileElements = 1024;

    // Items wanted per worker before the pixels are split (the items are of equal size, so 8 per
    // worker keep dynamic scheduling within ~1/8 of an item of balanced).
    private const int ItemsPerWorker = 8;

    // Largest partial-sum buffer the splits may use, in floats (128 MB).
    private const long MaxPartialElements = 1L << 25;

    private readonly GemmKernel fullKernel;
    private readonly float* zeroBias;
    private readonly float*[] scratch;
    private float* partials;
    private long partialCapacity;

    // Per-call arguments (set by Prepare, read by Execute on every worker).
    private GemmKernel kernel = null!;
    private ConvSpec spec;
    private float* x, dy, dw, db;
    private int height, width, outWidth, pixels, inPerGroup, outPerGroup, depth;
    private long totalPixels;
    private int rowBlocks, rowsPerBlock, columnBlocks, columnsPerBlock, splits;
    private bool accumulate, finishing, directRows;

    /// <summary>Uses <paramref name="kernel"/> (its narrow form for at most 4 outputs per group) and <paramref name="zeroBias"/> (at least MR zeros).</summary>
    public ConvWeightGradient(GemmKernel kernel, float* zeroBias, int workers)
    {
        fullKernel = kernel;
        this.zeroBias = zeroBias;
        scratch = new float*[workers];
    }

    // Per worker: the dY panels (RowBlock x KC), the im2col panels (NC x KC) and the gather
    // buffer for one panel's im2col rows (NR x KC).
    private long ScratchElements => ((long)RowBlock + ColumnBlockPanels * fullKernel.Columns + fullKernel.Columns) * PixelBlock;

    /// <summary>
    /// Sets up one call (growing the per-worker scratch and the partial sums on first use) and
    /// returns the number of work items of the GEMM pass.
    /// </summary>
    public int Prepare(ConvSpec spec, TensorView xView, float* x, float* dy, float* dw, float* db, bool accumulate, int workers)
    {
        for (int i = 0; i < scratch.Length; i++)
            if (scratch[i] == null) scratch[i] = (float*)NativeMemory.AlignedAlloc((nuint)(ScratchElements * sizeof(float)), 64);
        this.spec = spec;
        this.x = x;
        this.dy = dy;
        this.dw = dw;
        this.db = db;
        this.accumulate = accumulate;
        finishing = false;
        height = xView.H;
        width = xView.W;
        int outHeight = spec.OutputSize(height);
        outWidth = spec.OutputSize(width);
        pixels = outHeight * outWidth;
        totalPixels = (long)xView.N * pixels;
        inPerGroup = spec.InChannels / spec.Groups;
        outPerGroup = spec.OutChannels / spec.Groups;
        depth = inPerGroup * spec.Kernel * spec.Kernel;
        kernel = outPerGroup <= 4 ? fullKernel.Narrow : fullKernel;
        directRows = spec is { Kernel: 1, Stride: 1, Padding: 0 };
        int mr = kernel.Rows, nr = kernel.Columns;

        int maxRows = RowBlock / mr * mr;
        rowBlocks = (outPerGroup + maxRows - 1) / maxRows;
        rowsPerBlock = RoundUp((outPerGroup + rowBlocks - 1) / rowBlocks, mr);
        rowBlocks = (outPerGroup + rowsPerBlock - 1) / rowsPerBlock;
        int maxColumns = ColumnBlockPanels * nr;
        columnBlocks = (depth + maxColumns - 1) / maxColumns;
        columnsPerBlock = RoundUp((depth + columnBlocks - 1) / columnBlocks, nr);
        columnBlocks = (depth + columnsPerBlock - 1) / columnsPerBlock;

        long baseItems = (long)spec.Groups * rowBlocks * columnBlocks;
        long wanted = workers == 1 ? 1 : (long)ItemsPerWorker * workers;
        long weightElements = spec.WeightCount;
        splits = 1;
        if (baseItems < wanted)
        {
            long bySize = Math.Max(1, totalPixels / (2 * PixelBlock));      // at least two pixel blocks per split
            long byMemory = Math.Max(1, MaxPartialElements / weightElements);
            splits = (int)Math.Min(Math.Min((wanted + baseItems - 1) / baseItems, bySize), byMemory);
        }
        if (splits > 1 && splits * weightElements > partialCapacity)
        {
            NativeMemory.AlignedFree(partials);
            partialCapacity = splits * weightElements;
            partials = (float*)NativeMemory.AlignedAlloc((nuint)(partialCapacity * sizeof(float)), 64);
        }
        return checked((int)(baseItems * splits));
    }

    /// <summary>Whether the finishing pass must run (partial sums to add, or a bias gradient).</summary>
    public bool NeedsFinish => splits > 1 || db != null;

    /// <summary>Switches to the finishing pass; returns its work items (one per output channel).</summary>
    public int PrepareFinish()
    {
        finishing = true;
        return spec.OutChannels;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (finishing)
            Finish(item);
        else
            Gemm(item, worker);
    }

    private void Gemm(int item, int worker)
    {
        int mr = kernel.Rows, nr = kernel.Columns;
        int cb = item % columnBlocks;
        item /= columnBlocks;
        int rb = item % rowBlocks;
        item /= rowBlocks;
        int g = item % spec.Groups, split = item / spec.Groups;
        int m0 = rb * rowsPerBlock, rows = Math.Min(rowsPerBlock, outPerGroup - m0), rowPanels = (rows + mr - 1) / mr;
        int k0 = cb * columnsPerBlock, columns = Math.Min(columnsPerBlock, depth - k0), columnPanels = (columns + nr - 1) / nr;
        long weightElements = spec.WeightCount;
        float* target = (splits > 1 ? partials + split * weightElements : dw) + ((long)g * outPerGroup + m0) * depth + k0;
        bool zeroFirst = splits > 1 || !accumulate;

        float* aPack = scratch[worker];
        float* bPack = aPack + (long)RowBlock * PixelBlock;
        float* gather = bPack + (long)ColumnBlockPanels * fullKernel.Columns * PixelBlock;
        float** rowPointers = stackalloc float*[Math.Max(mr, nr)];
        float* edge = stackalloc float[MaxTileElements];
        int kk = spec.Kernel * spec.Kernel;

        long q = split * totalPixels / splits, end = (split + 1) * totalPixels / splits;
        bool first = zeroFirst;
        while (q < end)
        {
            int image = (int)(q / pixels), p = (int)(q % pixels);
            int kc = (int)Math.Min(Math.Min(PixelBlock, pixels - p), end - q);

            // dY rows m0 + ip*MR + r of group g, pixels p .. p+kc, as MR-row panels.
            float* dyImage = dy + ((long)image * spec.OutChannels + (long)g * outPerGroup + m0) * pixels + p;
            for (int ip = 0; ip < rowPanels; ip++)
            {
                for (int r = 0; r < mr; r++)
                {
                    int row = ip * mr + r;
                    rowPointers[r] = row < rows ? dyImage + (long)row * pixels : null;
                }
                TransposeRows(rowPointers, mr, kc, aPack + (long)ip * kc * mr);
            }

            // im2col rows k0 + jp*NR + j, the same pixels, as NR-column panels.
            float* xImage = x + ((long)image * spec.InChannels + (long)g * inPerGroup) * height * width;
            for (int jp = 0; jp < columnPanels; jp++)
            {
                for (int j = 0; j < nr; j++)
                {
                    int k = k0 + jp * nr + j;
                    if (jp * nr + j >= columns)
                        rowPointers[j] = null;
                    else if (directRows)
                        rowPointers[j] = xImage + (long)k * pixels + p;
                    else
                    {
                        float* row = gather + (long)j * PixelBlock;
                        int tap = k % kk;
                        Im2colRow(row, xImage + (long)(k / kk) * height * width, tap / spec.Kernel, tap % spec.Kernel, p, kc);
                        rowPointers[j] = row;
                    }
                }
                TransposeRows(rowPointers, nr, kc, bPack + (long)jp * kc * nr);
            }

            int mode = first ? GemmMicroKernels.First : 0;
            for (int jp = 0; jp < columnPanels; jp++)
            {
                float* b = bPack + (long)jp * kc * nr;
                int tileColumns = Math.Min(nr, columns - jp * nr);
                for (int ip = 0; ip < rowPanels; ip++)
                {
                    float* a = aPack + (long)ip * kc * mr;
                    float* c = target + (long)ip * mr * depth + jp * nr;
                    int tileRows = Math.Min(mr, rows - ip * mr);
                    if (tileRows == mr && tileColumns == nr)
                        kernel.Tile(kc, a, b, c, depth, zeroBias, null, mode);
                    else
                        GemmMicroKernels.EdgeTile(kernel.Tile, mr, nr, kc, a, b, c, depth, zeroBias, null, mode, tileRows, tileColumns, edge, null);
                }
            }
            first = false;
            q += kc;
        }
        if (first)
            for (int r = 0; r < rows; r++) new Span<float>(target + (long)r * depth, columns).Clear(); // an empty split
    }

    // Output channel o: dW[o, :] = (existing, when accumulating) + the partials in split order;
    // dBias[o] (+)= the sum of its dY rows (float vector sums per image, added in double).
    private void Finish(int o)
    {
        if (splits > 1)
        {
            float* row = dw + (long)o * depth;
            long weightElements = spec.WeightCount;
            int k = 0;
            for (; k <= depth - Vector<float>.Count; k += Vector<float>.Count)
            {
                Vector<float> sum = Vector.Load(partials + (long)o * depth + k);
                for (int s = 1; s < splits; s++) sum += Vector.Load(partials + s * weightElements + (long)o * depth + k);
                Vector.Store(accumulate ? Vector.Load(row + k) + sum : sum, row + k);
            }
            for (; k < depth; k++)
            {
                float sum = partials[(long)o * depth + k];
                for (int s = 1; s < splits; s++) sum += partials[s * weightElements + (long)o * depth + k];
                row[k] = accumulate ? row[k] + sum : sum;
            }
        }
        if (db != null)
            db[o] = BiasSum(dy, totalPixels / Math.Max(1, pixels), spec.OutChannels, pixels, o, db[o], accumulate);
    }

    /// <summary>
    /// The bias gradient of output channel <paramref name="o"/>: the sum of its dY rows over <paramref name="images"/>
    /// images of <paramref name="channels"/> x <paramref name="pixels"/> (float vector sums per image, added in double),
    /// plus <paramref name="start"/> when <paramref name="accumulate"/>.
    /// </summary>
    internal static float BiasSum(float* dy, long images, int channels, int pixels, int o, float start, bool accumulate)
    {
        double total = 0;
        for (long n = 0; n < images; n++)
        {
            float* line = dy + (n * channels + o) * pixels;
            Vector<float> sum = Vector<float>.Zero;
            int p = 0;
            for (; p <= pixels - Vector<float>.Count; p += Vector<float>.Count) sum += Vector.Load(line + p);
            float tail = 0f;
            for (; p < pixels; p++) tail += line[p];
            total += Vector.Sum(sum) + tail;
        }
        return accumulate ? (float)(start + total) : (float)total;
    }

    // A tile cut by the matrix edge: run the full tile on a copy, write back the valid part.
    // One im2col row of image channel `plane` for tap (ky, kx): dst[t] = plane[oy*s - pad + ky,
    // ox*s - pad + kx] for the output pixels p .. p+count, zero outside the image.
    private void Im2colRow(float* dst, float* plane, int ky, int kx, int p, int count)
    {
        int stride = spec.Stride, pad = spec.Padding;
        int oy = p / outWidth, ox = p % outWidth, t = 0;
        while (t < count)
        {
            int run = Math.Min(outWidth - ox, count - t);
            float* d = dst + t;
            int iy = oy * stride - pad + ky;
            if ((uint)iy >= (uint)height)
                GemmConvolution.Clear(d, run);
            else
            {
                float* row = plane + (long)iy * width;
                int ix0 = ox * stride - pad + kx;
                // valid u: 0 <= ix0 + u*stride < width
                int lo = Math.Min(run, ix0 >= 0 ? 0 : (-ix0 + stride - 1) / stride);
                int hi = Math.Max(lo, Math.Min(run, ix0 >= width ? 0 : (width - 1 - ix0) / stride + 1));
                GemmConvolution.Clear(d, lo);
                if (stride == 1)
                    GemmConvolution.Copy(row + ix0 + lo, d + lo, hi - lo);
                else
                {
                    int u = lo;
                    if (stride == 2 && Avx512F.IsSupported)
                    {
                        Vector512<int> even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                        for (; u + 16 <= hi && ix0 + 2 * u + 32 <= width; u += 16)
                        {
                            float* at = row + ix0 + 2 * u;
                            Avx512F.PermuteVar16x32x2(Vector512.Load(at), even, Vector512.Load(at + 16)).Store(d + u);
                        }
                    }
                    for (; u < hi; u++) d[u] = row[ix0 + u * stride];
                }
                GemmConvolution.Clear(d + hi, run - hi);
            }
            t += run;
            ox = 0;
            oy++;
        }
    }

    // dst[t*R + r] = rows[r][t] for t < count (a null row reads as zeros): R rows of `count`
    // contiguous values into a reduction-major panel. 8x8 AVX transposes when R is a multiple of 8.
    internal static void TransposeRows(float** rows, int r, int count, float* dst)
    {
        int t = 0;
        if (Avx.IsSupported && r % 8 == 0)
        {
            for (; t + 8 <= count; t += 8)
            {
                for (int r0 = 0; r0 < r; r0 += 8)
                {
                    float** block = rows + r0;
                    Vector256<float> v0 = Load8(block[0], t), v1 = Load8(block[1], t), v2 = Load8(block[2], t), v3 = Load8(block[3], t);
                    Vector256<float> v4 = Load8(block[4], t), v5 = Load8(block[5], t), v6 = Load8(block[6], t), v7 = Load8(block[7], t);
                    Vector256<float> t0 = Avx.UnpackLow(v0, v1), t1 = Avx.UnpackHigh(v0, v1), t2 = Avx.UnpackLow(v2, v3), t3 = Avx.UnpackHigh(v2, v3);
                    Vector256<float> t4 = Avx.UnpackLow(v4, v5), t5 = Avx.UnpackHigh(v4, v5), t6 = Avx.UnpackLow(v6, v7), t7 = Avx.UnpackHigh(v6, v7);
                    Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
                    Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
                    float* d = dst + (long)t * r + r0;
                    Avx.Permute2x128(u0, u4, 0x20).Store(d);
                    Avx.Permute2x128(u1, u5, 0x20).Store(d + r);
                    Avx.Permute2x128(u2, u6, 0x20).Store(d + 2 * r);
                    Avx.Permute2x128(u3, u7, 0x20).Store(d + 3 * r);
                    Avx.Permute2x128(u0, u4, 0x31).Store(d + 4 * r);
                    Avx.Permute2x128(u1, u5, 0x31).Store(d + 5 * r);
                    Avx.Permute2x128(u2, u6, 0x31).Store(d + 6 * r);
                    Avx.Permute2x128(u3, u7, 0x31).Store(d + 7 * r);
                }
            }
        }
        for (; t < count; t++)
        {
            float* d = dst + (long)t * r;
            for (int i = 0; i < r; i++) d[i] = rows[i] == null ? 0f : rows[i][t];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(float* row, int t) => row == null ? Vector256<float>.Zero : Vector256.Load(row + t);

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>Frees the scratch and the partial sums.</summary>
    public void Dispose()
    {
        for (int i = 0; i < scratch.Length; i++)
        {
            NativeMemory.AlignedFree(scratch[i]);
            scratch[i] = null;
        }
        NativeMemory.AlignedFree(partials);
        partials = null;
        partialCapacity = 0;
    }
}
