using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// <see cref="IBackend.Conv2dShared"/> on the CPU backend (one convolution over several inputs: the small
/// ones as one GEMM of their concatenated columns, ConcatenatedConvolution; per-call Winograd inputs sharing
/// one weight transform; the rest one by one) against a naive float64 convolution per input: the RetinaNet
/// head's five levels at 64x96 and 320x320, odd channel counts (partial weight panels), batches, strides, one
/// k block and several, inputs past the packed-size limit, and the argument checks. Each case asserts which
/// paths ran.
/// </summary>
public class ConcatenatedConvolutionTests
{
    [Theory]
    [InlineData(1, 256, 256, 3, 1, 1, "8x12 4x6 2x3 1x2 1x1", true)]   // the head's 3x3s at 64x96: 129 columns, K = 2304 (several k blocks)
    [InlineData(1, 256, 36, 3, 1, 1, "8x12 4x6 2x3 1x2 1x1", false)]  // retina_reg (36 outputs, a partial panel of 4) at 64x96
    [InlineData(2, 37, 45, 3, 1, 1, "5x7 3x3 1x1", true)]             // batch 2: six parts, 45 outputs, K = 333
    [InlineData(1, 20, 24, 1, 1, 0, "9x11 3x4", false)]               // 1x1, 111 columns, one k block
    [InlineData(3, 16, 24, 3, 2, 1, "7x9 4x5 2x2", true)]             // stride 2, batch 3
    [InlineData(1, 64, 16, 3, 1, 1, "22x22 22x22 21x21 3x3", true)]   // 484 + 484 + 441 + 9 columns
    [InlineData(16, 4, 8, 3, 1, 1, "20x25 10x13", true)]             // 32 parts whose framed planes (12384 floats) are too many to gather
    public void Shared_MatchesFloat64ConvolutionPerInput(int n, int cin, int cout, int k, int stride, int pad, string sizes, bool relu)
    {
        (int H, int W)[] levels = Sizes(sizes);
        var spec = new ConvSpec(cin, cout, k, stride, pad, 1);
        foreach (GemmKernelKind kind in SharedInputConvolutionTests.Kernels())
        {
            // Packed by gathers over every part (GatheredColumns) and part by part (PackColumns).
            foreach (bool gathers in new[] { true, false })
            {
                // No Winograd: with the AVX2 kernel's 16-tile blocks it would take the 3x3s on 22x22.
                using var cpu = new CpuBackend(2, kind, winograd: false) { GatheredPacking = gathers };
                long before = cpu.ConcatenatedCalls, gathered = cpu.GatheredPackingCalls;
                (double[] Want, double[] Magnitude, float[] Got)[] results = Run(cpu, spec, n, levels, relu, seed: cin * 31 + cout);
                if (cpu.KernelKind is GemmKernelKind.Avx512 or GemmKernelKind.Avx2)
                {
                    Assert.Equal(before + 1, cpu.ConcatenatedCalls);
                    // Gathers (except 1x1 stride 1) while every part's zero-framed plane (and one zero) fits GatheredColumns' stack budget.
                    long framed = n * levels.Sum(l => (long)(l.H + 2 * pad) * (l.W + 2 * pad)) + 1;
                    Assert.Equal(gathered + (gathers && GatheredColumns.Applies(spec) && framed <= GatheredColumns.MaxFramed ? 1 : 0), cpu.GatheredPackingCalls);
                }
                foreach (var (want, magnitude, got) in results) AssertClose(want, magnitude, got, 1e-5);
            }
        }
    }

