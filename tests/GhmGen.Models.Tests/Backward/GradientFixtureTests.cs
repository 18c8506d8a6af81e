using System.Text.Json;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Backward;

/// <summary>
/// <see cref="GradientFixture"/> against the fixtures themselves (tools/reference/backward_grads.py):
/// the seeded input, output gradients, sample indices and summaries are rebuilt here and must
/// equal what PyTorch recorded; the tolerance rule must accept PyTorch's own float32 gradients and
/// reject wrong ones; the fixture's keys must be the C# network's.
/// </summary>
public sealed class GradientFixtureTests
{
    public static TheoryData<string> Models => new()
    {
        "retinanet-ghm-r50-fpn", "retinanet-ghm-r101-fpn", "retinanet-ghm-x101-32x4d-fpn", "retinanet-ghm-x101-64x4d-fpn",
    };

    private static readonly Dictionary<string, GradientFixture> Cache = new();

    private static GradientFixture Fixture(string model)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(model, out GradientFixture? f)) Cache[model] = f = GradientFixture.Load(model);
            return f;
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Input_IsTheSeededPaddedBatchPyTorchUsed(string model)
    {
        GradientFixture f = Fixture(model);
        Assert.Equal([2, 3, 64, 96], f.InputShape);
        float[] x = f.BuildInput();

        AssertChecksum("input", f.InputChecksum, x);
        // Padding is zero: image 1 is 48x80 in a 64x96 batch.
        ImageRegion image1 = f.Images.Single(i => i.Index == 1);
        Assert.Equal((48, 80), (image1.Height, image1.Width));
        int h = f.InputShape[2], w = f.InputShape[3];
        for (int c = 0; c < 3; c++)
        {
            for (int y = 0; y < h; y++)
            {
                for (int xx = 0; xx < w; xx++)
                {
                    float v = x[((1 * 3 + c) * h + y) * w + xx];
                    if (y >= image1.Height || xx >= image1.Width) Assert.Equal(0f, v);
                    else Assert.NotEqual(0f, v);
                }
            }
        }

        // Image 0 fills its whole entry; its region is FillUniform("input.image0") in order.
        var image0 = new float[3 * 64 * 96];
        SeededWeights.FillUniform("input.image0", image0, -2, 2);
        Assert.Equal(image0, x.AsSpan(0, image0.Length).ToArray());
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void OutputGradients_AreTheSeededOnesPyTorchUsed(string model)
    {
        GradientFixture f = Fixture(model);
        string[] names = ["cls_p3", "cls_p4", "cls_p5", "cls_p6", "cls_p7", "reg_p3", "reg_p4", "reg_p5", "reg_p6", "reg_p7"];
        Assert.Equal(names, f.OutputGradients.Select(o => o.Name));
        int[][] hw = [[8, 12], [4, 6], [2, 3], [1, 2], [1, 1]];
        for (int i = 0; i < 10; i++)
        {
            OutputGradient g = f.OutputGradients[i];
            Assert.Equal([2, i < 5 ? 720 : 36, hw[i % 5][0], hw[i % 5][1]], g.Shape);
            AssertChecksum(g.Name, g.Checksum, f.BuildOutputGradient(g.Name));
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void SampleIndices_AreThoseThePythonScriptSampled(string model)
    {
        GradientFixture f = Fixture(model);
        foreach (ParameterReference p in f.Parameters)
        {
            Assert.Equal(p.SampleIndices, GradientFixture.SampleIndices(p.Key, p.Numel));
            Assert.All(p.SampleIndices, i => Assert.InRange(i, 0, p.Numel - 1));
            Assert.Equal(p.Numel, p.Shape.Aggregate(1L, (a, b) => a * b));
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Summarize_MatchesPythonOnAKnownVector(string model)
    {
        // The script summarised FillUniform("self_test." + key, -1, 1) with the same code it uses for gradients.
        GradientFixture f = Fixture(model);
        foreach (JsonElement t in f.Root.GetProperty("summary_self_test").EnumerateArray())
        {
            string key = t.GetProperty("key").GetString()!;
            var vector = new float[f[key].Numel];
            SeededWeights.FillUniform(t.GetProperty("vector_key").GetString()!, vector, t.GetProperty("low").GetDouble(), t.GetProperty("high").GetDouble());
            GradientSummary expected = GradientFixture.ReadSummary(t.GetProperty("summary"));

            GradientSummary actual = GradientFixture.Summarize(key, vector);

            // The fixture has 9 significant digits (float32 samples: shortest round-trip, so exact).
            Assert.Equal(expected.Samples.Select(v => (float)v), actual.Samples.Select(v => (float)v));
            Assert.Equal(expected.MaxAbs, actual.MaxAbs, 1e-8 * expected.MaxAbs);
            Assert.Equal(expected.Norm, actual.Norm, 1e-8 * expected.Norm);
            Assert.Equal(expected.Probe, actual.Probe, 1e-8 * expected.Norm * Math.Sqrt(vector.Length));
            Assert.True(f.Compare(key, vector).WorstRatio > 1, "an unrelated vector must not pass as the gradient");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Tolerance_AcceptsPyTorchsFloat32Gradients(string model)
    {
        GradientFixture f = Fixture(model);
        JsonElement tol = f.Root.GetProperty("tolerance");
        Assert.Equal(GradientFixture.RoundingK, tol.GetProperty("rounding_k").GetDouble());
        Assert.Equal(GradientFixture.FlipM, tol.GetProperty("flip_m").GetDouble());
        Assert.Equal(GradientFixture.Floor, tol.GetProperty("floor").GetDouble());

        var failures = f.Parameters.Select(p => f.Compare(p.Key, p.F32)).Where(c => !c.Passed).SelectMany(c => c.Failures).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
        Assert.All(f.Parameters, p => Assert.Equal(0, f.Compare(p.Key, p.F64).WorstRatio));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Tolerance_RejectsWrongGradients(string model)
    {
        GradientFixture f = Fixture(model);
        foreach (ParameterReference p in f.Parameters)
        {
            GradientSummary r = p.F64;
            // 5% too large everywhere (e.g. a wrong BN scale), the sign flipped, and a zero gradient.
            var scaled = r with { Norm = 1.05 * r.Norm, Probe = 1.05 * r.Probe, Samples = r.Samples.Select(v => 1.05 * v).ToArray() };
            var negated = r with { Probe = -r.Probe, Samples = r.Samples.Select(v => -v).ToArray() };
            var zero = new GradientSummary(0, 0, 0, new double[r.Samples.Length]);
            Assert.False(f.Compare(p.Key, negated).Passed, p.Key + " negated");
            Assert.False(f.Compare(p.Key, zero).Passed, p.Key + " zero");
            if (p.FlipL2 == 0) Assert.False(f.Compare(p.Key, scaled).Passed, p.Key + " x1.05");
        }

        Assert.False(f.Compare(f.Parameters[0].Key, new float[3]).Passed);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Keys_AreTheCSharpNetworksParameters(string model)
    {
        GradientFixture f = Fixture(model);
        INetwork network = ModelRegistry.Get(model).Create();
        List<StateTensor> parameters = network.State.Where(t => t.Kind == StateKind.Parameter).ToList();

        // Every parameter is either trained (with its shape) or frozen; frozen = stem + layer1.
        Assert.Equal(parameters.Select(t => t.Key).Order(StringComparer.Ordinal),
            f.Parameters.Select(p => p.Key).Concat(f.FrozenKeys).Order(StringComparer.Ordinal));
        foreach (StateTensor t in parameters.Where(t => f.IsTrainable(t.Key)))
        {
            Assert.Equal(t.Shape, f[t.Key].Shape);
        }

        Assert.All(f.FrozenKeys, k => Assert.True(k.StartsWith("backbone.conv1.", StringComparison.Ordinal)
            || k.StartsWith("backbone.bn1.", StringComparison.Ordinal) || k.StartsWith("backbone.layer1.", StringComparison.Ordinal), k));
        Assert.Equal(33, f.FrozenKeys.Count);
        Assert.Equal(model.Contains("r50", StringComparison.Ordinal) ? 162 : 315, f.Parameters.Count);
        Assert.True(f.BuffersUnchanged);
    }

    private static void AssertChecksum(string what, Checksum expected, float[] values)
    {
        double sum = 0, sumSq = 0, max = 0, weighted = 0;
        for (int i = 0; i < values.Length; i++)
        {
            double v = values[i];
            sum += v;
            sumSq += v * v;
            max = Math.Max(max, Math.Abs(v));
            weighted += v * (i % 997 + 1);
        }

        // 9 significant digits in the fixture; the sums differ from numpy's pairwise sums by ~1e-13.
        Assert.True(Math.Abs(sum - expected.Sum) <= 1e-8 * Math.Max(Math.Abs(expected.Sum), 1), $"{what} sum {sum:R} vs {expected.Sum:R}");
        Assert.Equal(expected.SumSq, sumSq, 1e-8 * expected.SumSq);
        Assert.True(Math.Abs(weighted - expected.IndexWeightedSum) <= 1e-8 * Math.Max(Math.Abs(expected.IndexWeightedSum), 1) + 1e-9 * 997 * Math.Sqrt(sumSq),
            $"{what} index-weighted sum {weighted:R} vs {expected.IndexWeightedSum:R}");
        Assert.Equal(expected.MaxAbs, max, 1e-8);
        Assert.Equal(expected.First.Select(v => (float)v), values.Take(expected.First.Length));
    }
}
