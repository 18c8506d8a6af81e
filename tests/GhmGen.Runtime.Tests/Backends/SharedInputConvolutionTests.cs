using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// The CPU backend's shared-input GEMM path (SharedInputConvolution: outputs of 9 .. 512 pixels per image, the
/// input packed once per call, 8x16 / 8x32 / 8x48 tiles) against a naive float64 convolution: every kernel
/// size and stride use densely (1x1, 1x1/2, 3x3, 3x3/2, the 7x7/2 stem), odd channel counts and
/// map sizes, partial weight panels and partial pixel tiles of each width, batches, residual (also in place)
/// and ReLU, one k block and several (with the in-place residual that then starts from bias + residual).
/// Each case runs with the input packed by gathers (GatheredColumns) and by runs (PackColumns) and asserts which
/// path and packing it took; grouped convolutions and larger maps must not take it.
/// </summary>
public class SharedInputConvolutionTests
{
    [Theory]
    [InlineData(1, 256, 256, 3, 1, 1, 4, 6, true, true)]      // C4 / P4 at a 64x96 input: 24 pixels, one 8x32 tile
    [InlineData(1, 64, 64, 3, 1, 1, 16, 24, false, true)]     // 384 pixels: eight 8x48 tiles, K = 576 (one block)
    [InlineData(1, 3, 64, 7, 2, 3, 33, 31, false, true)]      // the stem at a tiny input: 17x16 = 272 pixels, 8x16 tiles
    [InlineData(2, 37, 45, 3, 1, 1, 5, 7, true, false)]       // batch 2, 35 pixels (one 8x48 tile), 45 outputs: a partial panel
    [InlineData(1, 512, 1024, 1, 2, 0, 9, 11, false, false)]  // 1x1 stride 2 (downsample): 5x6 = 30 pixels, 8x32
    [InlineData(1, 300, 36, 3, 1, 1, 10, 10, true, true)]     // 100 pixels, K = 2700: several k blocks, in place from bias + residual
    [InlineData(3, 16, 24, 3, 2, 1, 7, 9, true, false)]       // batch 3, 3x3 stride 2: 4x5 = 20 pixels each
    [InlineData(1, 20, 17, 3, 1, 1, 3, 5, true, true)]        // 15 pixels: one partial 8x16 tile, K = 180
    [InlineData(1, 8, 16, 1, 1, 0, 16, 32, true, false)]      // 512 pixels, the most this path takes: sixteen 8x32 tiles
    [InlineData(1, 2048, 256, 3, 2, 1, 7, 10, false, false)]  // P6 from a 7x10 C5: 4x5 pixels, K = 18432 (several blocks)
    [InlineData(1, 1024, 2048, 1, 1, 0, 3, 4, true, true)]    // 1x1 2048 outputs on 12 pixels
    [InlineData(1, 256, 720, 3, 1, 1, 5, 5, false, false)]    // the class head on a 5x5 map (P7 at 320x320): 8x32
    [InlineData(2, 48, 8, 1, 1, 0, 3, 2, false, false)]       // batch 2 of 6 pixels: 12 over the batch, 8x16 per image
    [InlineData(1, 19, 24, 3, 1, 1, 16, 33, false, false)]    // 528 pixels: the GEMM, not this path
    [InlineData(1, 64, 64, 3, 1, 1, 1, 3, false, false)]      // 3 pixels: the small-map path, not this one
    public void SharedInput_MatchesFloat64Convolution(int n, int cin, int cout, int k, int stride, int pad, int h, int w, bool residual, bool relu)
    {
        var random = new Random(cin * 131 + cout * 7 + h);
        var spec = new ConvSpec(cin, cout, k, stride, pad, 1);
        float[] weight = Values(random, (int)spec.WeightCount, 1f / MathF.Sqrt(cin * k * k));
        float[] bias = Values(random, cout, 0.5f);
        float[] x = Values(random, n * cin * h * w, 1f);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] r = Values(random, n * cout * oh * ow, 1f);
        (double[] want, double[] magnitude) = Naive(spec, n, h, w, x, weight, bias, residual ? r : null, relu);
        bool expectShared = oh * ow <= SharedInputConvolution.MaxPixels && n * oh * ow >= SharedInputConvolution.MinimumColumns;

