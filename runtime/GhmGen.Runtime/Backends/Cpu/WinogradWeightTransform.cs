// The Winograd F(4x4, 3x3) weight transform U = G g G^T made at each call, straight from a
// convolution's GEMM panels, for backends that keep no transformed copy (CpuBackend's
// WinogradWeightsPerCall). The GEMM panels of a dense 3x3 convolution hold, per panel of MR output
// channels, K-major rows k = c * 9 + tap of MR floats (PackedConvWeights), so the nine taps of
// input channel c for the whole panel are 9 x MR contiguous floats; the 36 transformed values go
// to the Winograd layout [xi][panel - firstPanel][c][r] of a pass of panels (WinogradConvolution
// reads it with that pass's panel count). Float arithmetic, MR rows per vector (the stored form
// of WinogradWeights.Repack rounds a double sum instead: the two differ by a few ulps).
// One work item is one panel; a pass of P panels costs ~90 vector operations per (panel, channel);
// 8-row panels go through a local block of 16 channels, written out per position in contiguous runs.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs (Winograd cases, per call).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GhmGen.Backends.Cpu;

/// <summary>Transforms a pass of GEMM weight panels of a 3x3 convolution into Winograd panels, as parallel work items.</summary>
[SkipLocalsInit]
internal sealed unsafe class WinogradWeightTransform : IParallelWork
{
    /// <summary>Most floats of transformed weights one pass holds (16 MB); larger convolutions run in passes of output channels.</summary>
    public const long MaxPassElements = 4L << 20;

    /// <summary>Input channels transformed into the local block before it is written out (8-row panels).</summary>
    private const int ChunkChannels = 16;

    private float* source, destination;
    private int rows, inChannels, firstPanel, passPanels;

    /// <summary>
    /// Panels per pass for a convolution of <paramref name="panels"/> MR-row panels and
    /// <paramref name="inChannels"/> inputs: all of them when they fit <see cref="MaxPassElements"/>,
    /// else the most that fit, in whole GEMM chunks of <paramref name="chunkPanels"/>.
    /// </summary>
    public static int PassPanels(int panels, int panelRows, int inChannels, int chunkPanels)
    {
        long perPanel = (long)WinogradWeights.Positions * panelRows * inChannels;
        if (panels * perPanel <= MaxPassElements) return panels;
        return (int)Math.Max(chunkPanels, MaxPassElements / perPanel / chunkPanels * chunkPanels);
    }

    /// <summary>Floats of scratch a pass of <see cref="PassPanels"/> needs.</summary>
    public static long ScratchElements(int panels, int panelRows, int inChannels, int chunkPanels) =>
        (long)WinogradWeights.Positions * PassPanels(panels, panelRows, inChannels, chunkPanels) * panelRows * inChannels;

    /// <summary>Sets up the transform of panels firstPanel .. firstPanel + passPanels - 1; returns the work items.</summary>
    public int Prepare(float* gemmPanels, int panelRows, int inChannels, int firstPanel, int passPanels, float* destination)
    {
        source = gemmPanels;
        rows = panelRows;
        this.inChannels = inChannels;
        this.firstPanel = firstPanel;
        this.passPanels = passPanels;
        this.destination = destination;
        return passPanels;
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        int mr = rows, c = inChannels;
        float* panel = source + (long)(firstPanel + item) * mr * c * 9;
        long positionStride = (long)passPanels * mr * c;
        float* dst = destination + (long)item * c * mr;
        if (mr == 8)
        {
            // The 36 positions lie positionStride apart (a multiple of 4 KB for R-50's channel counts), so
            // writing each channel's 36 half-lines straight out made 36 streams fight over the same cache
            // sets, every line evicted before its other half came. A chunk of channels is transformed into
            // a local block first (18 KB), then each position's part goes out as one contiguous run.
            float* local = stackalloc float[WinogradWeights.Positions * ChunkChannels * 8];
            for (int c0 = 0; c0 < c; c0 += ChunkChannels)
            {
                int count = Math.Min(ChunkChannels, c - c0);
                for (int ch = 0; ch < count; ch++)
                    Transform256(panel + (long)(c0 + ch) * 9 * 8, local + ch * 8, ChunkChannels * 8);
                for (int xi = 0; xi < WinogradWeights.Positions; xi++)
                    GemmConvolution.Copy(local + xi * ChunkChannels * 8, dst + (long)c0 * 8 + xi * positionStride, count * 8);
            }
            return;
        }
        // 4 rows per vector; a panel of 6 rows takes rows 0-3 and 2-5 (the overlap writes the same values twice).
        for (int ch = 0; ch < c; ch++)
            for (int r0 = 0; r0 < mr; r0 += 4)
            {
                int r = Math.Min(r0, mr - 4);
                Transform128(panel + (long)ch * 9 * mr + r, mr, dst + (long)ch * mr + r, positionStride);
            }
    }

