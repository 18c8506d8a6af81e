using GhmGen.Layers;
using GhmGen.Models.Tests.Forward;

namespace GhmGen.Models.Tests;

/// <summary>
/// <see cref="SeededWeights"/> on networks other than the four detectors: the rule for each
/// tensor comes from the generated layer type that owns it, whatever its key.
/// </summary>
public sealed class SeededWeightsNetworkTests
{
    [Fact]
    public void Fills_a_declared_network_whose_keys_are_not_mmdetections()
    {
        var network = new TinyNet();
        foreach (StateTensor t in network.State) t.Data.AsSpan().Fill(float.NaN);

        SeededWeights.Fill(network);

        // stage.0.bn is a BatchNorm2d: scale in [0.5, 1), shift in [-0.1, 0.1), variance in [0.5, 1.5).
        Assert.All(network.Stage_0_Bn.Weight.Data, v => Assert.InRange(v, 0.5f, 1f));
        Assert.All(network.Stage_0_Bn.Bias.Data, v => Assert.InRange(v, -0.1f, 0.1f));
        Assert.All(network.Stage_0_Bn.RunningVar.Data, v => Assert.InRange(v, 0.5f, 1.5f));
        Assert.Equal(0, network.Stage_0_Bn.NumBatchesTracked.Int64Data[0]);
        // A declared buffer that is not GHM's starts at zero.
        Assert.All(network.Head_State.Data, v => Assert.Equal(0f, v));
        // Convolutions outside "backbone." get the He-uniform bound sqrt(2 * 3 / fan_in), values are the seeded ones.
        double bound = Math.Sqrt(2.0 * 3 / (8 * 3 * 3));
        Assert.All(network.Stage_1_Conv.Weight.Data, v => Assert.InRange(v, -bound, bound));
        var expected = new float[network.Stage_1_Conv.Weight.Data.Length];
        SeededWeights.FillUniform("stage.1.conv.weight", expected, -bound, bound);
        Assert.Equal(expected, network.Stage_1_Conv.Weight.Data);
        Assert.All(network.Head_Cls.Bias!.Data, v => Assert.InRange(v, -0.05f, 0.05f));
    }

    [Fact]
    public void The_layer_type_decides_not_the_key()
    {
        // A convolution whose key looks like a batch norm's is still a convolution, and the reverse.
        var conv = new Conv2d("backbone.bn1", new GhmGen.Backends.ConvSpec(4, 4, 1, 1, 0, 1), bias: true);
        var norm = new BatchNorm2d("features.conv", 4);

        Assert.Equal(SeededRole.ConvWeight, SeededWeights.RoleOf(conv.Weight));
        Assert.Equal(SeededRole.ConvBias, SeededWeights.RoleOf(conv.Bias!));
        Assert.Equal(SeededRole.BatchNormWeight, SeededWeights.RoleOf(norm.Weight));
        Assert.Equal(SeededRole.BatchNormRunningMean, SeededWeights.RoleOf(norm.RunningMean));

        var orphan = new StateTensor("my.scale", [4], StateKind.Parameter);
        var error = Assert.Throws<ArgumentException>(() => SeededWeights.Fill(orphan));
        Assert.Contains("'my.scale'", error.Message);
    }
}