    [Fact]
    public void PerCallWinogradInputs_ShareOneTransform_SmallOnesConcatenate()
    {
        // The head at 512x640 with 2 threads: 64x80 and 32x40 run Winograd, 16x20, 8x10 and 4x5 concatenate.
        var spec = new ConvSpec(256, 256, 3, 1, 1, 1);
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = true };
        long passes = cpu.WinogradWeightPasses, concatenated = cpu.ConcatenatedCalls;
        var results = Run(cpu, spec, 1, Sizes("64x80 32x40 16x20 8x10 4x5"), relu: true, seed: 3);
        Assert.Equal(passes + 1, cpu.WinogradWeightPasses);
        if (cpu.KernelKind is GemmKernelKind.Avx512 or GemmKernelKind.Avx2) Assert.Equal(concatenated + 1, cpu.ConcatenatedCalls);
        // Winograd F(4x4, 3x3) rounds a few times more than the direct sum (WinogradConvolutionTests).
        for (int i = 0; i < results.Length; i++) AssertClose(results[i].Want, results[i].Magnitude, results[i].Got, i < 2 ? 1e-4 : 1e-5);
    }

    [Fact]
    public void InputsPastThePackedLimit_RunOnTheirOwn()
    {
        // K = 2304: 4 Mi floats hold 1820 columns, so of four 22x22 maps (484 columns each) three concatenate.
        var spec = new ConvSpec(256, 32, 3, 1, 1, 1);
        using var cpu = new CpuBackend(2, winograd: false); // on AVX2, Winograd would take 22x22 (36 tiles)
        long concatenated = cpu.ConcatenatedCalls, shared = cpu.SharedInputCalls;
        var results = Run(cpu, spec, 1, Sizes("22x22 22x22 22x22 22x22"), relu: false, seed: 4);
        if (cpu.KernelKind is GemmKernelKind.Avx512 or GemmKernelKind.Avx2)
        {
            Assert.Equal(concatenated + 1, cpu.ConcatenatedCalls);
            Assert.Equal(shared + 1, cpu.SharedInputCalls);
        }
        foreach (var (want, magnitude, got) in results) AssertClose(want, magnitude, got, 1e-5);
    }

    [Theory]
    [InlineData(1, "8x12 4x6 2x3 1x2 1x1", 1)] // 64x96's head: 128 columns fill 32-wide tiles exactly, 129 would pad to 144
    [InlineData(1, "6x8 4x4 1x1", 1)]          // 48 + 16 + 1: 65 columns pad to 80 (16-wide tiles), 64 fill 32-wide ones
    [InlineData(2, "5x7 3x3 1x1", 0)]          // 70 + 18 + 2: 88 columns pad to 96 as 90 do: nothing gained
    [InlineData(1, "4x4 3x3", 0)]              // two inputs are always concatenated
    public void SmallestInput_LeftOut_OnlyWhenItAlonePadsATile(int n, string sizes, int leftOut)
    {
        var spec = new ConvSpec(40, 24, 3, 1, 1, 1);
        foreach (GemmKernelKind kind in SharedInputConvolutionTests.Kernels())
        {
            using var cpu = new CpuBackend(2, kind, winograd: false);
            if (cpu.KernelKind != GemmKernelKind.Avx512) continue; // the AVX2 kernel's tiles are all 16 wide
            long before = cpu.SmallInputsLeftOut, small = cpu.SmallMapCalls, concatenated = cpu.ConcatenatedCalls;
            var results = Run(cpu, spec, n, Sizes(sizes), relu: true, seed: 7);
            Assert.Equal(before + leftOut, cpu.SmallInputsLeftOut);
            Assert.Equal(small + leftOut, cpu.SmallMapCalls);
            Assert.Equal(concatenated + 1, cpu.ConcatenatedCalls);
            foreach (var (want, magnitude, got) in results) AssertClose(want, magnitude, got, 1e-5);
        }
    }

    [Fact]
    public void OneSmallInput_RunsAsAPlainConvolution()
    {
        var spec = new ConvSpec(32, 32, 3, 1, 1, 1);
        using var cpu = new CpuBackend(2);
        long concatenated = cpu.ConcatenatedCalls;
        var results = Run(cpu, spec, 1, Sizes("6x7"), relu: true, seed: 5);
        Assert.Equal(concatenated, cpu.ConcatenatedCalls);
        AssertClose(results[0].Want, results[0].Magnitude, results[0].Got, 1e-5);
    }

    [Fact]
    public void BadArguments_Throw()
    {
        var spec = new ConvSpec(8, 8, 3, 1, 1, 1);
        using var cpu = new CpuBackend(2);
        using IPreparedConv conv = cpu.PrepareConv(spec, new float[spec.WeightCount], new float[8]);
        DeviceBuffer buffer = cpu.Allocate(4 * 8 * 16);
        TensorView a = new(buffer, 0, 1, 8, 4, 4), b = new(buffer, 128, 1, 8, 4, 4), c = new(buffer, 256, 1, 8, 4, 4), d = new(buffer, 384, 1, 8, 4, 4);
        Assert.Throws<ArgumentException>(() => cpu.Conv2dShared(conv, [a, b], [c], relu: false));
        // An output over another pair's input, two outputs over each other, a wrong output shape.
        Assert.Throws<ArgumentException>(() => cpu.Conv2dShared(conv, [a, b], [b, c], relu: false));
        Assert.Throws<ArgumentException>(() => cpu.Conv2dShared(conv, [a, b], [c, c], relu: false));
        Assert.Throws<ArgumentException>(() => cpu.Conv2dShared(conv, [a], [new TensorView(buffer, 256, 1, 7, 4, 4)], relu: false));
        cpu.Conv2dShared(conv, [a, b], [c, d], relu: false);
    }

    [Fact]
    public void ReferenceBackend_DefaultIsOneConv2dPerPair()
    {
        var spec = new ConvSpec(5, 6, 3, 2, 1, 1);
        using var reference = new ReferenceBackend();
        var results = Run(reference, spec, 2, Sizes("7x5 3x3"), relu: true, seed: 6);
        foreach (var (want, magnitude, got) in results) AssertClose(want, magnitude, got, 1e-5);
    }

    private static (int H, int W)[] Sizes(string text) =>
        [.. text.Split(' ').Select(s => s.Split('x')).Select(p => (int.Parse(p[0]), int.Parse(p[1])))];

    // Conv2dShared over inputs of the given sizes (each level its own buffers, every output first NaN),
    // and per level the naive float64 result with its magnitudes (SharedInputConvolutionTests.Naive).
    private static (double[] Want, double[] Magnitude, float[] Got)[] Run(IBackend b, ConvSpec spec, int n, (int H, int W)[] levels, bool relu, int seed)
    {
        var random = new Random(seed);
        float[] weight = Values(random, (int)spec.WeightCount, 1f / MathF.Sqrt(spec.InChannels * spec.Kernel * spec.Kernel));
        float[] bias = Values(random, spec.OutChannels, 0.5f);
        using IPreparedConv conv = b.PrepareConv(spec, weight, bias);
        var xs = new TensorView[levels.Length];
        var ys = new TensorView[levels.Length];
        var inputs = new float[levels.Length][];
        for (int i = 0; i < levels.Length; i++)
        {
            (int h, int w) = levels[i];
            int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
            inputs[i] = Values(random, n * spec.InChannels * h * w, 1f);
            xs[i] = new TensorView(b.Allocate(inputs[i].Length), 0, n, spec.InChannels, h, w);
            ys[i] = new TensorView(b.Allocate(n * spec.OutChannels * oh * ow), 0, n, spec.OutChannels, oh, ow);
            b.Upload(inputs[i], xs[i]);
            b.Upload(Enumerable.Repeat(float.NaN, (int)ys[i].ElementCount).ToArray(), ys[i]);
        }
        b.Conv2dShared(conv, xs, ys, relu);
        var results = new (double[], double[], float[])[levels.Length];
        for (int i = 0; i < levels.Length; i++)
        {
            (double[] want, double[] magnitude) = SharedInputConvolutionTests.Naive(spec, n, levels[i].H, levels[i].W, inputs[i], weight, bias, null, relu);
            float[] got = new float[ys[i].ElementCount];
            b.Download(ys[i], got);
            results[i] = (want, magnitude, got);
        }
        return results;
    }

    private static void AssertClose(double[] want, double[] magnitude, float[] got, double relative)
    {
        for (int i = 0; i < want.Length; i++)
        {
            double bound = relative * magnitude[i] + 1e-6;
            Assert.True(Math.Abs(want[i] - got[i]) <= bound, $"[{i}] {got[i]} vs {want[i]} (bound {bound:E2})");
        }
    }

    private static float[] Values(Random random, int count, float scale) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
}