    // U = G g G^T for 8 rows: g[tap] at taps + tap * 8, U_xi to output + xi * positionStride.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transform256(float* taps, float* output, long positionStride)
    {
        Vector256<float>* t = stackalloc Vector256<float>[18];
        for (int j = 0; j < 3; j++)
            G(Vector256.Load(taps + j * 8), Vector256.Load(taps + (3 + j) * 8), Vector256.Load(taps + (6 + j) * 8), t + j, 3);
        Vector256<float>* u = stackalloc Vector256<float>[6];
        for (int a = 0; a < 6; a++)
        {
            G(t[a * 3], t[a * 3 + 1], t[a * 3 + 2], u, 1);
            for (int b = 0; b < 6; b++) u[b].Store(output + (a * 6 + b) * positionStride);
        }
    }

    // The same for 4 rows at stride `mr` between taps.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transform128(float* taps, int mr, float* output, long positionStride)
    {
        Vector128<float>* t = stackalloc Vector128<float>[18];
        for (int j = 0; j < 3; j++)
            G(Vector128.Load(taps + j * mr), Vector128.Load(taps + (3 + j) * mr), Vector128.Load(taps + (6 + j) * mr), t + j, 3);
        Vector128<float>* u = stackalloc Vector128<float>[6];
        for (int a = 0; a < 6; a++)
        {
            G(t[a * 3], t[a * 3 + 1], t[a * 3 + 2], u, 1);
            for (int b = 0; b < 6; b++) u[b].Store(output + (a * 6 + b) * positionStride);
        }
    }

    // (G v)[a] for a 3-vector v, G of F(4, 3) (rows 1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
    // 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1); entry a goes to dst[a * stride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void G(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float>* dst, int stride)
    {
        Vector256<float> sum02 = v0 + v2, b = v0 * Vector256.Create(1f / 24) + v2 * Vector256.Create(1f / 6), c = v1 * Vector256.Create(1f / 12);
        var minusSixth = Vector256.Create(-1f / 6);
        dst[0] = v0 * Vector256.Create(0.25f);
        dst[stride] = (sum02 + v1) * minusSixth;
        dst[2 * stride] = (sum02 - v1) * minusSixth;
        dst[3 * stride] = b + c;
        dst[4 * stride] = b - c;
        dst[5 * stride] = v2;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void G(Vector128<float> v0, Vector128<float> v1, Vector128<float> v2, Vector128<float>* dst, int stride)
    {
        Vector128<float> sum02 = v0 + v2, b = v0 * Vector128.Create(1f / 24) + v2 * Vector128.Create(1f / 6), c = v1 * Vector128.Create(1f / 12);
        var minusSixth = Vector128.Create(-1f / 6);
        dst[0] = v0 * Vector128.Create(0.25f);
        dst[stride] = (sum02 + v1) * minusSixth;
        dst[2 * stride] = (sum02 - v1) * minusSixth;
        dst[3 * stride] = b + c;
        dst[4 * stride] = b - c;
        dst[5 * stride] = v2;
    }
}
