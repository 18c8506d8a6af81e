namespace GhmGen.Generators.Tests;

/// <summary>The generator's output for the tiny network and the four model declarations, against snapshots and hand counts.</summary>
public class GeneratedCodeTests
{
    [Fact]
    public void TinyNet_MatchesSnapshot_AndCompiles()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(TinyNetSource.Text);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
        Snapshot.Match("TinyNet.Network.g", result.Files["TinyNet.Network.g.cs"]);
        Snapshot.Match("TinyNet.Training.g", result.Files["TinyNet.Training.g.cs"]);
    }

    [Fact]
    public void TinyNet_CountsEqualHandComputedValues()
    {
        string code = GeneratorHarness.Run(TinyNetSource.Text).Files["TinyNet.Network.g.cs"];
        // stem 3*8*9 = 216; stage block 0: conv 8*8*9 = 576, bn 16, proj 8*8 = 64; block 1: 576 + 16;
        // head (shared, counted once): cls 6*8*9 + 6 = 438, box 8*4 + 4 = 36.
        Assert.Contains("public const long Total = 1938;", code);
        Assert.Contains("public const long Head = 474;", code);
        // stem, 2 x (conv, bn x5) + proj, buffer, cls w+b, box w+b
        Assert.Contains("public const int StateTensorCount = 19;", code);
    }

    [Theory]
    [InlineData("RetinaNetGhmR50Fpn")]
    [InlineData("RetinaNetGhmR101Fpn")]
    [InlineData("RetinaNetGhmX101x32x4dFpn")]
    [InlineData("RetinaNetGhmX101x64x4dFpn")]
    public void Models_MatchSnapshots(string typeName)
    {
        GeneratorHarness.Result result = ModelRun.Value;
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
        Snapshot.Match(typeName + ".Network.g", result.Files[typeName + ".Network.g.cs"]);
        Snapshot.Match(typeName + ".Training.g", result.Files[typeName + ".Training.g.cs"]);
    }

    [Fact]
    public void R50_Backward_StopsAtTheLowestTrainedLayer_AndSumsTheSharedHeadOverFiveLevels()
    {
        string code = ModelRun.Value.Files["RetinaNetGhmR50Fpn.Training.g.cs"];
        int start = code.IndexOf("public void Backward()", StringComparison.Ordinal);
        string backward = code[start..code.IndexOf("public void UpdateWeights()", start, StringComparison.Ordinal)];
        // frozen_stages=1: nothing for the stem and layer1, and no input gradient for layer2's first convolutions.
        Assert.DoesNotContain("backbone.layer1.", backward);
        Assert.DoesNotContain("backbone.conv1", backward);
        Assert.DoesNotContain("through backbone.layer2.0.conv1", backward);
        Assert.DoesNotContain("through backbone.layer2.0.downsample.0", backward);
        Assert.Contains("d backbone.layer2.0.conv1 + bn1 weights", backward);
        Assert.Contains("d backbone.layer2.0.downsample.0 + 1 weights", backward);
        // Every head convolution: one weight-gradient call per level, the first overwriting, the other four adding.
        foreach (string conv in new[] { "bbox_head.retina_cls", "bbox_head.cls_convs.0.conv", "bbox_head.reg_convs.3.conv" })
        {
            string[] calls = backward.Split('\n').Where(l => l.Contains($"// d {conv} weights", StringComparison.Ordinal)).ToArray();
            Assert.Equal(5, calls.Length);
            Assert.Single(calls, l => l.Contains("accumulate: false", StringComparison.Ordinal));
        }
        Assert.Contains("public const long TrainedParameterCount = 37743348;", code); // 37,968,692 less conv1, bn1 and layer1 (225,344)
    }

    private static readonly Lazy<GeneratorHarness.Result> ModelRun = new(() => GeneratorHarness.Run(GeneratorHarness.ModelSources()));
}
