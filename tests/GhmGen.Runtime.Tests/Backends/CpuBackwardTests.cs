// Every CpuBackend backward op (ITrainingBackend) against ReferenceBackend on random data: the
// convolution shapes of the four networks (R-50/R-101 and ResNeXt-101 32x4d/64x4d RetinaNet:
// 1x1, 3x3, 7x7/2 pad 3, stride 1 and 2, groups 1, 32 and 64, realistic channel counts on small
// odd maps, batch 2) through each CPU path (transposed-convolution GEMM and Winograd, small-map,
// columns-then-scatter; the weight-gradient GEMM with and without pixel splits), accumulate on
// and off, 1 and 2 threads and each micro-kernel; determinism (same thread count: bitwise equal
// runs); UpdateConv against a freshly prepared convolution; ReLU, max-pool, upsample and Zero.
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class CpuBackwardTests
{
    /// <summary>One convolution case: spec, batch, input size.</summary>
    public sealed record ConvCase(string Name, int In, int Out, int Kernel, int Stride, int Padding, int Groups, int N, int H, int W)
    {
        public ConvSpec Spec => new(In, Out, Kernel, Stride, Padding, Groups);

        public override string ToString() => $"{Name} {In}->{Out} k{Kernel}s{Stride}p{Padding}g{Groups} {N}x{H}x{W}";
    }

    private static readonly ConvCase[] ConvCases =
    [
        new("stem", 3, 64, 7, 2, 3, 1, 2, 63, 47),            // 1536 output pixels, one weight-gradient item: pixel splits
        new("L1 1x1", 64, 64, 1, 1, 0, 1, 2, 11, 13),
        new("L1 3x3", 64, 64, 3, 1, 1, 1, 2, 11, 13),           // Winograd backward-data
        new("L1 1x1 up", 64, 256, 1, 1, 0, 1, 2, 9, 7),
        new("L2 1x1 down", 256, 128, 1, 1, 0, 1, 2, 9, 11),
        new("L2 3x3/2", 128, 128, 3, 2, 1, 1, 2, 9, 11),        // columns and scatter, odd size
        new("L2 ds 1x1/2", 256, 512, 1, 2, 0, 1, 2, 9, 11),     // scatter, one pass
        new("L3 1x1", 1024, 256, 1, 1, 0, 1, 2, 5, 7),
        new("L3 3x3", 256, 256, 3, 1, 1, 1, 2, 5, 7),
        new("L4 3x3/2", 512, 512, 3, 2, 1, 1, 2, 5, 5),
        new("L4 1x1 up", 512, 2048, 1, 1, 0, 1, 2, 2, 2),       // 8 pixels: small-map backward-data
        new("P6 3x3/2", 2048, 256, 3, 2, 1, 1, 2, 5, 7),
        new("P7 3x3/2", 256, 256, 3, 2, 1, 1, 2, 3, 5),
        new("cls", 256, 720, 3, 1, 1, 1, 2, 5, 6),
        new("reg", 256, 36, 3, 1, 1, 1, 2, 7, 9),
        new("X32 3x3 g32", 128, 128, 3, 1, 1, 32, 2, 9, 11),    // 4 per group: narrow kernel
        new("X32 3x3/2 g32", 256, 256, 3, 2, 1, 32, 2, 9, 7),
        new("X32 L4 3x3 g32", 1024, 1024, 3, 1, 1, 32, 2, 3, 5),
        new("X64 3x3 g64", 256, 256, 3, 1, 1, 64, 2, 7, 9),     // 4 per group
        new("X64 3x3/2 g64", 512, 512, 3, 2, 1, 64, 2, 7, 5),
        new("pad > k-1", 6, 10, 1, 1, 1, 2, 2, 5, 7),           // stride 1, but not a convolution of dy
        new("pad 2 > band", 4, 6, 1, 1, 2, 1, 1, 1, 3),        // 2 threads: one-row bands, pad > rows * stride: dx zeroed in its own pass
        new("7x7 s1", 8, 12, 7, 1, 3, 1, 2, 6, 9),
        new("k5 s3", 5, 7, 5, 3, 2, 1, 2, 11, 10),
        new("demo stem", 3, 32, 7, 2, 3, 1, 2, 47, 63),
        new("demo L1 3x3", 32, 32, 3, 1, 1, 1, 2, 12, 16),
        new("demo head P5", 64, 64, 3, 1, 1, 1, 2, 3, 4),
        new("demo head P6", 64, 64, 3, 1, 1, 1, 2, 2, 2),
        new("demo head P7", 64, 64, 3, 1, 1, 1, 2, 1, 1),
        new("demo reg P7", 64, 36, 3, 1, 1, 1, 2, 1, 1),
        new("demo P7 conv", 64, 64, 3, 2, 1, 1, 2, 2, 2),
        new("demo P6 conv", 256, 64, 3, 2, 1, 1, 2, 3, 4),
        new("3x3 220 tiles", 16, 24, 3, 1, 1, 1, 2, 37, 41),   // Winograd weight gradient: 2 tile chunks, the last partial
        new("3x3 300->260", 300, 260, 3, 1, 1, 1, 1, 9, 11),   // Winograd weight gradient: 2 x 2 channel passes, partial panels
        new("3x3/2 channel chunks", 60, 24, 3, 2, 1, 1, 1, 3, 4),   // small map: input channels in 2 chunks (32 + 28)
        new("3x3/2 chunks g2", 120, 16, 3, 2, 1, 2, 1, 3, 4),       // the chunks of each of 2 groups
        new("1x1/2 channel chunks", 600, 16, 1, 2, 0, 1, 1, 3, 4),  // one pass (k <= s): chunks of 304 + 296 channels
    ];

    public static TheoryData<int> ConvCaseIndices()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < ConvCases.Length; i++) data.Add(i);
        return data;
    }

    // The backends compared: (micro-kernel, threads, Winograd, Winograd weights transformed per call).
    private static readonly (GemmKernelKind Kind, int Threads, bool Winograd, bool PerCall)[] Backends =
    [
        (GemmKernelKind.Auto, 1, true, false),
        (GemmKernelKind.Auto, 2, true, false),
        (GemmKernelKind.Auto, 2, true, true),
        (GemmKernelKind.Auto, 2, false, false),
        (GemmKernelKind.Avx2, 2, true, false),
        (GemmKernelKind.Portable, 2, true, false),
    ];

    // CPU against reference: the reference sums in double and rounds once; the CPU sums the D
    // products of each gradient element in float32 in another order (blocks, FMA, pixel splits).
    // As in CpuBackendTests, each rounding adds at most eps * S (S = the same sum over |terms|,
    // plus |start| when accumulating), independent and of either sign, so the difference grows
    // like sqrt(D) * eps * S; 8 * sqrt(D + 2) * eps * S is a wide margin, while a wrong tap, pixel,
    // channel or group is off by ~S / D. Winograd (the backward-data of dense 3x3 stride 1) has
    // the forward's larger transform rounding: 4x (see CpuBackendTests.WinogradErrorGrowth). So has
    // the Winograd weight gradient (WinogradWeightGradient: the same transform matrices, run backwards):
    // but it mixes the 9 taps of each (m, c) (dU = the tile sums in the transformed domain, dW = G^T dU G),
    // so its rounding follows the magnitude of the whole 3x3 kernel, not of the one tap: on a 2x2 map a
    // corner tap sums one product while the others sum four (there 7.7x the direct bound of the tap).
    // Its bound is the direct one with S = the sum of the 9 taps' S, the magnitude the transforms mix.
    private const double Epsilon = 1.1920929e-7;

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void ConvBackwardMatchesReference(int caseIndex)
    {
        ConvCase c = ConvCases[caseIndex];
        ConvSpec s = c.Spec;
        var random = new Random(500 + caseIndex);
        int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
        float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
        float[] w = CpuBackendTests.RandomValues(random, (int)s.WeightCount);
        float[] dy = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
        float[] dx0 = CpuBackendTests.RandomValues(random, x.Length), dw0 = CpuBackendTests.RandomValues(random, w.Length), db0 = CpuBackendTests.RandomValues(random, c.Out);

        var reference = new ReferenceBackend();
        (float[] dx, float[] dw, float[] db) expected = Backward(reference, c, x, w, dy, null);
        (float[] dx, float[] dw, float[] db) magnitude = Backward(reference, c, Abs(x), Abs(w), Abs(dy), null);
        int dataTerms = c.Out / c.Groups * Taps(c.Kernel, c.Stride), weightTerms = c.N * oh * ow;
        bool winogradData = s is { Kernel: 3, Stride: 1, Padding: 1, Groups: 1 };

        foreach ((GemmKernelKind kind, int threads, bool winograd, bool perCall) in Backends)
        {
            if (!GemmKernel.IsSupported(kind)) continue; // this processor cannot run the variant
            using var cpu = new CpuBackend(threads, kind, winograd) { WinogradMinimumTiles = 0, WinogradWeightsPerCall = perCall };
            string where = $"{c} kernel {kind} threads {threads} winograd {winograd} per-call {perCall}";
            double dataFactor = Factor(dataTerms) * (winograd && winogradData ? 4 : 1);
            foreach (bool accumulate in new[] { false, true })
            {
                long winogradWeightCalls = cpu.WinogradWeightGradientCalls;
                (float[] dx, float[] dw, float[] db) got = Backward(cpu, c, x, w, dy, accumulate ? (dx0, dw0, db0) : null);
                bool winogradWeights = cpu.WinogradWeightGradientCalls > winogradWeightCalls;
                // The Winograd weight gradient runs exactly where it should: dense 3x3 stride 1 with Winograd on,
                // on the AVX-512 kernel's 8x48 panels (the 8x8 transposes) with AVX2 gathers.
                Assert.Equal(winograd && winogradData && kind is GemmKernelKind.Auto or GemmKernelKind.Avx512 && GemmKernel.IsSupported(GemmKernelKind.Avx512), winogradWeights);
                string what = $"{where} accumulate {accumulate}";
                AssertClose(got.dx, expected.dx, magnitude.dx, accumulate ? dx0 : null, dataFactor, $"{what} dx");
                AssertClose(got.dw, expected.dw, magnitude.dw, accumulate ? dw0 : null, Factor(weightTerms), $"{what} dW", winogradWeights ? 9 : 1);
                AssertClose(got.db, expected.db, magnitude.db, accumulate ? db0 : null, Factor(weightTerms), $"{what} dBias");
            }
        }
    }

    [Theory]
    [InlineData(60, 24, 3, 2, 1, 1, 1, 3, 4, 1, true)]      // the "3x3/2 channel chunks" case, on 1 and 2 threads
    [InlineData(60, 24, 3, 2, 1, 1, 1, 3, 4, 2, true)]
    [InlineData(120, 16, 3, 2, 1, 2, 1, 3, 4, 2, true)]     // "3x3/2 chunks g2"
    [InlineData(600, 16, 1, 2, 0, 1, 1, 3, 4, 2, true)]     // "1x1/2 channel chunks"
    [InlineData(2048, 256, 3, 2, 1, 1, 2, 5, 7, 2, true)]   // "P6 3x3/2"
    [InlineData(128, 16, 3, 2, 1, 1, 2, 80, 100, 2, false)] // 40x50 outputs: bands enough for both workers
    [InlineData(20, 16, 3, 2, 1, 1, 1, 3, 4, 2, false)]     // 180 column rows: too shallow to split
    public void SmallMapInputGradients_SplitInputChannels_WhereBandsAreTooFew(int inChannels, int outChannels, int kernel, int stride,
        int padding, int groups, int n, int h, int w, int threads, bool chunked)
    {
        // On a small map a pass has fewer bands than workers; the columns-then-scatter input gradient then splits
        // each group's input channels into chunks (ConvInputGradient.Prepare). ConvBackwardMatchesReference checks
        // the results of the first five cases; this checks which calls take that path.
        var spec = new ConvSpec(inChannels, outChannels, kernel, stride, padding, groups);
        var random = new Random(7);
        int oh = spec.OutputSize(h), ow = spec.OutputSize(w);
        float[] weight = CpuBackendTests.RandomValues(random, (int)spec.WeightCount);
        float[] dy = CpuBackendTests.RandomValues(random, n * outChannels * oh * ow);
        using var cpu = new CpuBackend(threads);
        using IPreparedConv conv = cpu.PrepareConv(spec, weight, []);
        var dx = new TensorView(cpu.Allocate((long)n * inChannels * h * w), 0, n, inChannels, h, w);
        cpu.Conv2dBackwardData(conv, CpuBackendTests.Tensor(cpu, dy, n, outChannels, oh, ow), dx, accumulate: false);
        Assert.Equal(chunked ? 1 : 0, cpu.ChunkedInputGradientCalls);
    }

    [Fact]
    public void RepeatedRunsWithTheSameThreadCountAreBitwiseIdentical()
    {
        // Scatter (3x3/2), Winograd (3x3 dense), weight gradients with pixel splits (the stem has
        // one item) and without, narrow grouped, P6.
        foreach (int caseIndex in new[] { 5, 2, 0, 15, 11 })
        {
            ConvCase c = ConvCases[caseIndex];
            var random = new Random(caseIndex);
            int oh = c.Spec.OutputSize(c.H), ow = c.Spec.OutputSize(c.W);
            float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
            float[] w = CpuBackendTests.RandomValues(random, (int)c.Spec.WeightCount);
            float[] dy = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
            using var cpu = new CpuBackend(2) { WinogradMinimumTiles = 0 };
            (float[] dx, float[] dw, float[] db) first = Backward(cpu, c, x, w, dy, null);
            for (int run = 0; run < 3; run++)
            {
                (float[] dx, float[] dw, float[] db) again = Backward(cpu, c, x, w, dy, null);
                Assert.Equal(first.dx, again.dx);
                Assert.Equal(first.dw, again.dw);
                Assert.Equal(first.db, again.db);
            }
            using var other = new CpuBackend(2) { WinogradMinimumTiles = 0 };
            (float[] dx, float[] dw, float[] db) fresh = Backward(other, c, x, w, dy, null);
            Assert.Equal(first.dx, fresh.dx);
            Assert.Equal(first.dw, fresh.dw);
            Assert.Equal(first.db, fresh.db);
        }
    }

    [Theory]
    [InlineData(2)]   // 3x3 dense: GEMM and Winograd forward, transposed Winograd backward-data
    [InlineData(5)]   // 3x3/2: transposed panels (scatter)
    [InlineData(1)]   // 1x1
    [InlineData(15)]  // grouped, narrow kernel
    [InlineData(10)]  // small map
    [InlineData(13)]  // 720 outputs: UpdateConv's repack in many row ranges on both workers
    [InlineData(14)]  // 36 outputs: a partial panel (eight-, four- and one-row Winograd transforms)
    public void UpdateConvEqualsAFreshlyPreparedConvolution(int caseIndex)
    {
        ConvCase c = ConvCases[caseIndex];
        ConvSpec s = c.Spec;
        var random = new Random(700 + caseIndex);
        int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
        float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
        float[] dy = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
        float[] w1 = CpuBackendTests.RandomValues(random, (int)s.WeightCount), b1 = CpuBackendTests.RandomValues(random, c.Out);
        float[] w2 = CpuBackendTests.RandomValues(random, (int)s.WeightCount), b2 = CpuBackendTests.RandomValues(random, c.Out);
        foreach ((bool winograd, bool perCall) in new[] { (true, false), (true, true), (false, false) })
        {
            // Per call: the forward and backward-data forms keep only their panels; the backward-data
            // panels go stale at UpdateConv and must be rebuilt before a Winograd call transforms them.
            using var cpu = new CpuBackend(2, GemmKernelKind.Auto, winograd) { WinogradMinimumTiles = 0, WinogradWeightsPerCall = perCall };
            TensorView xv = CpuBackendTests.Tensor(cpu, x, c.N, c.In, c.H, c.W), dyv = CpuBackendTests.Tensor(cpu, dy, c.N, c.Out, oh, ow);
            (float[] y, float[] dx) Run(IPreparedConv conv)
            {
                var y = new TensorView(cpu.Allocate(dy.Length), 0, c.N, c.Out, oh, ow);
                var dx = new TensorView(cpu.Allocate(x.Length), 0, c.N, c.In, c.H, c.W);
                cpu.Conv2d(conv, xv, y, null, relu: false);
                cpu.Conv2dBackwardData(conv, dyv, dx, accumulate: false);
                return (CpuBackendTests.Read(cpu, y), CpuBackendTests.Read(cpu, dx));
            }
            using IPreparedConv updated = cpu.PrepareConv(s, w1, b1);
            (float[] y, float[] dx) before = Run(updated); // makes the backward-data form
            cpu.UpdateConv(updated, w2, b2);
            using IPreparedConv fresh = cpu.PrepareConv(s, w2, b2);
            (float[] y, float[] dx) want = Run(fresh), got = Run(updated);
            Assert.Equal(want.y, got.y);
            Assert.Equal(want.dx, got.dx);
            Assert.NotEqual(before.y, got.y);

            ArgumentException e = Assert.Throws<ArgumentException>(() => cpu.UpdateConv(updated, w2, []));
            Assert.Contains("prepared with", e.Message);
            e = Assert.Throws<ArgumentException>(() => cpu.UpdateConv(updated, w2.AsSpan(1), b2));
            Assert.Contains("new weight has", e.Message);
        }
    }

    [Fact]
    public void UpdateConvRebuildsEachFormWhenAMapSizeFirstNeedsIt()
    {
        // After UpdateConv only the forward panels are rewritten; the Winograd forms and the backward-data
        // panels are rebuilt on their next use, and the backward-data Winograd form is made on the first call
        // whose map selects Winograd. Two updates, then small maps (GEMM) and large maps (Winograd) in both
        // orders: every result equals that of a freshly prepared convolution.
        var s = new ConvSpec(64, 72, 3, 1, 1, 1); // 64+ channels either way: Winograd by map size (CpuBackend.WinogradMinimumChannels)
        var random = new Random(77);
        float[] w1 = CpuBackendTests.RandomValues(random, (int)s.WeightCount), b1 = CpuBackendTests.RandomValues(random, s.OutChannels);
        float[] w2 = CpuBackendTests.RandomValues(random, (int)s.WeightCount), b2 = CpuBackendTests.RandomValues(random, s.OutChannels);
        float[] w3 = CpuBackendTests.RandomValues(random, (int)s.WeightCount), b3 = CpuBackendTests.RandomValues(random, s.OutChannels);
        using var cpu = new CpuBackend(2);
        (int H, int W) small = (3, 5), large = (40, 44); // 2 x 2 x 2 tiles: GEMM; 2 x 10 x 11: Winograd
        (float[] y, float[] dx) Run(IPreparedConv conv, (int H, int W) size)
        {
            var r = new Random(size.H);
            float[] x = CpuBackendTests.RandomValues(r, 2 * s.InChannels * size.H * size.W);
            float[] dy = CpuBackendTests.RandomValues(r, 2 * s.OutChannels * size.H * size.W);
            TensorView xv = CpuBackendTests.Tensor(cpu, x, 2, s.InChannels, size.H, size.W), dyv = CpuBackendTests.Tensor(cpu, dy, 2, s.OutChannels, size.H, size.W);
            var y = new TensorView(cpu.Allocate(dy.Length), 0, 2, s.OutChannels, size.H, size.W);
            var dx = new TensorView(cpu.Allocate(x.Length), 0, 2, s.InChannels, size.H, size.W);
            cpu.Conv2d(conv, xv, y, null, relu: false);
            cpu.Conv2dBackwardData(conv, dyv, dx, accumulate: false);
            return (CpuBackendTests.Read(cpu, y), CpuBackendTests.Read(cpu, dx));
        }
        static void Same((float[] y, float[] dx) want, (float[] y, float[] dx) got)
        {
            Assert.Equal(want.y, got.y);
            Assert.Equal(want.dx, got.dx);
        }
        using IPreparedConv updated = cpu.PrepareConv(s, w1, b1);
        Run(updated, small);                                   // makes the backward-data form, no Winograd
        Assert.Equal(0, cpu.PreparedBytes(updated).BackwardWinograd);
        cpu.UpdateConv(updated, w2, b2);
        using IPreparedConv second = cpu.PrepareConv(s, w2, b2);
        Same(Run(second, large), Run(updated, large));    // Winograd forms: the forward one stale, the backward one new
        Assert.NotEqual(0, cpu.PreparedBytes(updated).BackwardWinograd);
        Same(Run(second, small), Run(updated, small));
        cpu.UpdateConv(updated, w3, b3);
        using IPreparedConv third = cpu.PrepareConv(s, w3, b3);
        Same(Run(third, small), Run(updated, small));    // stale backward-data panels
        Same(Run(third, large), Run(updated, large));    // both Winograd forms stale
    }

    [Fact]
    public void TransientBackwardDataPanels_SharedByConvolutions_EqualFreshlyPreparedOnes()
    {
        // Three convolutions take turns in the one scratch of transient backward-data panels (a 3x3 and a
        // 1x1 through the transposed convolution, a 3x3 stride 2 through columns-then-scatter), with
        // UpdateConvs in between; a fourth, applied at two inputs in one Conv2dShared call, keeps its own.
        // Every input gradient equals that of a freshly prepared convolution with the same weights.
        ConvSpec[] specs = [new(24, 40, 3, 1, 1, 1), new(40, 16, 1, 1, 0, 1), new(16, 24, 3, 2, 1, 1), new(24, 24, 3, 1, 1, 1)];
        var random = new Random(2026);
        using var cpu = new CpuBackend(2);
        float[][] weights = [.. specs.Select(s => CpuBackendTests.RandomValues(random, (int)s.WeightCount))];
        IPreparedConv[] convs = [.. specs.Select((s, i) => cpu.PrepareConv(s, weights[i], []))];
        const int H = 9, W = 11;
        float[] Input(ConvSpec s, int seed) => CpuBackendTests.RandomValues(new Random(seed), 2 * s.InChannels * H * W);
        float[] BackwardData(IPreparedConv conv, ConvSpec s, int seed)
        {
            int oh = s.OutputSize(H), ow = s.OutputSize(W);
            TensorView dy = CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(new Random(seed), 2 * s.OutChannels * oh * ow), 2, s.OutChannels, oh, ow);
            var dx = new TensorView(cpu.Allocate(2L * s.InChannels * H * W), 0, 2, s.InChannels, H, W);
            cpu.Conv2dBackwardData(conv, dy, dx, accumulate: false);
            return CpuBackendTests.Read(cpu, dx);
        }
        float[] Fresh(int i, int seed)
        {
            using IPreparedConv fresh = cpu.PrepareConv(specs[i], weights[i], []);
            return BackwardData(fresh, specs[i], seed);
        }
        // The shared one's forward: two inputs in one call.
        TensorView[] xs = [CpuBackendTests.Tensor(cpu, Input(specs[3], 1), 2, 24, H, W), CpuBackendTests.Tensor(cpu, Input(specs[3], 2), 2, 24, H, W)];
        TensorView[] ys = [.. xs.Select(_ => new TensorView(cpu.Allocate(2L * 24 * H * W), 0, 2, 24, H, W))];
        cpu.Conv2dShared(convs[3], xs, ys, relu: false);

        int[] order = [0, 1, 0, 2, 3, 2, 1, 3, 0];
        for (int round = 0; round < 2; round++)
        {
            foreach (int i in order)
            {
                int seed = 100 * round + i;
                Assert.Equal(Fresh(i, seed), BackwardData(convs[i], specs[i], seed));
            }
            for (int i = 0; i < specs.Length; i++)
            {
                weights[i] = CpuBackendTests.RandomValues(random, (int)specs[i].WeightCount);
                cpu.UpdateConv(convs[i], weights[i], []);
            }
        }
        // Of their own only the (zero) padded bias of a backward-data convolution: a few hundred bytes.
        for (int i = 0; i < 3; i++) Assert.True(cpu.PreparedBytes(convs[i]).BackwardPanels < 4 * specs[i].WeightCount / 8);
        Assert.True(cpu.PreparedBytes(convs[3]).BackwardPanels >= 4 * specs[3].WeightCount);
        Assert.True(cpu.TransientPanelBytes >= 4 * specs.Take(3).Max(s => s.WeightCount));
        foreach (IPreparedConv c in convs) c.Dispose();
    }

    [Fact]
    public void WinogradWeightGradient_InTheTransientScratch_LeavesItsHolderToRebuild()
    {
        // A's backward-data panels (stride 2: columns-then-scatter) fill the transient scratch; B's Winograd weight gradient then borrows it
        // (dU and panels), so A's next input gradient must rebuild its panels, and B's weight gradient must
        // equal, bitwise, that of a backend whose scratch holds nothing to lend.
        ConvSpec a = new(128, 64, 3, 2, 1, 1), b = new(8, 8, 3, 1, 1, 1);
        var random = new Random(77);
        float[] wa = CpuBackendTests.RandomValues(random, (int)a.WeightCount);
        float[] xb = CpuBackendTests.RandomValues(random, 2 * 8 * 9 * 11), dyb = CpuBackendTests.RandomValues(random, 2 * 8 * 9 * 11);
        float[] dya = CpuBackendTests.RandomValues(random, 2 * 64 * 5 * 6);
        float[] DataGradient(CpuBackend cpu, IPreparedConv conv)
        {
            var dx = new TensorView(cpu.Allocate(2L * 128 * 9 * 11), 0, 2, 128, 9, 11);
            cpu.Conv2dBackwardData(conv, CpuBackendTests.Tensor(cpu, dya, 2, 64, 5, 6), dx, accumulate: false);
            return CpuBackendTests.Read(cpu, dx);
        }
        float[] WeightGradient(CpuBackend cpu)
        {
            var dw = new TensorView(cpu.Allocate(b.WeightCount), 0, 8, 8, 3, 3);
            cpu.Conv2dBackwardWeights(b, CpuBackendTests.Tensor(cpu, xb, 2, 8, 9, 11), CpuBackendTests.Tensor(cpu, dyb, 2, 8, 9, 11), dw, null, accumulate: false);
            return CpuBackendTests.Read(cpu, dw);
        }
        using var plain = new CpuBackend(2) { WinogradMinimumTiles = 0 };
        float[] expectedWeights = WeightGradient(plain);
        Assert.Equal(0, plain.WinogradWeightGradientLentPasses);
        using var cpu = new CpuBackend(2) { WinogradMinimumTiles = 0 };
        using IPreparedConv convA = cpu.PrepareConv(a, wa, []);
        float[] expectedData = DataGradient(cpu, convA);
        Assert.Equal(expectedWeights, WeightGradient(cpu));
        if (plain.WinogradWeightGradientCalls > 0) Assert.Equal(1, cpu.WinogradWeightGradientLentPasses); // the path runs here (AVX-512)
        Assert.Equal(expectedData, DataGradient(cpu, convA));
    }

    // Weights that a test changes between steps, read by the backend on demand.
    private sealed class ArraySource(float[] weight, float[] bias) : IConvWeightSource
    {
        public float[] Weight = weight, Bias = bias;
        public int Reads;

        public void ReadWeights(Span<float> weight, Span<float> bias)
        {
            Reads++;
            Weight.CopyTo(weight);
            Bias.AsSpan(0, bias.Length).CopyTo(bias);
        }
    }

    [Theory]
    [InlineData(false, false)] // stored Winograd forms, default Winograd rule (small-map, shared-input and GEMM paths)
    [InlineData(false, true)]  // stored Winograd forms, Winograd forced on every 3x3 stride-1 map
    [InlineData(true, true)]   // Winograd weights transformed per call from the (transient) GEMM panels
    public void WeightSourceConvolutions_EqualConvolutionsPreparedWithTheirWeights(bool winogradPerCall, bool forceWinograd)
    {
        // Five convolutions prepared from weight sources (3x3 with bias, 1x1, 3x3 stride 2 through
        // columns-then-scatter, grouped 3x3, and one applied to two inputs in one Conv2dShared call) and the
        // same five prepared with their weights, all on one backend, take turns in the shared scratch over
        // two maps (99 and 1020 output pixels) and three optimizer steps: forward outputs and input gradients
        // are bitwise equal. A source is read only when a call needs it after a change or after another
        // convolution's panels took the scratch.
        ConvSpec[] specs = [new(24, 40, 3, 1, 1, 1), new(40, 16, 1, 1, 0, 1), new(16, 24, 3, 2, 1, 1), new(24, 32, 3, 1, 1, 4), new(24, 24, 3, 1, 1, 1)];
        bool[] withBias = [true, false, true, false, true];
        var random = new Random(77);
        using var cpu = new CpuBackend(2) { WinogradWeightsPerCall = winogradPerCall };
        if (forceWinograd) cpu.WinogradMinimumTiles = 0;
        ArraySource[] sources = [.. specs.Select((s, i) => new ArraySource(CpuBackendTests.RandomValues(random, (int)s.WeightCount),
            withBias[i] ? CpuBackendTests.RandomValues(random, s.OutChannels) : []))];
        IPreparedConv[] sourced = [.. specs.Select((s, i) => cpu.PrepareConv(s, sources[i], withBias[i]))];
        IPreparedConv[] plain = [.. specs.Select((s, i) => cpu.PrepareConv(s, sources[i].Weight, sources[i].Bias))];
        Assert.Throws<ArgumentException>(() => cpu.UpdateConv(sourced[0], sources[0].Weight, sources[0].Bias));
        Assert.False(cpu.MarkWeightsChanged(plain[0]));
        Assert.All(sources, source => Assert.Equal(0, source.Reads)); // nothing packed before a call needs it

        float[] Forward(IPreparedConv conv, ConvSpec s, int h, int w, int seed)
        {
            TensorView x = CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(new Random(seed), 2 * s.InChannels * h * w), 2, s.InChannels, h, w);
            var y = new TensorView(cpu.Allocate(2L * s.OutChannels * s.OutputSize(h) * s.OutputSize(w)), 0, 2, s.OutChannels, s.OutputSize(h), s.OutputSize(w));
            cpu.Conv2d(conv, x, y, residual: null, relu: seed % 2 == 0);
            return CpuBackendTests.Read(cpu, y);
        }
        float[] BackwardData(IPreparedConv conv, ConvSpec s, int h, int w, int seed)
        {
            int oh = s.OutputSize(h), ow = s.OutputSize(w);
            TensorView dy = CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(new Random(seed), 2 * s.OutChannels * oh * ow), 2, s.OutChannels, oh, ow);
            var dx = new TensorView(cpu.Allocate(2L * s.InChannels * h * w), 0, 2, s.InChannels, h, w);
            cpu.Conv2dBackwardData(conv, dy, dx, accumulate: false);
            return CpuBackendTests.Read(cpu, dx);
        }
        float[][] Shared(IPreparedConv conv, int seed)
        {
            TensorView[] xs = [CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(new Random(seed), 2 * 24 * 9 * 11), 2, 24, 9, 11),
                CpuBackendTests.Tensor(cpu, CpuBackendTests.RandomValues(new Random(seed + 1), 2 * 24 * 3 * 2), 2, 24, 3, 2)];
            TensorView[] ys = [.. xs.Select(x => new TensorView(cpu.Allocate(x.ElementCount), 0, 2, 24, x.H, x.W))];
            cpu.Conv2dShared(conv, xs, ys, relu: true);
            return [.. ys.Select(y => CpuBackendTests.Read(cpu, y))];
        }

        (int H, int W)[] maps = [(9, 11), (30, 34)];
        for (int step = 0; step < 3; step++)
        {
            // Packed once after the change (its panels still in the scratch: see the end of the loop), then reused
            // while still there.
            int reads = sources[0].Reads;
            float[] first = Forward(sourced[0], specs[0], 9, 11, step);
            Assert.Equal(reads + 1, sources[0].Reads);
            Assert.Equal(Forward(plain[0], specs[0], 9, 11, step), first);
            Assert.Equal(first, Forward(sourced[0], specs[0], 9, 11, step));
            Assert.Equal(reads + 1, sources[0].Reads);
            for (int i = 0; i < 4; i++)
            foreach ((int h, int w) in maps)
            {
                int seed = 1000 * step + 10 * i + h;
                Assert.Equal(Forward(plain[i], specs[i], h, w, seed), Forward(sourced[i], specs[i], h, w, seed));
                Assert.Equal(BackwardData(plain[i], specs[i], h, w, seed), BackwardData(sourced[i], specs[i], h, w, seed));
            }
            float[][] expected = Shared(plain[4], 50 + step), actual = Shared(sourced[4], 50 + step);
            for (int j = 0; j < 2; j++) Assert.Equal(expected[j], actual[j]);
            Assert.Equal(BackwardData(plain[4], specs[4], 9, 11, 60 + step), BackwardData(sourced[4], specs[4], 9, 11, 60 + step));

            Forward(sourced[0], specs[0], 9, 11, step); // its panels hold the scratch across the change

            // The optimizer step: new weights, told to the sourced ones, handed to the others.
            for (int i = 0; i < specs.Length; i++)
            {
                sources[i].Weight = CpuBackendTests.RandomValues(random, (int)specs[i].WeightCount);
                if (withBias[i]) sources[i].Bias = CpuBackendTests.RandomValues(random, specs[i].OutChannels);
                Assert.True(cpu.MarkWeightsChanged(sourced[i]));
                cpu.UpdateConv(plain[i], sources[i].Weight, sources[i].Bias);
            }
        }
        // Of their own only the padded bias: no forward panels, no stored Winograd form beyond the one made at preparing.
        for (int i = 0; i < specs.Length; i++)
        {
            Assert.True(cpu.PreparedBytes(sourced[i]).Panels < 4 * specs[i].WeightCount / 8);
            Assert.True(cpu.PreparedBytes(plain[i]).Panels >= 4 * specs[i].WeightCount);
        }
        // The shared one keeps its backward-data panels (it runs backward-data once per input between two steps).
        Assert.True(cpu.PreparedBytes(sourced[4]).BackwardPanels >= 4 * specs[4].WeightCount);
        foreach (IPreparedConv c in sourced.Concat(plain)) c.Dispose();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(2 * 16384 + 5)]
    public void ReluBackwardAndZeroMatchReference(int length)
    {
        var random = new Random(length);
        float[] y = CpuBackendTests.RandomValues(random, length).Select(v => MathF.Max(v, 0f)).ToArray(); // a ReLU's output: zeros and positives
        float[] dy = CpuBackendTests.RandomValues(random, length);
        using var cpu = new CpuBackend(2);
        var reference = new ReferenceBackend();
        foreach (bool alias in new[] { false, true })
        {
            float[] Run(ITrainingBackend be)
            {
                TensorView yv = CpuBackendTests.Tensor(be, y, 1, length, 1, 1), dyv = CpuBackendTests.Tensor(be, dy, 1, length, 1, 1);
                TensorView dx = alias ? dyv : new TensorView(be.Allocate(length), 0, 1, length, 1, 1);
                be.ReluBackward(yv, dyv, dx);
                return CpuBackendTests.Read(be, dx);
            }
            Assert.Equal(Run(reference), Run(cpu)); // a select: exact
        }

        DeviceBuffer buffer = cpu.Allocate(length + 10);
        ((HostBuffer)buffer).Array.AsSpan().Fill(5f);
        cpu.Zero(new TensorView(buffer, 3, 1, length, 1, 1));
        float[] all = ((HostBuffer)buffer).Array;
        for (int i = 0; i < all.Length; i++) Assert.Equal(i >= 3 && i < 3 + length ? 0f : 5f, all[i]);
    }

    [Theory]
    [InlineData(2, 3, 9, 11, 3, 2, 1, false)]    // the stem's max-pool, odd sizes
    [InlineData(2, 64, 20, 26, 3, 2, 1, false)]
    [InlineData(1, 5, 8, 8, 2, 2, 0, false)]
    [InlineData(1, 2, 7, 10, 3, 1, 1, false)]
    [InlineData(2, 3, 9, 11, 3, 2, 1, true)]     // ties everywhere (values on a coarse grid)
    [InlineData(2, 3, 7, 75, 3, 2, 1, false)]    // wide rows: 16 windows at a time (AVX-512), scalar edges
    [InlineData(1, 4, 8, 108, 3, 2, 1, true)]    // the same with ties
    public void MaxPoolBackwardMatchesReference(int n, int c, int h, int w, int kernel, int stride, int padding, bool ties)
    {
        var random = new Random(h * w + c);
        float[] x = CpuBackendTests.RandomValues(random, n * c * h * w);
        if (ties) x = x.Select(v => MathF.Round(v * 2)).ToArray(); // -2 .. 2: most windows tie
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        float[] dy = CpuBackendTests.RandomValues(random, n * c * oh * ow), start = CpuBackendTests.RandomValues(random, x.Length);
        using var cpu = new CpuBackend(2);
        var reference = new ReferenceBackend();
        foreach (bool accumulate in new[] { false, true })
        {
            float[] Run(ITrainingBackend be)
            {
                TensorView xv = CpuBackendTests.Tensor(be, x, n, c, h, w), dyv = CpuBackendTests.Tensor(be, dy, n, c, oh, ow);
                TensorView dx = CpuBackendTests.Tensor(be, accumulate ? start : CpuBackendTests.RandomValues(random, x.Length), n, c, h, w);
                be.MaxPool2dBackward(xv, dyv, dx, kernel, stride, padding, accumulate);
                return CpuBackendTests.Read(be, dx);
            }
            // An element wins at most ceil(k / s)^2 windows: a float sum of that many values in
            // [-1, 1] (plus the start) against the reference's single rounding; S <= terms.
            float[] expected = Run(reference), got = Run(cpu);
            int terms = Taps(kernel, stride) + 1;
            for (int i = 0; i < got.Length; i++)
                Assert.True(Math.Abs(got[i] - expected[i]) <= Factor(terms) * terms, $"dx[{i}] = {got[i]}, reference {expected[i]}");
        }
    }

    [Theory]
    [InlineData(2, 3, 5, 5, 13, 13)]     // non-integer ratio
    [InlineData(1, 2, 2, 2, 82, 82)]
    [InlineData(2, 3, 25, 38, 50, 76)]   // exactly 2x (the FPN): the pairwise AVX path
    [InlineData(1, 4, 3, 5, 7, 10)]      // rows 3 -> 7, columns 2x with a scalar tail
    [InlineData(1, 2, 6, 6, 4, 5)]       // downsampling: some sources get nothing
    public void UpsampleNearestBackwardMatchesReference(int n, int c, int ih, int iw, int oh, int ow)
    {
        var random = new Random(ih * 100 + oh);
        float[] dLower = CpuBackendTests.RandomValues(random, n * c * oh * ow), start = CpuBackendTests.RandomValues(random, n * c * ih * iw);
        using var cpu = new CpuBackend(2);
        var reference = new ReferenceBackend();
        // Lower cells per upper cell, at most (plus the start): a float sum of that many values in
        // [-1, 1] against the reference's single rounding; S <= terms.
        int terms = (oh + ih - 1) / ih * ((ow + iw - 1) / iw) + 1;
        foreach (bool accumulate in new[] { false, true })
        {
            float[] Run(ITrainingBackend be)
            {
                TensorView lv = CpuBackendTests.Tensor(be, dLower, n, c, oh, ow);
                TensorView uv = CpuBackendTests.Tensor(be, accumulate ? start : CpuBackendTests.RandomValues(random, start.Length), n, c, ih, iw);
                be.UpsampleNearestBackward(lv, uv, accumulate);
                return CpuBackendTests.Read(be, uv);
            }
            float[] expected = Run(reference), got = Run(cpu);
            for (int i = 0; i < got.Length; i++)
                Assert.True(Math.Abs(got[i] - expected[i]) <= Factor(terms) * terms, $"dUpper[{i}] = {got[i]}, reference {expected[i]}");
        }
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        using var cpu = new CpuBackend(1);
        var spec = new ConvSpec(4, 8, 3, 2, 1, 1);
        using IPreparedConv conv = cpu.PrepareConv(spec, new float[spec.WeightCount], []);
        var dx = new TensorView(cpu.Allocate(4 * 25), 0, 1, 4, 5, 5);
        var dy = new TensorView(cpu.Allocate(8 * 16), 0, 1, 8, 4, 4);
        ArgumentException e = Assert.Throws<ArgumentException>(() => cpu.Conv2dBackwardData(conv, dy, dx, false));
        Assert.Contains("does not give output 1x8x4x4", e.Message);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2dBackwardWeights(spec, dx, dy, new TensorView(cpu.Allocate(10), 0, 1, 1, 1, 10), null, false));
        Assert.Contains("does not give output", e.Message);
        var dy3 = new TensorView(cpu.Allocate(8 * 9), 0, 1, 8, 3, 3);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2dBackwardWeights(spec, dx, dy3, new TensorView(cpu.Allocate(10), 0, 1, 1, 1, 10), null, false));
        Assert.Contains("does not hold 288 elements", e.Message);
        using IPreparedConv other = new ReferenceBackend().PrepareConv(spec, new float[spec.WeightCount], []);
        e = Assert.Throws<ArgumentException>(() => cpu.Conv2dBackwardData(other, dy3, dx, false));
        Assert.Contains("not prepared by this CPU backend", e.Message);
    }

    // dx, dW, dBias of one convolution on `backend`; with `start`, accumulated onto those contents.
    private static (float[] dx, float[] dw, float[] db) Backward(ITrainingBackend backend, ConvCase c, float[] x, float[] w, float[] dy,
        (float[] dx, float[] dw, float[] db)? start)
    {
        ConvSpec s = c.Spec;
        int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
        using IPreparedConv conv = backend.PrepareConv(s, w, []);
        TensorView xv = CpuBackendTests.Tensor(backend, x, c.N, c.In, c.H, c.W), dyv = CpuBackendTests.Tensor(backend, dy, c.N, c.Out, oh, ow);
        bool accumulate = start is not null;
        // Not accumulating: start from garbage, which must be overwritten.
        TensorView dx = CpuBackendTests.Tensor(backend, start?.dx ?? Garbage(x.Length), c.N, c.In, c.H, c.W);
        TensorView dw = CpuBackendTests.Tensor(backend, start?.dw ?? Garbage(w.Length), c.Out, c.In / c.Groups, c.Kernel, c.Kernel);
        TensorView db = CpuBackendTests.Tensor(backend, start?.db ?? Garbage(c.Out), 1, c.Out, 1, 1);
        backend.Conv2dBackwardData(conv, dyv, dx, accumulate);
        backend.Conv2dBackwardWeights(s, xv, dyv, dw, db, accumulate);
        return (CpuBackendTests.Read(backend, dx), CpuBackendTests.Read(backend, dw), CpuBackendTests.Read(backend, db));
    }

    // |got - (expected + start)| <= factor * S for every element, S = magnitude + |start| summed over the element's
    // aligned block of `block` elements (1: the element itself).
    private static void AssertClose(float[] got, float[] expected, float[] magnitude, float[]? start, double factor, string what, int block = 1)
    {
        double worst = 0;
        for (int i = 0; i < got.Length; i++)
        {
            double want = expected[i] + (start is null ? 0 : (double)start[i]);
            double size = 0;
            for (int k = i / block * block; k < i / block * block + block; k++) size += magnitude[k] + (start is null ? 0 : Math.Abs(start[k]));
            double tolerance = factor * size + 1e-30;
            worst = Math.Max(worst, Math.Abs(got[i] - want) / tolerance);
            if (!(Math.Abs(got[i] - want) <= tolerance))
                Assert.Fail($"{what}[{i}] = {got[i]}, reference {want} (tolerance {tolerance:g3})");
        }
        Console.WriteLine($"{what}: worst error / tolerance {worst:F3}");
    }

    private static double Factor(int terms) => 8 * Math.Sqrt(terms + 2) * Epsilon;

    // Kernel taps that reach one input element: ceil(k / s) per axis.
    private static int Taps(int kernel, int stride) => (kernel + stride - 1) / stride * ((kernel + stride - 1) / stride);

    private static float[] Abs(float[] values) => values.Select(MathF.Abs).ToArray();

    private static float[] Garbage(int count) => Enumerable.Repeat(float.NaN, count).ToArray();
}
