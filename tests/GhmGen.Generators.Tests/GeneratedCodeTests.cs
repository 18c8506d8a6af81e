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
    }

    private static readonly Lazy<GeneratorHarness.Result> ModelRun = new(() => GeneratorHarness.Run(GeneratorHarness.ModelSources()));
}
