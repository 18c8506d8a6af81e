namespace GhmGen.Generators.Tests;

/// <summary>The declaration example in README.md compiles and means what the README says.</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void ReadmeExample_CompilesWithoutDiagnostics()
    {
        string readme = File.ReadAllText(Path.Combine(GeneratorHarness.RepositoryRoot(), "README.md"));
        int marker = readme.IndexOf("<!-- README example: declare -->", StringComparison.Ordinal);
        Assert.True(marker >= 0, "README example marker missing");
        int start = readme.IndexOf("```csharp\n", marker, StringComparison.Ordinal) + "```csharp\n".Length;
        string example = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];

        GeneratorHarness.Result result = GeneratorHarness.Run(example);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
        string code = result.Files["TinyDetector.Network.g.cs"];
        Assert.Contains("public global::GhmGen.Layers.Conv2d Stage1_0_Conv { get; } = new(\"stage1.0.conv\", new global::GhmGen.Backends.ConvSpec(32, 32, 3, 2, 1, 1), bias: false);", code);
        // stem 3*32*9 = 864; each stage: 2 convs 9216 + 2 BN 64 each + projection 1024 = 19,584;
        // head (shared): cls 32*5*9 + 5 = 1445, box 32*4*9 + 4 = 1156.
        Assert.Contains("public const long Total = 42633;", code);
        Assert.Contains("public const long Head = 2601;", code);
        // Frozen = "stem": everything but the stem's 864 weights is trained, and the stem gets no gradient.
        string training = result.Files["TinyDetector.Training.g.cs"];
        Assert.Contains("public const long TrainedParameterCount = 41769;", training);
        Assert.DoesNotContain("\"stem.weight\"", training);
        Assert.Contains("\"stage1.0.conv.weight\"", training);
    }
}
