using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// Convolutions with at most 48 output pixels against the reference backend: odd channel counts,
/// stride 2, padding, a batch of 2, residual (also in place) and ReLU. Up to 8 pixels (over the
/// batch) they must have taken the GEMV-like small-map path on the AVX-512 kernel (1, 2, 3, 5, 6, 7
/// and 8 pixels: every mix of its 8-, 4-, 2- and 1-pixel groups), from 9 on the shared-input GEMM
/// (SharedInputConvolutionTests has that path's own cases).
/// </summary>
public class SmallMapConvolutionTests
{
    [Theory]
    [InlineData(1, 37, 45, 3, 1, 1, 1, 2, false, false)]   // a 1x2 map (P7-like), 45 outputs: a partial panel
    [InlineData(1, 256, 256, 3, 2, 1, 3, 5, true, true)]   // stride 2 -> 2x3, residual + ReLU
    [InlineData(1, 2048, 256, 3, 2, 1, 4, 5, false, false)] // P6 from C5 at a small input: K = 18432
    [InlineData(2, 19, 24, 1, 1, 0, 2, 2, true, false)]    // batch 2: 8 columns exactly
    [InlineData(1, 5, 9, 3, 1, 1, 1, 1, true, true)]       // one pixel
    [InlineData(1, 256, 256, 3, 1, 1, 4, 6, true, true)]   // 24 pixels (C4 / P4 at a 64x96 input): three groups of 8
    [InlineData(2, 33, 70, 1, 1, 0, 4, 5, false, true)]    // batch 2, 40 pixels: a partial last group, images across a group
    [InlineData(1, 600, 24, 3, 1, 1, 6, 8, false, false)]  // 48 pixels, the most this path takes; K = 5400: several gather items
    [InlineData(1, 515, 20, 3, 1, 1, 1, 7, true, true)]    // 7 pixels: groups of 4, 2 and 1; K = 4635 (odd)
    [InlineData(1, 31, 17, 1, 1, 0, 1, 3, false, true)]    // 3 pixels: 2 + 1, K = 31
    [InlineData(1, 2048, 256, 3, 2, 1, 2, 10, true, false)] // P6-like, 1x5 = 5 pixels: 4 + 1, K = 18432
    public void SmallMaps_MatchReference(int n, int cin, int cout, int k, int stride, int pad, int h, int w, bool residual, bool relu)
    {
        var random = new Random(cin * 31 + cout);
        var spec = new ConvSpec(cin, cout, k, stride, pad, 1);
        float[] weight = Values(random, (int)spec.WeightCount, 1f / MathF.Sqrt(cin * k * k));
        float[] bias = Values(random, cout, 0.5f);
        float[] x = Values(random, n * cin * h * w, 1f);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] r = Values(random, n * cout * oh * ow, 1f);

        float[] Run(IBackend b, bool inPlace)
        {
            using IPreparedConv conv = b.PrepareConv(spec, weight, bias);
            var xt = new TensorView(b.Allocate(x.Length), 0, n, cin, h, w);
            var yt = new TensorView(b.Allocate(r.Length), 0, n, cout, oh, ow);
            var rt = new TensorView(b.Allocate(r.Length), 0, n, cout, oh, ow);
            b.Upload(x, xt);
            b.Upload(r, rt);
            if (inPlace) b.Upload(r, yt);
            b.Conv2d(conv, xt, yt, residual ? (inPlace ? yt : rt) : null, relu);
            float[] result = new float[r.Length];
            b.Download(yt, result);
            return result;
        }

        float[] want = Run(new ReferenceBackend(), inPlace: false);
        // The best kernel here, and the AVX2 one (6-row panels: the small-map path's masked last step) where it is not.
        foreach (GemmKernelKind kind in SharedInputConvolutionTests.Kernels())
        {
            using var cpu = new CpuBackend(2, kind);
            foreach (bool inPlace in residual ? new[] { false, true } : new[] { false })
            {
                long before = cpu.SmallMapCalls, sharedBefore = cpu.SharedInputCalls;
                float[] got = Run(cpu, inPlace);
                bool small = n * oh * ow < SharedInputConvolution.MinimumColumns;
                if (cpu.KernelKind is GemmKernelKind.Avx512 or GemmKernelKind.Avx2)
                {
                    Assert.Equal(before + (small ? 1 : 0), cpu.SmallMapCalls);
                    Assert.Equal(sharedBefore + (small ? 0 : 1), cpu.SharedInputCalls);
                }
                for (int i = 0; i < want.Length; i++)
                    Assert.True(Math.Abs(want[i] - got[i]) <= 1e-5f * (1 + Math.Abs(want[i])) * MathF.Sqrt(cin * k * k) / 8, $"{kind} [{i}] {got[i]} vs {want[i]}");
            }
        }
    }

    private static float[] Values(Random random, int count, float scale) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
}
