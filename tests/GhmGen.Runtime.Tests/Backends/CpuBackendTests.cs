// Every CpuBackend op against ReferenceBackend on random data: odd image sizes, channel counts
// that are not multiples of the SIMD width or tile, groups 2/4/32, stride 2 on odd sizes, N = 2,
// residual and ReLU on and off, several k blocks, row blocks and column blocks; each GEMM
// micro-kernel variant this processor supports, on 1 and 2 threads.
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class CpuBackendTests
{
    /// <summary>One convolution case: spec, input size, batch, residual, ReLU.</summary>
    public sealed record ConvCase(int In, int Out, int Kernel, int Stride, int Padding, int Groups, int H, int W, int N, bool Residual, bool Relu)
    {
        public override string ToString() => $"{In}->{Out} k{Kernel}s{Stride}p{Padding}g{Groups} {N}x{H}x{W}{(Residual ? " +res" : "")}{(Relu ? " relu" : "")}";
    }

    private static readonly ConvCase[] ConvCases =
    [
        new(3, 8, 7, 2, 3, 1, 13, 17, 1, false, true),        // stem-like, odd size
        new(16, 24, 1, 1, 0, 1, 7, 13, 2, true, true),        // 1x1 plain GEMM, N = 2, residual + ReLU
        new(20, 36, 3, 1, 1, 1, 7, 13, 2, false, false),      // 3x3, channels not multiples of the tile
        new(64, 40, 3, 1, 1, 1, 9, 11, 1, true, false),       // K = 576: several k blocks, residual without ReLU
        new(300, 17, 1, 1, 0, 1, 5, 9, 1, false, true),       // K = 300: k-block tail
        new(12, 20, 1, 2, 0, 1, 9, 13, 2, false, false),      // downsample 1x1 stride 2, odd size
        new(8, 8, 3, 2, 1, 2, 9, 13, 1, false, true),         // groups 2, stride 2
        new(16, 32, 3, 1, 1, 4, 7, 13, 1, true, true),        // groups 4
        new(64, 64, 3, 1, 1, 32, 11, 7, 2, false, true),      // groups 32, 2 channels per group
        new(128, 128, 3, 2, 1, 32, 13, 9, 1, false, false),   // groups 32, 4 per group (ResNeXt), stride 2
        new(256, 20, 3, 2, 1, 1, 5, 7, 1, false, false),      // P6-like: tiny output, many k blocks
        new(8, 16, 3, 1, 1, 1, 37, 41, 1, true, true),        // 1517 pixels: several column blocks
        new(32, 300, 1, 1, 0, 1, 5, 6, 1, true, false),       // 300 outputs: two row blocks
        new(5, 7, 5, 3, 2, 1, 11, 10, 2, false, false),       // kernel 5, stride 3
        new(4, 8, 3, 2, 1, 1, 9, 101, 1, false, true),        // stride 2, wide rows: vector even-element packing
        new(8, 16, 1, 2, 0, 1, 5, 99, 2, true, true),         // downsample on wide rows
        new(3, 16, 7, 2, 3, 1, 11, 133, 1, false, true),      // stem on wide rows
        new(3, 10, 3, 1, 1, 1, 2000, 1, 4, false, false),     // one-pixel rows: more runs than kept, per-element packing
        new(1100, 20, 1, 1, 0, 1, 23, 29, 2, true, true),     // 1x1, K = 1100 (over 512 pixels: the GEMM path) in one k block over narrow column blocks, the last partial
        new(600, 12, 1, 2, 0, 1, 47, 45, 1, false, false),    // downsample 1x1 to 24x23, K = 600 in one k block
    ];

    // Dense 3x3 stride-1 pad-1 cases, run through Winograd F(4x4, 3x3): partial tiles at the right
    // and bottom edges, several tile blocks, several k blocks and output-channel chunks.
    private static readonly ConvCase[] WinogradCases =
    [
        new(20, 36, 3, 1, 1, 1, 7, 13, 2, false, false),
        new(16, 24, 3, 1, 1, 1, 29, 31, 1, true, true),
        new(300, 70, 3, 1, 1, 1, 9, 11, 1, true, false),
        new(8, 520, 3, 1, 1, 1, 4, 4, 1, false, true),
        new(64, 64, 3, 1, 1, 1, 1, 1, 2, false, false),
        new(12, 20, 3, 1, 1, 1, 23, 75, 2, true, true),        // wide: runs of 8 interior tiles (AVX2 gather/transpose paths)
        new(300, 520, 3, 1, 1, 1, 9, 11, 1, true, true),       // per call: transformed weights over WinogradWeightTransform.MaxPassElements, two passes
    ];

    public static TheoryData<int, GemmKernelKind, int> ConvData()
    {
        var data = new TheoryData<int, GemmKernelKind, int>();
        for (int i = 0; i < ConvCases.Length; i++)
        {
            foreach (GemmKernelKind kind in new[] { GemmKernelKind.Avx512, GemmKernelKind.Avx2, GemmKernelKind.Portable })
                data.Add(i, kind, 2);
            data.Add(i, GemmKernelKind.Auto, 1);
        }
        return data;
    }

    // (case, kernel, threads, weights transformed per call instead of stored).
    public static TheoryData<int, GemmKernelKind, int, bool> WinogradData()
    {
        var data = new TheoryData<int, GemmKernelKind, int, bool>();
        for (int i = 0; i < WinogradCases.Length; i++)
            foreach (bool perCall in new[] { false, true })
            {
                foreach (GemmKernelKind kind in new[] { GemmKernelKind.Avx512, GemmKernelKind.Avx2, GemmKernelKind.Portable })
                    data.Add(i, kind, 2, perCall);
                data.Add(i, GemmKernelKind.Auto, 1, perCall);
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(ConvData))]
    public void Conv2dMatchesReference(int caseIndex, GemmKernelKind kind, int threads) =>
        CheckConv(ConvCases[caseIndex], caseIndex, kind, threads, winograd: false);

    [Theory]
    [MemberData(nameof(WinogradData))]
    public void WinogradConv2dMatchesReference(int caseIndex, GemmKernelKind kind, int threads, bool perCall) =>
        CheckConv(WinogradCases[caseIndex], caseIndex, kind, threads, winograd: true, perCall);

    [Fact]
    public void LargeWinogradConvolutionRunsInSeveralWeightPasses()
    {
        // The last Winograd case must need more than one pass, or it tests nothing beyond the others.
        ConvCase c = WinogradCases[^1];
        GemmKernel kernel = GemmKernel.Create(GemmKernelKind.Auto);
        int panels = (c.Out + kernel.Rows - 1) / kernel.Rows;
        Assert.True(WinogradWeightTransform.PassPanels(panels, kernel.Rows, c.In, WinogradConvolution.PanelsPerChunk) < panels);
    }

    private static void CheckConv(ConvCase c, int caseIndex, GemmKernelKind kind, int threads, bool winograd, bool perCall = false)
    {
        if (!GemmKernel.IsSupported(kind)) return; // this processor cannot run the variant
        var spec = new ConvSpec(c.In, c.Out, c.Kernel, c.Stride, c.Padding, c.Groups);
        var random = new Random(1000 + caseIndex);
        float[] x = RandomValues(random, c.N * c.In * c.H * c.W);
        float[] w = RandomValues(random, (int)spec.WeightCount);
        float[] bias = caseIndex % 3 == 2 ? [] : RandomValues(random, c.Out);
        int oh = spec.OutputSize(c.H), ow = spec.OutputSize(c.W);
        int outCount = c.N * c.Out * oh * ow;
        float[]? residual = c.Residual ? RandomValues(random, outCount) : null;

        using var cpu = new CpuBackend(threads, kind, winograd) { WinogradMinimumTiles = 0, WinogradWeightsPerCall = perCall };
        float[] got = RunConv(cpu, spec, x, w, bias, residual, c, oh, ow);
        if (perCall) Assert.True(cpu.WinogradWeightPasses > 0, "the per-call Winograd path did not run");
        var reference = new ReferenceBackend();
        float[] expected = RunConv(reference, spec, x, w, bias, residual, c, oh, ow);
        // Magnitude of each output's sum: the same convolution of |x| and |w|, plus |bias|, |residual|.
        float[] magnitude = RunConv(reference, spec, Abs(x), Abs(w), Abs(bias), residual is null ? null : Abs(residual), c, oh, ow);

        // The CPU backend sums the K = in/groups*k*k products (plus bias and residual) in another
        // order (k blocks, FMA) than the reference. Each float32 rounding adds at most eps*|partial
        // sum| <= eps*S, S = sum |w||x| + |bias| + |residual|; rounding errors are independent
        // and of either sign, so the difference of the two orders grows like sqrt(K)*eps*S (the
        // worst case K*eps*S is never approached by random data). 8*sqrt(K+2)*eps*S leaves a wide
        // margin for that and is still ~1e-5 relative for K = 576: a wrong tap, channel, group or
        // edge would be off by about |w||x| ~ S/K, far above it.
        int depth = c.In / c.Groups * c.Kernel * c.Kernel;
        double factor = 8 * Math.Sqrt(depth + 2) * 1.1920929e-7; // float32 machine epsilon 2^-23
        if (winograd) factor *= WinogradErrorGrowth;
        double worst = 0;
        for (int i = 0; i < outCount; i++)
        {
            double tolerance = factor * magnitude[i] + 1e-30;
            worst = Math.Max(worst, Math.Abs(got[i] - expected[i]) / (factor * magnitude[i] + 1e-30));
            if (Math.Abs(got[i] - expected[i]) > tolerance)
                Assert.Fail($"{c} kernel {kind} threads {threads}: output {i} is {got[i]}, reference {expected[i]} (tolerance {tolerance:g3})");
        }
        Console.WriteLine($"{c} {kind} winograd={winograd} perCall={perCall}: worst error / tolerance {worst:F3}");
    }

    // Winograd F(4x4, 3x3) also rounds in the transforms: V = B^T d B and Y = A^T M A have
    // entries up to 5 and 8, so each product carries a rounding error of several eps relative to
    // |w||x| instead of ~eps. 4x the direct tolerance covers it: on these cases the worst error is
    // at most 0.1 of that (printed per case), and a wrong tap (~S/K) is still >20x above it.
    private const double WinogradErrorGrowth = 4;

    [Fact]
    public void Conv2dWritesIntoTensorAtOffsetAndLeavesTheRestAlone()
    {
        using var cpu = new CpuBackend(2);
        var reference = new ReferenceBackend();
        var spec = new ConvSpec(6, 10, 3, 1, 1, 1);
        var random = new Random(7);
        float[] x = RandomValues(random, 6 * 5 * 7), w = RandomValues(random, (int)spec.WeightCount), b = RandomValues(random, 10);
        DeviceBuffer xb = cpu.Allocate(x.Length + 11), yb = cpu.Allocate(10 * 35 + 20);
        var xv = new TensorView(xb, 11, 1, 6, 5, 7);
        var yv = new TensorView(yb, 13, 1, 10, 5, 7);
        ((HostBuffer)yb).Array.AsSpan().Fill(-123f);
        cpu.Upload(x, xv);
        using IPreparedConv conv = cpu.PrepareConv(spec, w, b);
        cpu.Conv2d(conv, xv, yv, null, relu: false);
        float[] expected = RunConv(reference, spec, x, w, b, null, new ConvCase(6, 10, 3, 1, 1, 1, 5, 7, 1, false, false), 5, 7);
        float[] got = new float[350];
        cpu.Download(yv, got);
        for (int i = 0; i < got.Length; i++) Assert.Equal(expected[i], got[i], 1e-4f);
        float[] all = ((HostBuffer)yb).Array;
        Assert.All(all.AsSpan(0, 13).ToArray(), v => Assert.Equal(-123f, v));
        Assert.All(all.AsSpan(13 + 350).ToArray(), v => Assert.Equal(-123f, v));
    }

    [Theory]
    [InlineData(64, 3, false, false)] // GEMM, K = 576: several k blocks accumulate onto y
    [InlineData(16, 1, false, false)] // GEMM, 1x1
    [InlineData(16, 3, true, false)]  // Winograd
    [InlineData(16, 3, true, true)]   // Winograd, weights transformed per call
    public void Conv2dResidualMayBeTheOutputItself(int inChannels, int kernel, bool winograd, bool perCall)
    {
        // y = relu(conv(x) + y): the reference reads each residual value before writing it.
        var spec = new ConvSpec(inChannels, 12, kernel, 1, kernel / 2, 1);
        var random = new Random(inChannels + kernel);
        float[] x = RandomValues(random, inChannels * 17 * 23), w = RandomValues(random, (int)spec.WeightCount), b = RandomValues(random, 12);
        float[] start = RandomValues(random, 12 * 17 * 23);
        float[] Run(IBackend be)
        {
            using IPreparedConv conv = be.PrepareConv(spec, w, b);
            TensorView xv = Tensor(be, x, 1, inChannels, 17, 23), yv = Tensor(be, start, 1, 12, 17, 23);
            be.Conv2d(conv, xv, yv, yv, relu: true);
            return Read(be, yv);
        }
        using var cpu = new CpuBackend(2, GemmKernelKind.Auto, winograd) { WinogradMinimumTiles = 0, WinogradWeightsPerCall = perCall };
        float[] expected = Run(new ReferenceBackend()), got = Run(cpu);
        for (int i = 0; i < got.Length; i++) Assert.Equal(expected[i], got[i], 2e-4f);
    }

    [Fact]
    public void BadArgumentsAreRejectedWithClearMessages()
    {
        using var cpu = new CpuBackend(1);
        var spec = new ConvSpec(4, 8, 3, 1, 1, 1);
        ArgumentException e = Assert.Throws<ArgumentException>(() => cpu.PrepareConv(spec, new float[10], []));
        Assert.Contains("weight has 10 elements", e.Message);
        using IPreparedConv conv = cpu.PrepareConv(spec, new float[spec.WeightCount], []);
        var x = new TensorView(cpu.Allocate(4 * 25), 0, 1, 4, 5, 5);
        var y = new TensorView(cpu.Allocate(8 * 16), 0, 1, 8, 4, 4);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2d(conv, x, y, null, relu: false));
        Assert.Contains("does not give output 1x8x4x4", e.Message);
        using IPreparedConv other = new ReferenceBackend().PrepareConv(spec, new float[spec.WeightCount], []);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2d(other, x, new TensorView(cpu.Allocate(200), 0, 1, 8, 5, 5), null, false));
        Assert.Contains("not prepared by this CPU backend", e.Message);
        var shared = cpu.Allocate(4 * 25 + 8 * 25);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2d(conv, new TensorView(shared, 0, 1, 4, 5, 5), new TensorView(shared, 50, 1, 8, 5, 5), null, false));
        Assert.Contains("overlaps the input", e.Message);
    }

    [Theory]
    [InlineData(2, 3, 9, 13, 3, 2, 1)]
    [InlineData(1, 5, 8, 8, 2, 2, 0)]
    [InlineData(1, 2, 7, 10, 3, 1, 1)]
    [InlineData(1, 64, 40, 61, 3, 2, 1)]
    [InlineData(1, 3, 11, 37, 5, 2, 2)] // a wider window: the dense window pass reads two border columns each side
    [InlineData(2, 2, 6, 34, 3, 3, 1)]  // stride 3: every third window start
    public void MaxPoolMatchesReference(int n, int c, int h, int w, int kernel, int stride, int padding)
    {
        float[] x = RandomValues(new Random(h * w), n * c * h * w);
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        float[] Run(IBackend b)
        {
            TensorView xv = Tensor(b, x, n, c, h, w), yv = new(b.Allocate(n * c * oh * ow), 0, n, c, oh, ow);
            b.MaxPool2d(xv, yv, kernel, stride, padding);
            return Read(b, yv);
        }
        using var cpu = new CpuBackend(2);
        Assert.Equal(Run(new ReferenceBackend()), Run(cpu)); // max is exact
    }

    [Theory]
    [InlineData(1, 1, 3, 5, 7, 10)]
    [InlineData(2, 3, 4, 5, 8, 10)]
    [InlineData(2, 3, 5, 7, 13, 17)]
    [InlineData(1, 4, 25, 38, 50, 76)]
    [InlineData(1, 2, 6, 6, 4, 5)]
    public void UpsampleNearestAddMatchesReference(int n, int c, int ih, int iw, int oh, int ow)
    {
        var random = new Random(ih * 100 + oh);
        float[] upper = RandomValues(random, n * c * ih * iw), lower = RandomValues(random, n * c * oh * ow);
        float[] Run(IBackend b)
        {
            TensorView uv = Tensor(b, upper, n, c, ih, iw), lv = Tensor(b, lower, n, c, oh, ow);
            b.UpsampleNearestAdd(uv, lv);
            return Read(b, lv);
        }
        using var cpu = new CpuBackend(2);
        Assert.Equal(Run(new ReferenceBackend()), Run(cpu)); // one float add per element: exact
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(2 * 16384 + 5)]
    public void ElementwiseOpsMatchReference(int length)
    {
        var random = new Random(length);
        float[] a = RandomValues(random, length), b = RandomValues(random, length);
        float[] s = a.Select(v => v * 20f).ToArray();
        s[0] = 0f;
        if (length > 3)
        {
            s[1] = -100f;
            s[2] = 100f;
        }
        using var cpu = new CpuBackend(2);
        var reference = new ReferenceBackend();
        foreach (bool relu in new[] { false, true })
        {
            float[] Add(IBackend be)
            {
                TensorView av = Tensor(be, a, 1, length, 1, 1), bv = Tensor(be, b, 1, length, 1, 1);
                be.Add(av, bv, av, relu); // y aliases a
                return Read(be, av);
            }
            Assert.Equal(Add(reference), Add(cpu));
        }
        float[] Relu(IBackend be)
        {
            TensorView av = Tensor(be, a, 1, length, 1, 1), yv = new(be.Allocate(length), 0, 1, length, 1, 1);
            be.Relu(av, yv);
            return Read(be, yv);
        }
        Assert.Equal(Relu(reference), Relu(cpu));
        float[] Sigmoid(IBackend be)
        {
            TensorView sv = Tensor(be, s, 1, length, 1, 1);
            be.Sigmoid(sv, sv);
            return Read(be, sv);
        }
        float[] expected = Sigmoid(reference), got = Sigmoid(cpu);
        // The SIMD exp differs from MathF.Exp by a few ulp; 1/(1+e) keeps that relative error.
        for (int i = 0; i < length; i++)
            Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-6 * Math.Abs(expected[i]), $"sigmoid({s[i]}) = {got[i]}, reference {expected[i]}");
    }

    internal static float[] RandomValues(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    private static float[] Abs(float[] values) => values.Select(MathF.Abs).ToArray();

    private static float[] RunConv(IBackend backend, ConvSpec spec, float[] x, float[] w, float[] bias, float[]? residual, ConvCase c, int oh, int ow)
    {
        using IPreparedConv conv = backend.PrepareConv(spec, w, bias);
        TensorView xv = Tensor(backend, x, c.N, c.In, c.H, c.W);
        var yv = new TensorView(backend.Allocate(c.N * c.Out * oh * ow), 0, c.N, c.Out, oh, ow);
        TensorView? rv = residual is null ? null : Tensor(backend, residual, c.N, c.Out, oh, ow);
        backend.Conv2d(conv, xv, yv, rv, c.Relu);
        return Read(backend, yv);
    }

    internal static TensorView Tensor(IBackend backend, float[] values, int n, int c, int h, int w)
    {
        var t = new TensorView(backend.Allocate(values.Length), 0, n, c, h, w);
        backend.Upload(values, t);
        return t;
    }

    internal static float[] Read(IBackend backend, TensorView t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }
}
