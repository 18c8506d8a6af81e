using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace GhmGen.Generators.Tests;

/// <summary>An edit that does not touch a declaration leaves every generator step cached.</summary>
public class IncrementalityTests
{
    [Fact]
    public void UnrelatedEdit_LeavesStepsCached()
    {
        CSharpCompilation compilation = GeneratorHarness.Compile(TinyNetSource.Text, "namespace Other; public class Unrelated { public int A; }");
        GeneratorDriver driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);

        SyntaxTree old = compilation.SyntaxTrees.Last();
        SyntaxTree edited = CSharpSyntaxTree.ParseText("namespace Other; public class Unrelated { public int A; public int B; }", GeneratorHarness.ParseOptions, path: old.FilePath);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, edited));

        GeneratorRunResult run = driver.GetRunResult().Results.Single();
        GeneratorHarness.AssertStepsCached(run, NetworkGenerator.BlocksStep, NetworkGenerator.NetworksStep, NetworkGenerator.ReferencedBlocksStep,
            NetworkGenerator.AllBlocksStep, NetworkGenerator.ExpandStep, NetworkGenerator.PlanStep, NetworkGenerator.ModelsStep);
    }

    [Fact]
    public void EditedDeclaration_RerunsExpansion()
    {
        CSharpCompilation compilation = GeneratorHarness.Compile(TinyNetSource.Text);
        GeneratorDriver driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        SyntaxTree old = compilation.SyntaxTrees.Single();
        SyntaxTree edited = CSharpSyntaxTree.ParseText(TinyNetSource.Text.Replace("Count = 2", "Count = 3"), GeneratorHarness.ParseOptions, path: old.FilePath);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, edited));
        GeneratorRunResult run = driver.GetRunResult().Results.Single();
        Assert.Contains(run.TrackedSteps[NetworkGenerator.ExpandStep].SelectMany(s => s.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains("public const long Total = 2530;", run.GeneratedSources.Single(s => s.HintName.EndsWith(".Network.g.cs", StringComparison.Ordinal)).SourceText.ToString()); // + conv 576 + bn 16
    }

    [Fact]
    public void MovedDeclaration_ReplansButLeavesTheModelUnchanged()
    {
        CSharpCompilation compilation = GeneratorHarness.Compile(TinyNetSource.Text);
        GeneratorDriver driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        SyntaxTree old = compilation.SyntaxTrees.Single();
        // Only positions change: the expansion carries new locations, the planned network is equal.
        SyntaxTree edited = CSharpSyntaxTree.ParseText("// moved\n\n" + TinyNetSource.Text, GeneratorHarness.ParseOptions, path: old.FilePath);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, edited));
        GeneratorRunResult run = driver.GetRunResult().Results.Single();
        Assert.Contains(run.TrackedSteps[NetworkGenerator.ExpandStep].SelectMany(s => s.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        GeneratorHarness.AssertStepsCached(run, NetworkGenerator.PlanStep, NetworkGenerator.ModelsStep);
    }
}
