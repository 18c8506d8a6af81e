using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

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

    [Theory]
    [InlineData("TinyNet")]
    [InlineData("RetinaNetGhmR50Fpn")]
    [InlineData("RetinaNetGhmX101x32x4dFpn")]
    public void Backward_SignalsEveryTrainedParameterOnce_RightAfterItsLastGradientWrite(string typeName)
    {
        string code = typeName == "TinyNet"
            ? GeneratorHarness.Run(TinyNetSource.Text).Files["TinyNet.Training.g.cs"]
            : ModelRun.Value.Files[typeName + ".Training.g.cs"];
        // Parameter p's gradient belongs to trained convolution Trained[t] (TrainingWeights.Gradients, in TrainedKeys order).
        int list = code.IndexOf("Gradients =\n", StringComparison.Ordinal);
        string[] owners = code[list..code.IndexOf("];", list, StringComparison.Ordinal)].Split('\n')
            .Select(l => Regex.Match(l, @"Trained\[(\d+)\]\.\w+!, //")).Where(m => m.Success).Select(m => m.Groups[1].Value).ToArray();
        Assert.True(owners.Length > 0);
        int start = code.IndexOf("public void Backward(global::GhmGen.Layers.IGradientReadySink? ready)", StringComparison.Ordinal);
        Assert.True(start >= 0, "no Backward(IGradientReadySink?)");
        string[] lines = code[start..code.IndexOf("public void UpdateWeights()", start, StringComparison.Ordinal)].Split('\n').Select(l => l.Trim()).ToArray();
        var signalled = new List<int>();
        for (int p = 0; p < owners.Length; p++)
        {
            string trained = $"_trained[{owners[p]}]";
            int[] at = [.. Enumerable.Range(0, lines.Length).Where(i => lines[i].StartsWith($"ready.GradientReady({p});", StringComparison.Ordinal))];
            Assert.True(at.Length == 1, $"{typeName}: parameter {p} is signalled {at.Length} times");
            // Its last write: the last backend call on the convolution's folded gradients.
            int lastWrite = Array.FindLastIndex(lines, l => l.StartsWith("b.", StringComparison.Ordinal) &&
                (l.Contains(trained + ".WeightGradient", StringComparison.Ordinal) || l.Contains(trained + ".BiasGradient", StringComparison.Ordinal)));
            Assert.True(lastWrite >= 0, $"{typeName}: nothing writes {trained}'s gradients");
            Assert.True(at[0] > lastWrite, $"{typeName}: parameter {p} is signalled at line {at[0]}, before its last write at line {lastWrite}");
            // ... right after it: the host gradients are collected in between, and no other backend call runs first.
            string[] between = lines[(lastWrite + 1)..at[0]];
            Assert.Contains(between, l => l.StartsWith(trained + ".CollectGradients(b, _scratch);", StringComparison.Ordinal));
            Assert.DoesNotContain(between, l => l.StartsWith("b.", StringComparison.Ordinal));
            signalled.Add(at[0]);
        }
        Assert.Equal(owners.Length, lines.Count(l => l.StartsWith("ready.GradientReady(", StringComparison.Ordinal)));
        // The first signal comes long before the pass ends (the head's last level, not the stem).
        int lastCall = Array.FindLastIndex(lines, l => l.StartsWith("b.", StringComparison.Ordinal));
        Assert.True(signalled.Min() < lastCall / 2, $"{typeName}: the first signal is at line {signalled.Min()} of {lastCall}");
    }

    [Fact]
    public void GeneratedCode_DocumentsEveryPublicMember_ForAConsumerWithDocumentationOn()
    {
        // A project with GenerateDocumentationFile and TreatWarningsAsErrors (as GhmGen.Models) must not
        // fail on code it did not write: every public member the generator emits carries a doc comment
        // and every cref in them resolves.
        string[] sources = [.. GeneratorHarness.ModelSources(), TinyNetSource.Text];
        var warnings = GeneratorHarness.GeneratedCodeWarningsWithDocumentation(sources);
        Assert.True(warnings.IsEmpty, string.Join("\n", warnings.Take(20)));
    }

    [Fact]
    public void DocumentationCheck_ReportsAnUndocumentedGeneratedMember()
    {
        // The check above sees CS1591 in generated files: a generator-like file with an undocumented member is reported.
        const string Generated = "// <auto-generated/>\nnamespace N;\n/// <summary>Documented.</summary>\npublic static class C { public const int X = 1; }";
        CSharpParseOptions options = GeneratorHarness.ParseOptions.WithDocumentationMode(DocumentationMode.Diagnose);
        CSharpCompilation compilation = CSharpCompilation.Create("Check",
            [CSharpSyntaxTree.ParseText(Generated, options, path: "C.g.cs")],
            [MetadataReference.CreateFromFile(typeof(object).Assembly.Location)],
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        Assert.Contains(compilation.GetDiagnostics(), d => d.Id == "CS1591");
    }

    private static readonly Lazy<GeneratorHarness.Result> ModelRun = new(() => GeneratorHarness.Run(GeneratorHarness.ModelSources()));
}
