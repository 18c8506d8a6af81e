// The implicit im2col matrix of a few small inputs ("parts": the images of a batch, or the pyramid
// levels of a shared head), packed as NR-wide column panels by AVX2 gathers, for
// SharedInputConvolution and ConcatenatedConvolution. Their per-part packing (PackColumns) copies
// each output row of each tap as its own run with the padding cut off at both ends: at 64x96 the
// head's five levels have output rows of 12, 6, 3, 2 and 1 pixels, and that packing took a quarter
// of the concatenated convolution (260-330 us of ~1.1 ms for a 3x3 256-256 on 2 threads, Zen 4),
// mostly per-run overhead. Here the parts' planes of a block of input channels (as many as 64 KB of
// stack holds) are first copied into zero-framed planes ((height + 2 pad) x (width + 2 pad)), each
// channel's planes side by side and followed by one zero; a table made once per call gives, for
// every tap and every packed column (the padding columns of the last panel included), the framed
// element it reads (the zero for the padding columns), so each im2col row of a panel is NR / 8
// gathers and full 8-wide stores, with no cut, clamp or mask: NR is a multiple of 8 and the packed
// width a multiple of NR (the same packing: 115-165 us). Panel by panel, each writes one
// contiguous run of rows.
// Layout written: column q of im2col row k at dst[(q / NR) * depth * NR + k * NR + q % NR].
// Reference tests: tests/GhmGen.Runtime.Tests/Backends/SharedInputConvolutionTests.cs and
// ConcatenatedConvolutionTests.cs (against a naive float64 convolution, with this packing and without).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GhmGen.Backends.Cpu;

/// <summary>im2col of several small inputs into NR-wide panels by gathers from zero-framed planes.</summary>
[SkipLocalsInit]
internal sealed unsafe class GatheredColumns : IDisposable
{
    /// <summary>Most floats of one channel's framed planes (every part's, and the zero), kept on a worker's stack.</summary>
    public const int MaxFramed = 8192;

    // Most floats of framed planes one Pack call keeps on the stack (64 KB): its rows' channels in blocks of this.
    private const int MaxFramedBlock = 16384;

    /// <summary>Most entries of the per-tap index table (taps x packed columns).</summary>
    public const long MaxIndex = 1 << 18;

    private int* index;
    private long indexCapacity;
    private int[] planeOffsets = new int[16], heights = new int[16], widths = new int[16];
    private ConvSpec spec;
    private int partCount, framedSize, taps, kernelSize, stride, pad, depth, nr, paddedColumns, columns;

    /// <summary>
    /// Whether convolution <paramref name="s"/> packs this way: AVX2 gathers available, and not a 1x1 stride-1 one
    /// (whose im2col row is its input plane itself, which PackColumns copies in one run per panel).
    /// </summary>
    public static bool Applies(ConvSpec s) => Avx2.IsSupported && !(s.Kernel == 1 && s.Stride == 1 && s.Padding == 0);

    /// <summary>Starts a layout for convolution <paramref name="s"/> packed <paramref name="depth"/> rows deep in <paramref name="nr"/>-wide panels.</summary>
    public void Begin(ConvSpec s, int depth, int nr)
    {
        if (nr % 8 != 0) throw new ArgumentOutOfRangeException(nameof(nr), nr, "panels must be a multiple of 8 columns wide");
        spec = s;
        kernelSize = s.Kernel;
        taps = kernelSize * kernelSize;
        stride = s.Stride;
        pad = s.Padding;
        this.depth = depth;
        this.nr = nr;
        partCount = 0;
        framedSize = 0;
        columns = 0;
    }

    /// <summary>
    /// Adds a part of <paramref name="height"/> x <paramref name="width"/> input pixels per channel (its columns follow
    /// the previous parts'); false, adding nothing, when its framed plane would take the framed planes past
    /// <see cref="MaxFramed"/>.
    /// </summary>
    public bool TryAdd(int height, int width)
    {
        long framed = (long)(height + 2 * pad) * (width + 2 * pad);
        if (framedSize + framed + 1 > MaxFramed) return false;
        if (partCount == planeOffsets.Length)
        {
            Array.Resize(ref planeOffsets, 2 * partCount);
            Array.Resize(ref heights, 2 * partCount);
            Array.Resize(ref widths, 2 * partCount);
        }
        planeOffsets[partCount] = framedSize;
        heights[partCount] = height;
        widths[partCount] = width;
        partCount++;
        framedSize += (int)framed;
        columns += spec.OutputSize(height) * spec.OutputSize(width);
        return true;
    }