        foreach (GemmKernelKind kind in Kernels())
        {
            // Packed by gathers (GatheredColumns) and by runs (PackColumns, which larger planes take).
            foreach (bool gathers in new[] { true, false })
            {
                // No Winograd: with the AVX2 kernel's 16-tile blocks it would take the 3x3s on 16x24 and larger.
                using var cpu = new CpuBackend(2, kind, winograd: false) { GatheredPacking = gathers };
                foreach (bool inPlace in residual ? new[] { false, true } : new[] { false })
                {
                    long before = cpu.SharedInputCalls, gathered = cpu.GatheredPackingCalls;
                    float[] got = Run(cpu, spec, n, h, w, x, weight, bias, residual ? r : null, inPlace, relu);
                    if (cpu.KernelKind is GemmKernelKind.Avx512 or GemmKernelKind.Avx2)
                    {
                        Assert.Equal(before + (expectShared ? 1 : 0), cpu.SharedInputCalls);
                        Assert.Equal(gathered + (expectShared && gathers && GatheredColumns.Applies(spec) ? 1 : 0), cpu.GatheredPackingCalls);
                    }
                    AssertClose(want, magnitude, got, inPlace);
                }
            }
        }
    }

    /// <summary>The best kernel here and, where that is AVX-512, the AVX2 one too (6-row panels, 6x16 tiles).</summary>
    internal static List<GemmKernelKind> Kernels()
    {
        var kernels = new List<GemmKernelKind> { GemmKernelKind.Auto };
        if (GemmKernel.IsSupported(GemmKernelKind.Avx2) && GemmKernel.Create(GemmKernelKind.Auto).Kind != GemmKernelKind.Avx2) kernels.Add(GemmKernelKind.Avx2);
        return kernels;
    }

    [Theory]
    [InlineData(1, 64, 64, 3, 1, 1, 32, 4, 6)]    // ResNeXt-like 3x3 g32 on 24 pixels
    [InlineData(1, 128, 128, 3, 2, 1, 32, 8, 12)] // 3x3/2 g32
    public void Grouped_DoNotTakeThePath(int n, int cin, int cout, int k, int stride, int pad, int groups, int h, int w)
    {
        var random = new Random(cin + groups);
        var spec = new ConvSpec(cin, cout, k, stride, pad, groups);
        float[] weight = Values(random, (int)spec.WeightCount, 0.3f);
        float[] bias = Values(random, cout, 0.5f);
        float[] x = Values(random, n * cin * h * w, 1f);
        (double[] want, double[] magnitude) = Naive(spec, n, h, w, x, weight, bias, null, relu: true);
        using var cpu = new CpuBackend(2);
        float[] got = Run(cpu, spec, n, h, w, x, weight, bias, null, inPlace: false, relu: true);
        Assert.Equal(0, cpu.SharedInputCalls);
        AssertClose(want, magnitude, got, inPlace: false);
    }

    [Fact]
    public void TileWidth_PadsLeast_TiesGoWide()
    {
        Assert.Equal(16, SharedInputConvolution.TileWidth(1));
        Assert.Equal(16, SharedInputConvolution.TileWidth(15));
        Assert.Equal(32, SharedInputConvolution.TileWidth(24));   // 32 = 2 x 16, the wider
        Assert.Equal(48, SharedInputConvolution.TileWidth(35));   // 48 = 3 x 16
        Assert.Equal(48, SharedInputConvolution.TileWidth(96));
        Assert.Equal(16, SharedInputConvolution.TileWidth(100));  // 112 against 128 and 144
        Assert.Equal(32, SharedInputConvolution.TileWidth(512));
    }

    private static float[] Run(CpuBackend b, ConvSpec spec, int n, int h, int w, float[] x, float[] weight, float[] bias, float[]? r, bool inPlace, bool relu)
    {
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        int outCount = n * spec.OutChannels * oh * ow;
        using IPreparedConv conv = b.PrepareConv(spec, weight, bias);
        var xt = new TensorView(b.Allocate(x.Length), 0, n, spec.InChannels, h, w);
        var yt = new TensorView(b.Allocate(outCount), 0, n, spec.OutChannels, oh, ow);
        var rt = new TensorView(b.Allocate(outCount), 0, n, spec.OutChannels, oh, ow);
        b.Upload(x, xt);
        if (r is not null)
        {
            b.Upload(r, rt);
            if (inPlace) b.Upload(r, yt);
        }
        else
        {
            b.Upload(Enumerable.Repeat(float.NaN, outCount).ToArray(), yt); // every output must be written
        }
        b.Conv2d(conv, xt, yt, r is null ? null : inPlace ? yt : rt, relu);
        float[] result = new float[outCount];
        b.Download(yt, result);
        return result;
    }

    // The convolution in float64, and per output the sum of |terms| (for the float32 rounding bound).
    internal static (double[] Values, double[] Magnitude) Naive(ConvSpec s, int n, int h, int w, float[] x, float[] weight, float[] bias, float[]? r, bool relu)
    {
        int oh = s.OutputSize(h), ow = s.OutputSize(w), cinG = s.InChannels / s.Groups, coutG = s.OutChannels / s.Groups, k = s.Kernel;
        var values = new double[n * s.OutChannels * oh * ow];
        var magnitude = new double[values.Length];
        for (int b = 0; b < n; b++)
        for (int o = 0; o < s.OutChannels; o++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            int g = o / coutG;
            double sum = bias[o], mag = Math.Abs(bias[o]);
            for (int c = 0; c < cinG; c++)
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                int iy = oy * s.Stride - s.Padding + ky, ix = ox * s.Stride - s.Padding + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                double term = (double)weight[((o * cinG + c) * k + ky) * k + kx] * x[((b * s.InChannels + g * cinG + c) * h + iy) * w + ix];
                sum += term;
                mag += Math.Abs(term);
            }
            int at = ((b * s.OutChannels + o) * oh + oy) * ow + ox;
            if (r is not null)
            {
                sum += r[at];
                mag += Math.Abs(r[at]);
            }
            values[at] = relu ? Math.Max(sum, 0) : sum;
            magnitude[at] = mag;
        }
        return (values, magnitude);
    }

    private static void AssertClose(double[] want, double[] magnitude, float[] got, bool inPlace)
    {
        for (int i = 0; i < want.Length; i++)
        {
            double bound = 1e-5 * magnitude[i] + 1e-6;
            Assert.True(Math.Abs(want[i] - got[i]) <= bound, $"[{i}] {got[i]} vs {want[i]} (bound {bound:E2}, in place {inPlace})");
        }
    }

    private static float[] Values(Random random, int count, float scale) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
}
