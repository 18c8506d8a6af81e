using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// Grouped stride-1 and stride-2 convolutions (GroupedDirectConvolution on the AVX-512 kernel) against the
/// reference backend, and bitwise against the GEMM path they replace: 4 outputs per group (the
/// narrow kernel's 4-row panels), 12 (a full and a half 8-row panel), 16 and 32 (ResNeXt's
/// widths; 32 gives K = 288, more than one GEMM k block), 1x1, 3x3 and 5x5 kernels, no padding,
/// odd map sizes, a batch of 2, residual (also in place) and ReLU, a wide map whose window holds only
/// 6 tiles per work item (blocks start mid-row), and a group too wide for the scratch (GEMM path).
/// </summary>
public class GroupedDirectConvolutionTests
{
    [Theory]
    [InlineData(2, 256, 256, 3, 1, 64, 13, 17, false, true)]   // X-101 64x4d layer1 widths: 4 per group
    [InlineData(1, 512, 512, 3, 1, 32, 9, 11, true, true)]     // 16 per group, residual + ReLU
    [InlineData(1, 1024, 1024, 3, 1, 32, 5, 7, true, false)]   // 32 per group: K = 288
    [InlineData(1, 20, 24, 5, 2, 2, 7, 29, false, true)]       // 5x5, 12 per group: a full and a half panel
    [InlineData(2, 12, 16, 1, 0, 4, 6, 5, true, true)]         // 1x1 grouped
    [InlineData(1, 64, 64, 3, 0, 8, 10, 9, false, false)]      // no padding: OW = W - 2
    [InlineData(1, 128, 16, 3, 1, 2, 5, 300, false, true)]     // 64 channels per group on a 300-wide map: blocks of 6 tiles, starting mid-row
    [InlineData(1, 8, 8, 3, 1, 2, 1, 1, true, true)]           // a 1x1 map
    public void GroupedConvolutions_MatchReferenceAndGemmPath(int n, int cin, int cout, int k, int pad, int groups, int h, int w, bool residual, bool relu) =>
        Check(n, cin, cout, k, 1, pad, groups, h, w, residual, relu);

    [Theory]
    [InlineData(2, 256, 256, 3, 1, 64, 13, 17, false, true)]   // X-101 64x4d's layer2 entry widths (4 per group), odd size: phase planes of unequal widths
    [InlineData(1, 512, 512, 3, 1, 64, 14, 20, true, true)]    // 8 per group, even size, residual + ReLU
    [InlineData(1, 1024, 1024, 3, 1, 32, 9, 8, false, false)]  // 32 per group: K = 288
    [InlineData(1, 20, 24, 5, 2, 2, 11, 13, false, true)]      // 5x5: taps two rows and columns into a phase plane
    [InlineData(1, 64, 16, 3, 1, 2, 6, 150, false, true)]      // 32 per group, wide rows: vector phase rows, blocks starting mid-row
    [InlineData(1, 16, 16, 3, 1, 4, 1, 1, true, true)]         // a 1x1 map
    [InlineData(1, 16, 16, 1, 0, 4, 9, 7, true, false)]        // 1x1 stride 2 (a downsample, grouped)
    public void StrideTwoGroupedConvolutions_MatchReferenceAndGemmPath(int n, int cin, int cout, int k, int pad, int groups, int h, int w, bool residual, bool relu) =>
        Check(n, cin, cout, k, 2, pad, groups, h, w, residual, relu);

    private static void Check(int n, int cin, int cout, int k, int stride, int pad, int groups, int h, int w, bool residual, bool relu)
    {
        var random = new Random(cin * 31 + cout + k + stride);
        var spec = new ConvSpec(cin, cout, k, stride, pad, groups);
        float[] weight = Values(random, (int)spec.WeightCount, 1f / MathF.Sqrt(cin / groups * k * k));
        float[] bias = Values(random, cout, 0.5f);
        float[] x = Values(random, n * cin * h * w, 1f);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] r = Values(random, n * cout * oh * ow, 1f);