    /// <summary>
    /// Makes the index table for the parts added, their columns padded to <paramref name="paddedColumns"/>
    /// (a multiple of NR); false when the table would pass <see cref="MaxIndex"/> entries.
    /// </summary>
    public bool Build(int paddedColumns)
    {
        if (paddedColumns % nr != 0 || paddedColumns < columns)
            throw new ArgumentOutOfRangeException(nameof(paddedColumns), paddedColumns, $"must be a multiple of {nr} of at least {columns}");
        long entries = (long)taps * paddedColumns;
        if (entries > MaxIndex) return false;
        if (entries > indexCapacity)
        {
            NativeMemory.AlignedFree(index);
            index = null;
            indexCapacity = 0;
            index = (int*)NativeMemory.AlignedAlloc((nuint)(entries * sizeof(int)), 64);
            indexCapacity = entries;
        }
        this.paddedColumns = paddedColumns;
        int zero = framedSize; // the framed planes' trailing zero
        for (int tap = 0; tap < taps; tap++)
        {
            int ky = tap / kernelSize, kx = tap % kernelSize;
            int* row = index + (long)tap * paddedColumns;
            int q = 0;
            for (int p = 0; p < partCount; p++)
            {
                int framedWidth = widths[p] + 2 * pad, oh = spec.OutputSize(heights[p]), ow = spec.OutputSize(widths[p]);
                int at = planeOffsets[p] + ky * framedWidth + kx;
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++) row[q++] = at + oy * stride * framedWidth + ox * stride;
            }
            for (; q < paddedColumns; q++) row[q] = zero;
        }
        return true;
    }

    /// <summary>
    /// Packs im2col rows <paramref name="kBegin"/> .. <paramref name="kEnd"/> - 1 of every part (part p's first channel
    /// at <c>sources[p]</c>, its channels <c>height * width</c> apart) into <paramref name="dst"/>, padding columns zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(ReadOnlySpan<nint> sources, int kBegin, int kEnd, float* dst)
    {
        // The rows' channels in blocks whose framed planes (each followed by its zero) fit the stack.
        int channelStride = framedSize + 1, blockChannels = Math.Max(1, MaxFramedBlock / channelStride);
        float* framed = stackalloc float[Math.Min(blockChannels, (kEnd - kBegin + taps - 1) / taps + 1) * channelStride];
        long panelStride = (long)depth * nr;
        for (int firstChannel = kBegin / taps; firstChannel * taps < kEnd; firstChannel += blockChannels)
        {
            int endChannel = Math.Min(firstChannel + blockChannels, (kEnd + taps - 1) / taps);
            for (int c = firstChannel; c < endChannel; c++)
            {
                float* block = framed + (c - firstChannel) * channelStride;
                for (int p = 0; p < partCount; p++)
                    Frame((float*)sources[p] + c * (long)heights[p] * widths[p], heights[p], widths[p], block + planeOffsets[p]);
                block[framedSize] = 0f;
            }
            int k0 = Math.Max(kBegin, firstChannel * taps), k1 = Math.Min(kEnd, endChannel * taps);
            int firstTap = k0 - k0 / taps * taps;
            float* firstSource = framed + (k0 / taps - firstChannel) * channelStride;
            float* panel = dst + (long)k0 * nr;
            for (int q0 = 0; q0 < paddedColumns; q0 += nr, panel += panelStride)
            {
                float* d = panel, source = firstSource;
                int* at = index + (long)firstTap * paddedColumns + q0;
                for (int k = k0, tap = firstTap; k < k1; k++, d += nr)
                {
                    for (int t = 0; t < nr; t += 8)
                        Avx2.GatherVector256(source, Avx.LoadVector256(at + t), 4).Store(d + t);
                    at += paddedColumns;
                    if (++tap == taps)
                    {
                        tap = 0;
                        source += channelStride;
                        at -= (long)taps * paddedColumns;
                    }
                }
            }
        }
    }

    // Copies one height x width channel into the middle of a zero frame `pad` wide.
    private void Frame(float* source, int height, int width, float* framed)
    {
        int framedWidth = width + 2 * pad;
        if (pad == 0)
        {
            GemmConvolution.Copy(source, framed, height * width);
            return;
        }
        GemmConvolution.Clear(framed, pad * framedWidth + pad);
        for (int y = 0; y < height; y++)
        {
            float* row = framed + (y + pad) * framedWidth + pad;
            GemmConvolution.Copy(source + y * width, row, width);
            // This row's right border and the next row's left one (after the last row: the bottom frame's start).
            GemmConvolution.Clear(row + width, 2 * pad);
        }
        GemmConvolution.Clear(framed + (height + pad) * framedWidth + pad, pad * framedWidth - pad);
    }

    /// <summary>Frees the index table.</summary>
    public void Dispose()
    {
        NativeMemory.AlignedFree(index);
        index = null;
        indexCapacity = 0;
    }
}
