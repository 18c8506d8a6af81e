using GhmGen.Backends;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Forward;

/// <summary>
/// The generated Forward of a small network against a forward written out by hand here with
/// plain loops (batch norm applied as such, not folded): checks the fusion, residuals,
/// upsample-add, shared head and buffer reuse that the generator plans.
/// </summary>
public class GeneratedForwardTests
{
    [Theory]
    [InlineData(1, 32, 48)]
    [InlineData(2, 37, 29)]
    public void TinyNet_EqualsHandWrittenForward(int batch, int height, int width)
    {
        var net = new TinyNet();
        var random = new Random(7);
        foreach (StateTensor t in net.State)
            Fill(t, random);
        float[] image = Enumerable.Range(0, batch * 3 * height * width).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();

        using var backend = new ReferenceBackend();
        using TinyNet.Session session = net.CreateSession(backend, batch, height, width);
        session.Forward(image);
        session.Forward(image); // a second pass over the reused buffers must give the same result

        var x = new Naive(image, batch, 3, height, width);
        Naive stem = x.Conv(net.Stem).Relu();
        Naive pool = stem.MaxPool(2, 2, 0);
        Naive b0 = pool.Conv(net.Stage_0_Conv).BatchNorm(net.Stage_0_Bn).Add(pool.Conv(net.Stage_0_Proj)).Relu();
        Naive b1 = b0.Conv(net.Stage_1_Conv).BatchNorm(net.Stage_1_Bn).Add(b0).Relu();
        Naive merged = pool.Add(b1.UpsampleTo(pool.H, pool.W));
        (string, Naive)[] expected =
        [
            ("cls_a", merged.Conv(net.Head_Cls)), ("box_a", merged.Conv(net.Head_Box)),
            ("cls_b", b1.Conv(net.Head_Cls)), ("box_b", b1.Conv(net.Head_Box)),
        ];

        Assert.Equal(expected.Select(e => e.Item1), session.Outputs.Select(o => o.Name));
        foreach (((string name, Naive want), (string _, TensorView got)) in expected.Zip(session.Outputs))
        {
            Assert.Equal((want.N, want.C, want.H, want.W), (got.N, got.C, got.H, got.W));
            float[] values = new float[got.ElementCount];
            backend.Download(got, values);
            for (int i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - want.Data[i]) <= 1e-4f * (1 + Math.Abs(want.Data[i])), $"{name}[{i}]: {values[i]} vs {want.Data[i]}");
        }
    }

    [Fact]
    public void PreparedWeights_ServeSessionsOfSeveralSizes()
    {
        var net = new TinyNet();
        var random = new Random(5);
        foreach (StateTensor t in net.State)
            Fill(t, random);
        using var backend = new ReferenceBackend();
        using TinyNet.Prepared prepared = net.Prepare(backend);
        foreach ((int h, int w) in new[] { (32, 48), (40, 24), (32, 48) })
        {
            float[] image = Enumerable.Range(0, 3 * h * w).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            using TinyNet.Session shared = prepared.CreateSession(1, h, w);
            using TinyNet.Session own = net.CreateSession(backend, 1, h, w);
            shared.Forward(image);
            own.Forward(image);
            foreach (((string name, TensorView a), (string _, TensorView b)) in shared.Outputs.Zip(own.Outputs))
            {
                float[] x = new float[a.ElementCount], y = new float[b.ElementCount];
                backend.Download(a, x);
                backend.Download(b, y);
                Assert.True(x.SequenceEqual(y), $"{name} differs at {h}x{w}");
            }
        }
    }

    [Fact]
    public void TinyNet_OnIlgpuCpuAccelerator_EqualsReferenceBackend()
    {
        var net = new TinyNet();
        var random = new Random(11);
        foreach (StateTensor t in net.State)
            Fill(t, random);
        float[] image = Enumerable.Range(0, 3 * 32 * 40).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();

        float[][] Run(IBackend backend)
        {
            using TinyNet.Session session = net.CreateSession(backend, 1, 32, 40);
            session.Forward(image);
            return session.Outputs.Select(o =>
            {
                float[] values = new float[o.Tensor.ElementCount];
                backend.Download(o.Tensor, values);
                return values;
            }).ToArray();
        }

        using var reference = new ReferenceBackend();
        using var gpu = GhmGen.Backends.Gpu.IlgpuBackend.Create(GhmGen.Backends.Gpu.IlgpuDevice.CpuAccelerator);
        float[][] want = Run(reference), got = Run(gpu);
        for (int o = 0; o < want.Length; o++)
            for (int i = 0; i < want[o].Length; i++)
                Assert.True(Math.Abs(want[o][i] - got[o][i]) <= 1e-4f * (1 + Math.Abs(want[o][i])), $"output {o}[{i}]: {got[o][i]} vs {want[o][i]}");
    }

    [Fact]
    public void R50_SessionPlansFewBuffersAndValidShapes()
    {
        using var backend = new ReferenceBackend();
        using RetinaNetGhmR50Fpn.Session session = new RetinaNetGhmR50Fpn().CreateSession(backend, 1, 64, 96);
        Assert.Equal((1, 3, 64, 96), (session.Input.N, session.Input.C, session.Input.H, session.Input.W));
        Assert.Equal((1, 720, 8, 12), (session.ClsP3.N, session.ClsP3.C, session.ClsP3.H, session.ClsP3.W));
        Assert.Equal((1, 36, 1, 1), (session.RegP7.N, session.RegP7.C, session.RegP7.H, session.RegP7.W));
        Assert.Equal(10, session.Outputs.Count);
        Assert.Equal(10, session.Outputs.Select(o => o.Tensor.Buffer).Distinct().Count()); // outputs never share memory
    }

    private static void Fill(StateTensor t, Random random)
    {
        if (t.ElementType == StateElementType.Int64) return;
        bool variance = t.Key.EndsWith(".running_var", StringComparison.Ordinal);
        bool scale = t.Key.EndsWith("bn.weight", StringComparison.Ordinal);
        for (int i = 0; i < t.Data.Length; i++)
            t.Data[i] = variance ? (float)(0.5 + random.NextDouble()) : scale ? (float)(0.5 + random.NextDouble() * 0.5) : (float)(random.NextDouble() * 0.6 - 0.3);
    }

    /// <summary>An NCHW tensor and the plain-loop ops used to recompute the network.</summary>
    private sealed class Naive(float[] data, int n, int c, int h, int w)
    {
        public float[] Data { get; } = data;
        public int N { get; } = n;
        public int C { get; } = c;
        public int H { get; } = h;
        public int W { get; } = w;

        private float At(int n, int c, int y, int x) => Data[((n * C + c) * H + y) * W + x];

        public Naive Conv(Conv2d layer)
        {
            ConvSpec s = layer.Spec;
            int oh = (H + 2 * s.Padding - s.Kernel) / s.Stride + 1, ow = (W + 2 * s.Padding - s.Kernel) / s.Stride + 1;
            int inPerGroup = s.InChannels / s.Groups, outPerGroup = s.OutChannels / s.Groups;
            var y = new float[N * s.OutChannels * oh * ow];
            for (int n = 0; n < N; n++)
            for (int o = 0; o < s.OutChannels; o++)
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
            {
                double sum = layer.Bias?.Data[o] ?? 0;
                for (int ci = 0; ci < inPerGroup; ci++)
                for (int ky = 0; ky < s.Kernel; ky++)
                for (int kx = 0; kx < s.Kernel; kx++)
                {
                    int iy = oy * s.Stride - s.Padding + ky, ix = ox * s.Stride - s.Padding + kx;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        sum += layer.Weight.Data[((o * inPerGroup + ci) * s.Kernel + ky) * s.Kernel + kx] * At(n, o / outPerGroup * inPerGroup + ci, iy, ix);
                }
                y[((n * s.OutChannels + o) * oh + oy) * ow + ox] = (float)sum;
            }
            return new Naive(y, N, s.OutChannels, oh, ow);
        }

        public Naive BatchNorm(BatchNorm2d bn) => Map((c, v) =>
            (float)((v - bn.RunningMean.Data[c]) / Math.Sqrt(bn.RunningVar.Data[c] + 1e-5) * bn.Weight.Data[c] + bn.Bias.Data[c]));

        public Naive Relu() => Map((_, v) => Math.Max(v, 0f));

        public Naive Add(Naive other) => new(Data.Zip(other.Data, (a, b) => a + b).ToArray(), N, C, H, W);

        public Naive MaxPool(int k, int s, int p)
        {
            int oh = (H + 2 * p - k) / s + 1, ow = (W + 2 * p - k) / s + 1;
            var y = new float[N * C * oh * ow];
            for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
            {
                float best = float.NegativeInfinity;
                for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                {
                    int iy = oy * s - p + ky, ix = ox * s - p + kx;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) best = Math.Max(best, At(n, c, iy, ix));
                }
                y[((n * C + c) * oh + oy) * ow + ox] = best;
            }
            return new Naive(y, N, C, oh, ow);
        }

        /// <summary>PyTorch nearest: source index floor(dst * in / out).</summary>
        public Naive UpsampleTo(int oh, int ow)
        {
            var y = new float[N * C * oh * ow];
            for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                y[((n * C + c) * oh + oy) * ow + ox] = At(n, c, oy * H / oh, ox * W / ow);
            return new Naive(y, N, C, oh, ow);
        }

        private Naive Map(Func<int, float, float> f)
        {
            var y = new float[Data.Length];
            for (int i = 0; i < y.Length; i++) y[i] = f(i / (H * W) % C, Data[i]);
            return new Naive(y, N, C, H, W);
        }
    }
}

/// <summary>Runs alone: allocation counters are disturbed by tests running beside them.</summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A steady-state forward pass on the CPU backend allocates nothing on the managed heap.</summary>
[Collection(nameof(AllocationCollection))]
public class ForwardAllocationTests
{
    [Fact]
    public void R50_SteadyStateForward_AllocatesNothing()
    {
        var network = new RetinaNetGhmR50Fpn();
        SeededWeights.Fill(network);
        float[] input = new float[3 * 96 * 128];
        SeededWeights.FillInput(input);
        // One thread: the calling thread runs every work item (the same code the pool's workers run),
        // so its own counter sees the whole pass and nothing the test host allocates meanwhile.
        using var backend = new GhmGen.Backends.Cpu.CpuBackend(threads: 1);
        using RetinaNetGhmR50Fpn.Session session = network.CreateSession(backend, 1, 96, 128);
        session.Forward(input);
        session.Forward(input);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 3; i++) session.Forward(input);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
