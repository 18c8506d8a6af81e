using System.Text.Json;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Layers;

/// <summary>
/// SeededWeights against values made by numpy (tools/reference/make_fixtures.py ->
/// Layers/Fixtures/seeded_weights.json): bitwise equality for sample keys of every role.
/// </summary>
public sealed class SeededWeightsTests
{
    private static readonly Dictionary<string, SeededRole> PythonRoleNames = new()
    {
        ["counter"] = SeededRole.StepCounter,
        ["ghmc_edges"] = SeededRole.GhmcEdges,
        ["ghmr_edges"] = SeededRole.GhmrEdges,
        ["acc_sum"] = SeededRole.GhmAccumulatedSum,
        ["bn_running_mean"] = SeededRole.BatchNormRunningMean,
        ["bn_running_var"] = SeededRole.BatchNormRunningVariance,
        ["bn_weight"] = SeededRole.BatchNormWeight,
        ["bn_bias"] = SeededRole.BatchNormBias,
        ["conv_weight"] = SeededRole.ConvWeight,
        ["retina_cls_bias"] = SeededRole.RetinaClsBias,
        ["conv_bias"] = SeededRole.ConvBias,
    };

    private static readonly Lazy<JsonDocument> Fixture = new(() => JsonDocument.Parse(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Layers", "Fixtures", "seeded_weights.json"))));

    public static TheoryData<string> FixtureKeys()
    {
        var keys = new TheoryData<string>();
        foreach (JsonElement t in Fixture.Value.RootElement.GetProperty("tensors").EnumerateArray())
        {
            keys.Add(t.GetProperty("key").GetString()!);
        }

        return keys;
    }

    [Theory]
    [MemberData(nameof(FixtureKeys))]
    public void Fill_MatchesNumpyBitwise(string key)
    {
        JsonElement entry = FindEntry(key);
        StateTensor tensor = NewTensor(entry);

        SeededWeights.Fill(tensor);

        Assert.Equal(PythonRoleNames[entry.GetProperty("role").GetString()!], SeededWeights.RoleOf(tensor));
        AssertSampleEqual(entry, tensor);
    }

    [Fact]
    public void FillNetwork_FillsEveryStateTensorLikeFillingEachAlone()
    {
        var network = new ListNetwork(Fixture.Value.RootElement.GetProperty("tensors").EnumerateArray().Select(NewTensor).ToList());

        SeededWeights.Fill(network);

        foreach (StateTensor tensor in network.State)
        {
            AssertSampleEqual(FindEntry(tensor.Key), tensor);
        }
    }

    [Fact]
    public void FillInput_MatchesNumpyBitwise()
    {
        JsonElement entry = Fixture.Value.RootElement.GetProperty("input");
        var input = new float[entry.GetProperty("count").GetInt32()];

        SeededWeights.FillInput(input);

        AssertFloatBits(entry.GetProperty("first"), input.AsSpan(0, 16));
        int lastStart = entry.GetProperty("last_start").GetInt32();
        AssertFloatBits(entry.GetProperty("last"), input.AsSpan(lastStart));
        Assert.All(input, v => Assert.InRange(v, -2f, 2f));
    }

    [Fact]
    public void Fnv1a64_MatchesPublishedVectorsAndNumpy()
    {
        // FNV-1a 64 test vectors from the FNV reference (isthe.com/chongo/tech/comp/fnv).
        Assert.Equal(0xCBF29CE484222325UL, SeededWeights.Fnv1a64(""));
        Assert.Equal(0xAF63DC4C8601EC8CUL, SeededWeights.Fnv1a64("a"));
        Assert.Equal(0x85944171F73967E8UL, SeededWeights.Fnv1a64("foobar"));
        foreach (JsonProperty p in Fixture.Value.RootElement.GetProperty("fnv1a64").EnumerateObject())
        {
            Assert.Equal(Convert.ToUInt64(p.Value.GetString(), 16), SeededWeights.Fnv1a64(p.Name));
        }
    }

    [Fact]
    public void SplitMix64_MatchesReferenceSequence()
    {
        // Vigna's splitmix64.c seeded with 0 yields these first outputs (state advances by the golden gamma).
        const ulong gamma = 0x9E3779B97F4A7C15UL;
        Assert.Equal(0xE220A8397B1DCDAFUL, SeededWeights.SplitMix64(0));
        Assert.Equal(0x6E789E6AA1B965F4UL, SeededWeights.SplitMix64(gamma));
    }

    [Fact]
    public void GhmEdges_AreMmdetectionsFloat32Values()
    {
        var ghmc = new StateTensor("bbox_head.loss_cls.edges", [31], StateKind.Buffer);
        var ghmr = new StateTensor("bbox_head.loss_bbox.edges", [11], StateKind.Buffer);

        SeededWeights.Fill(ghmc);
        SeededWeights.Fill(ghmr);

        Assert.Equal(0f, ghmc.Data[0]);
        Assert.Equal(1f / 30f, ghmc.Data[1]);
        // 1 + 1e-6 rounded to float32 is 1 + 8 * 2^-23.
        Assert.Equal(0x3F800008, BitConverter.SingleToInt32Bits(ghmc.Data[30]));
        Assert.Equal(0.3f, ghmr.Data[3]);
        Assert.Equal(1000f, ghmr.Data[10]);
    }

    [Fact]
    public void Fill_ConvWeightStaysWithinItsHeUniformBound()
    {
        var grouped = new StateTensor("backbone.layer1.0.conv2.weight", [256, 8, 3, 3], StateKind.Parameter, role: StateRole.ConvWeight);
        var head = new StateTensor("bbox_head.cls_convs.1.conv.weight", [256, 256, 3, 3], StateKind.Parameter, role: StateRole.ConvWeight);

        SeededWeights.Fill(grouped);
        SeededWeights.Fill(head);

        float groupedBound = (float)Math.Sqrt(3.0 / 72);
        float headBound = (float)Math.Sqrt(6.0 / 2304);
        Assert.All(grouped.Data, v => Assert.InRange(v, -groupedBound, groupedBound));
        Assert.All(head.Data, v => Assert.InRange(v, -headBound, headBound));
        Assert.True(grouped.Data.Max() > 0.9f * groupedBound && grouped.Data.Min() < -0.9f * groupedBound);
    }

    [Fact]
    public void Uniform01_IsTheValueFillUniformMapsAffinely()
    {
        var values = new float[40];
        SeededWeights.FillUniform("neck.fpn_convs.0.conv.bias", values, -0.05, 0.05);

        for (int i = 0; i < values.Length; i++)
        {
            double u = SeededWeights.Uniform01("neck.fpn_convs.0.conv.bias", i);
            Assert.InRange(u, 0.0, 1.0 - Math.Pow(2, -24));
            Assert.Equal(Math.Floor(u * (1 << 24)), u * (1 << 24));
            Assert.Equal((float)(-0.05 + 0.1 * u), values[i]);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => SeededWeights.Uniform01("input", -1));
    }

    [Fact]
    public void Fill_UnknownKey_ThrowsNamingTheKey()
    {
        var tensor = new StateTensor("neck.mystery.scale", [4, 4], StateKind.Parameter);

        ArgumentException error = Assert.Throws<ArgumentException>(() => SeededWeights.Fill(tensor));

        Assert.Contains("neck.mystery.scale", error.Message);
    }

    [Fact]
    public void Fill_CounterStoredAsFloat_ThrowsNamingTheKey()
    {
        var tensor = new StateTensor("backbone.bn1.num_batches_tracked", [], StateKind.Buffer, StateElementType.Float32, StateRole.BatchNormBatchesTracked);

        ArgumentException error = Assert.Throws<ArgumentException>(() => SeededWeights.Fill(tensor));

        Assert.Contains("backbone.bn1.num_batches_tracked", error.Message);
    }

    private static JsonElement FindEntry(string key) =>
        Fixture.Value.RootElement.GetProperty("tensors").EnumerateArray().Single(t => t.GetProperty("key").GetString() == key);

    private static StateTensor NewTensor(JsonElement entry)
    {
        string key = entry.GetProperty("key").GetString()!;
        int[] shape = entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
        bool int64 = entry.GetProperty("element_type").GetString() == "int64";
        bool buffer = key.EndsWith(".running_mean", StringComparison.Ordinal) || key.EndsWith(".running_var", StringComparison.Ordinal)
            || key.EndsWith(".num_batches_tracked", StringComparison.Ordinal) || key.StartsWith("bbox_head.loss_", StringComparison.Ordinal);
        // The role a layer type would give it (the fixture's role names are the Python script's).
        StateRole role = entry.GetProperty("role").GetString() switch
        {
            "counter" => StateRole.BatchNormBatchesTracked,
            "bn_running_mean" => StateRole.BatchNormRunningMean,
            "bn_running_var" => StateRole.BatchNormRunningVar,
            "bn_weight" => StateRole.BatchNormWeight,
            "bn_bias" => StateRole.BatchNormBias,
            "conv_weight" => StateRole.ConvWeight,
            "retina_cls_bias" or "conv_bias" => StateRole.ConvBias,
            _ => StateRole.Buffer,
        };
        var tensor = new StateTensor(key, shape, buffer ? StateKind.Buffer : StateKind.Parameter,
            int64 ? StateElementType.Int64 : StateElementType.Float32, role);
        // Start from garbage so that a Fill that skips elements is caught.
        tensor.Data.AsSpan().Fill(float.NaN);
        tensor.Int64Data.AsSpan().Fill(-7);
        return tensor;
    }

    private static void AssertSampleEqual(JsonElement entry, StateTensor tensor)
    {
        Assert.Equal(entry.GetProperty("count").GetInt64(), tensor.ElementCount);
        int lastStart = entry.GetProperty("last_start").GetInt32();
        if (tensor.ElementType == StateElementType.Int64)
        {
            Assert.Equal(entry.GetProperty("first").EnumerateArray().Select(v => v.GetInt64()), tensor.Int64Data.Take(16));
            Assert.Equal(entry.GetProperty("last").EnumerateArray().Select(v => v.GetInt64()), tensor.Int64Data.Skip(lastStart));
            return;
        }

        AssertFloatBits(entry.GetProperty("first"), tensor.Data.AsSpan(0, Math.Min(16, tensor.Data.Length)));
        AssertFloatBits(entry.GetProperty("last"), tensor.Data.AsSpan(lastStart));
        Assert.DoesNotContain(tensor.Data, float.IsNaN);
    }

    private static void AssertFloatBits(JsonElement expectedBits, ReadOnlySpan<float> actual)
    {
        uint[] expected = expectedBits.EnumerateArray().Select(v => v.GetUInt32()).ToArray();
        uint[] got = new uint[actual.Length];
        for (int i = 0; i < actual.Length; i++) got[i] = BitConverter.SingleToUInt32Bits(actual[i]);
        Assert.Equal(expected, got);
    }

    private sealed class ListNetwork(IReadOnlyList<StateTensor> state) : INetwork
    {
        public string Name => "seeded-sample";

        public IReadOnlyList<StateTensor> State => state;

        public long ParameterCount => state.Where(t => t.Kind == StateKind.Parameter).Sum(t => t.ElementCount);
    }
}