        float[] want = Run(new ReferenceBackend(), spec, n, h, w, x, weight, bias, residual ? r : null, inPlace: false, relu);
        int depth = cin / groups * k * k;
        foreach (GemmKernelKind kind in SharedInputConvolutionTests.Kernels())
        {
            using var cpu = new CpuBackend(2, kind);
            using var gemm = new CpuBackend(2, kind) { GroupedDirect = false };
            foreach (bool inPlace in residual ? new[] { false, true } : new[] { false })
            {
                long before = cpu.GroupedDirectCalls;
                float[] got = Run(cpu, spec, n, h, w, x, weight, bias, residual ? r : null, inPlace, relu);
                Assert.Equal(before + (cpu.KernelKind == GemmKernelKind.Avx512 ? 1 : 0), cpu.GroupedDirectCalls);
                for (int i = 0; i < want.Length; i++)
                    Assert.True(Math.Abs(want[i] - got[i]) <= 1e-5f * (1 + Math.Abs(want[i])) * MathF.Sqrt(depth) / 4, $"{kind} [{i}] {got[i]} vs {want[i]}");
                // The same sums in the same order as the GEMM path (which adds an in-place residual first when K > 192).
                if (!(inPlace && depth > GemmConvolution.SingleDepthBlock))
                {
                    float[] viaGemm = Run(gemm, spec, n, h, w, x, weight, bias, residual ? r : null, inPlace, relu);
                    Assert.Equal(0, gemm.GroupedDirectCalls);
                    for (int i = 0; i < want.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(viaGemm[i]) == BitConverter.SingleToInt32Bits(got[i]), $"{kind} [{i}] {got[i]} vs GEMM {viaGemm[i]}");
                }
            }
        }
    }

    [Fact]
    public void GroupTooWideForTheScratch_TakesTheGemmPath()
    {
        // 1024 channels per group on a 200-wide map: one tile's window (1024 x 7 rows x 202) exceeds the scratch.
        var spec = new ConvSpec(2048, 16, 3, 1, 1, 2);
        var random = new Random(5);
        float[] weight = Values(random, (int)spec.WeightCount, 0.01f);
        float[] bias = Values(random, 16, 0.5f);
        float[] x = Values(random, 2048 * 2 * 200, 1f);
        float[] want = Run(new ReferenceBackend(), spec, 1, 2, 200, x, weight, bias, null, inPlace: false, relu: false);
        using var cpu = new CpuBackend(2);
        float[] got = Run(cpu, spec, 1, 2, 200, x, weight, bias, null, inPlace: false, relu: false);
        Assert.Equal(0, cpu.GroupedDirectCalls);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(want[i] - got[i]) <= 1e-4f * (1 + Math.Abs(want[i])), $"[{i}] {got[i]} vs {want[i]}");
    }

    private static float[] Run(IBackend b, ConvSpec spec, int n, int h, int w, float[] x, float[] weight, float[] bias, float[]? residual, bool inPlace, bool relu)
    {
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        int outputs = n * spec.OutChannels * oh * ow;
        using IPreparedConv conv = b.PrepareConv(spec, weight, bias);
        var xt = new TensorView(b.Allocate(x.Length), 0, n, spec.InChannels, h, w);
        var yt = new TensorView(b.Allocate(outputs), 0, n, spec.OutChannels, oh, ow);
        var rt = new TensorView(b.Allocate(outputs), 0, n, spec.OutChannels, oh, ow);
        b.Upload(x, xt);
        if (residual is not null)
        {
            b.Upload(residual, rt);
            if (inPlace) b.Upload(residual, yt);
        }
        b.Conv2d(conv, xt, yt, residual is null ? null : inPlace ? yt : rt, relu);
        float[] result = new float[outputs];
        b.Download(yt, result);
        return result;
    }

    private static float[] Values(Random random, int count, float scale) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
}
