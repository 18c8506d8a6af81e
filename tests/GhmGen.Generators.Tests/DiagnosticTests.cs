using Microsoft.CodeAnalysis;

namespace GhmGen.Generators.Tests;

/// <summary>Every diagnostic: its ID, severity, message, and that it points at the attribute that is wrong.</summary>
public class DiagnosticTests
{
    private const string Header = "using GhmGen.Description;\nnamespace Demo;\n";

    /// <summary>Runs the generator and returns its single diagnostic, checking that it starts at <paramref name="marker"/>.</summary>
    private static Diagnostic Single(string source, string id, string marker)
    {
        source = Header + source;
        GeneratorHarness.Result result = GeneratorHarness.Run(source);
        Diagnostic d = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal(id, d.Id);
        Assert.Equal(DiagnosticSeverity.Error, d.Severity);
        int at = source.IndexOf(marker, StringComparison.Ordinal);
        Assert.True(at >= 0, "marker not in source");
        Assert.Equal(at, d.Location.SourceSpan.Start);
        Assert.Empty(result.Files);
        return d;
    }

    [Fact]
    public void GHM001_NotPartial() => Assert.Contains("partial", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("c", Out = 4)]
        public sealed class Net;
        """, "GHM001", "Network(\"n\")").GetMessage());

    [Fact]
    public void GHM002_BlockInputChannelsDoNotMatchConnectedValue() => Assert.Contains("expected 16 channels", Single("""
        [Block]
        [Input("c3", Channels = 16)]
        [Conv("lateral", Out = 4)]
        public sealed class Neck;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("c", Out = 8)]
        [Use("neck", nameof(Neck))]
        public sealed partial class Net;
        """, "GHM002", "Use(\"neck\"").GetMessage());

    [Fact]
    public void GHM002_ConvDeclaredInputChannels() => Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("c", In = 4, Out = 8)]
        public sealed partial class Net;
        """, "GHM002", "Conv(\"c\"");

    [Fact]
    public void GHM002_AddOfDifferentChannels() => Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8)]
        [Conv("b", From = "image", Out = 4)]
        [Add("sum", "a", "b")]
        public sealed partial class Net;
        """, "GHM002", "Add(\"sum\"");

    [Fact]
    public void GHM003_GroupsDoNotDivideChannels() => Assert.Contains("groups 3", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8)]
        [Conv("b", Out = 8, Kernel = 3, Groups = 3)]
        public sealed partial class Net;
        """, "GHM003", "Conv(\"b\"").GetMessage());

    [Fact]
    public void GHM004_NonPositiveKernel() => Assert.Contains("kernel size must be positive but is 0", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8, Kernel = 0)]
        public sealed partial class Net;
        """, "GHM004", "Conv(\"a\"").GetMessage());

    [Fact]
    public void GHM004_NonPositiveClassCountThroughArguments() => Single("""
        [Block("classes")]
        [Input("x")]
        [Conv("cls", Out = "classes * 9", Kernel = 3, Padding = 1)]
        public sealed class Head;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Use("head", nameof(Head), Args = "classes = 0")]
        public sealed partial class Net;
        """, "GHM004", "Conv(\"cls\"");

    [Fact]
    public void GHM005_DuplicateLayerName() => Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8)]
        [Conv("a", Out = 8, Kernel = 1)]
        public sealed partial class Net;
        """, "GHM005", "Conv(\"a\", Out = 8, Kernel = 1)");

    [Fact]
    public void GHM006_UnknownBlock() => Assert.Contains("'Nope'", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Use("x", "Nope")]
        public sealed partial class Net;
        """, "GHM006", "Use(\"x\"").GetMessage());

    [Fact]
    public void GHM007_UnknownValue() => Assert.Contains("'missing'", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", From = "missing", Out = 8)]
        public sealed partial class Net;
        """, "GHM007", "Conv(\"a\"").GetMessage());

    [Fact]
    public void GHM008_CycleBetweenLayers() => Assert.Contains("a -> b -> a", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", From = "b", Out = 3)]
        [Conv("b", From = "a", Out = 3)]
        public sealed partial class Net;
        """, "GHM008", "Conv(\"a\"").GetMessage());

    [Fact]
    public void GHM008_BlockUsesItself() => Single("""
        [Block]
        [Input("x")]
        [Use("inner", nameof(Loop))]
        public sealed class Loop;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Use("outer", nameof(Loop))]
        public sealed partial class Net;
        """, "GHM008", "Use(\"inner\"");

    [Fact]
    public void GHM009_FeatureMapShrinksToNothing() => Assert.Contains("minimum input size 8x8", Single("""
        [Network("n", MinInputSize = 8)]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8, Kernel = 3, Stride = 2, Padding = 1)]
        [MaxPool("pool", Kernel = 2)]
        [Conv("b", Out = 8, Kernel = 3)]
        public sealed partial class Net;
        """, "GHM009", "Conv(\"b\"").GetMessage());

    [Fact]
    public void GHM010_MalformedExpression() => Assert.Contains("planes *", Single("""
        [Block("planes")]
        [Input("x")]
        [Conv("a", Out = "planes *")]
        public sealed class B;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Use("b", nameof(B), Args = "planes = 4")]
        public sealed partial class Net;
        """, "GHM010", "Conv(\"a\"").GetMessage());

    [Fact]
    public void GHM010_UnknownArgument() => Assert.Contains("has no parameter 'plane'", Single("""
        [Block("planes")]
        [Input("x")]
        [Conv("a", Out = "planes")]
        public sealed class B;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Use("b", nameof(B), Args = "planes = 4, plane = 2")]
        public sealed partial class Net;
        """, "GHM010", "Use(\"b\"").GetMessage());

    [Fact]
    public void GHM010_NullAttributeArgument() => Assert.Contains("'sizeOf'", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8, Stride = 2)]
        [Upsample("up", null, From = "a")]
        [Add("sum", "image", "up")]
        public sealed partial class Net;
        """, "GHM010", "Upsample(\"up\"").GetMessage());

    [Fact]
    public void GHM010_MistypedAttributeArgument() => Assert.Contains("expected an int or a string", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 2.5)]
        public sealed partial class Net;
        """, "GHM010", "Conv(\"a\"").GetMessage());

    /// <summary>An attribute whose parameter was renamed (here a stand-in for the runtime's [Add]) is reported, not a crash.</summary>
    [Fact]
    public void GHM010_RenamedAttributeParameter()
    {
        const string source = """
            namespace GhmGen.Description
            {
                [System.AttributeUsage(System.AttributeTargets.Class, AllowMultiple = true)]
                public sealed class AddAttribute(string name, string first, string right) : System.Attribute;
            }
            namespace Demo
            {
                using GhmGen.Description;

                [Network("n")]
                [Input("image", Channels = 3)]
                [Conv("a", Out = 3)]
                [Add("sum", "a", "image")]
                public sealed partial class Net;
            }
            """;
        GeneratorHarness.Result result = GeneratorHarness.Run(source);
        Diagnostic d = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal("GHM010", d.Id);
        Assert.Equal(source.IndexOf("Add(\"sum\"", StringComparison.Ordinal), d.Location.SourceSpan.Start);
        Assert.Contains("'left'", d.GetMessage());
        Assert.Empty(result.Files);
    }

    [Fact]
    public void GHM011_MissingArgument() => Assert.Contains("'planes'", Single("""
        [Block("planes")]
        [Input("x")]
        [Conv("a", Out = "planes")]
        public sealed class B;

        [Network("n")]
        [Input("image", Channels = 3)]
        [Stage("s", nameof(B), Count = 2)]
        public sealed partial class Net;
        """, "GHM011", "Stage(\"s\"").GetMessage());

    [Fact]
    public void GHM012_NetworkWithoutInput() => Single("""
        [Network("n")]
        [Conv("a", Out = 8)]
        public sealed partial class Net;
        """, "GHM012", "Network(\"n\")");

    [Fact]
    public void GHM013_NestedType() => Single("""
        public static class Outer
        {
            [Network("n")]
            [Input("image", Channels = 3)]
            [Conv("a", Out = 8)]
            public sealed partial class Net;
        }
        """, "GHM013", "Network(\"n\")");

    [Fact]
    public void GHM014_BatchNormNotAfterConvolution() => Assert.Contains("folded", Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8, Relu = true)]
        [BatchNorm("bn")]
        public sealed partial class Net;
        """, "GHM014", "BatchNorm(\"bn\")").GetMessage());

    [Fact]
    public void GHM014_UpsampleNotFeedingAnAdd() => Single("""
        [Network("n")]
        [Input("image", Channels = 3)]
        [Conv("a", Out = 8, Stride = 2)]
        [Upsample("up", "image")]
        public sealed partial class Net;
        """, "GHM014", "Upsample(\"up\"");

    [Fact]
    public void GHM015_FrozenPathNamesNothing() => Assert.Contains("'stage.2'", Single("""
        [Block]
        [Input("x")]
        [Conv("conv", Out = 8, Kernel = 3, Padding = 1)]
        [BatchNorm("bn"), Relu]
        public sealed class B;

        [Network("n", Frozen = "stem, stage.2")]
        [Input("image", Channels = 3)]
        [Conv("stem", Out = 8)]
        [Stage("stage", nameof(B), Count = 2)]
        public sealed partial class Net;
        """, "GHM015", "Network(\"n\"").GetMessage());

    [Fact]
    public void GHM015_FrozenPathIsNotASegmentPrefix() => Single("""
        [Network("n", Frozen = "ste")]
        [Input("image", Channels = 3)]
        [Conv("stem", Out = 8)]
        public sealed partial class Net;
        """, "GHM015", "Network(\"n\"");

    [Fact]
    public void NormEvalFalse_WithTrainedBatchNorms_IsAccepted_AndTrainsThemWithBatchStatistics()
    {
        // Formerly GHM016: batch norms trained with batch statistics, one of them shared by two applications.
        GeneratorHarness.Result result = GeneratorHarness.Run(Header + """
            [Block]
            [Input("x")]
            [Conv("conv", Out = 8, Kernel = 3, Padding = 1)]
            [BatchNorm("bn"), Relu("out")]
            [Output("y", "out")]
            public sealed class Head;

            [Network("n", NormEval = false)]
            [Input("image", Channels = 3)]
            [Conv("c", Out = 8)]
            [BatchNorm("bn")]
            [Conv("d", Out = 8, Kernel = 3, Stride = 2, Padding = 1)]
            [Shared("head", nameof(Head), From = "bn, d")]
            [Output("a", "head.bn.y"), Output("b", "head.d.y")]
            public sealed partial class Net;
            """);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
        string training = result.Files.Single(f => f.Key.EndsWith("Training.g.cs", StringComparison.Ordinal)).Value;
        // Two batch norms with batch statistics, three applications (the shared one twice).
        Assert.Equal(3, training.Split("b.BatchNormTraining(").Length - 1);
        Assert.Equal(3, training.Split("b.BatchNormTrainingBackward(").Length - 1);
        Assert.Contains("_norms[1].UpdateRunningStatistics(b, _mean[2], _variance[2]", training);
        Assert.Contains("accumulate: true); // d head.bn.conv through head.bn", training);
    }

    [Fact]
    public void NormEvalFalse_WithOnlyFrozenBatchNorms_IsAccepted()
    {
        GeneratorHarness.Result result = GeneratorHarness.Run(Header + """
            [Network("n", NormEval = false, Frozen = "bn")]
            [Input("image", Channels = 3)]
            [Conv("c", Out = 8)]
            [BatchNorm("bn")]
            public sealed partial class Net;
            """);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
    }

    [Fact]
    public void EveryDescriptorIsTestedAndTracked()
    {
        string unshipped = File.ReadAllText(Path.Combine(GeneratorHarness.RepositoryRoot(), "generators", "GhmGen.Generators", "AnalyzerReleases.Unshipped.md"));
        string tests = File.ReadAllText(Path.Combine(GeneratorHarness.RepositoryRoot(), "tests", "GhmGen.Generators.Tests", "DiagnosticTests.cs"));
        foreach (string id in Diagnostics.DiagnosticDescriptors.ById.Keys)
        {
            Assert.Contains(id + " |", unshipped);
            Assert.Contains($"void {id}_", tests);
        }
    }
}
