using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace GhmGen.Generators.Tests;

/// <summary>
/// Blocks compiled into a referenced assembly (as GhmGen.Models ships them in its package) are
/// read from its metadata: a network declared in another project expands them exactly as if they
/// were its own, and its mistakes are reported at its own attribute.
/// </summary>
public class ReferencedBlockTests
{
    private const string MyDetector = """
        using GhmGen.Description;
        using GhmGen.Models.Blocks;

        namespace MyApp;

        [Network("my-detector", Block = nameof(RetinaNet), Args = "classes = 3")]
        public sealed partial class MyDetector;
        """;

    /// <summary>GhmGen.Models' sources (the blocks and the published detectors) compiled to an assembly image, as its package ships it.</summary>
    private static readonly Lazy<MetadataReference> ModelsAssembly = new(() => Emit("GhmGen.Models", GeneratorHarness.ModelSources()));

    private static MetadataReference Emit(string assemblyName, string[] sources)
    {
        CSharpCompilation library = GeneratorHarness.Compile(sources).WithAssemblyName(assemblyName);
        // The library is built with its own generator run, as `dotnet build` does.
        CSharpGeneratorDriver.Create([new NetworkGenerator().AsSourceGenerator()], parseOptions: GeneratorHarness.ParseOptions)
            .RunGeneratorsAndUpdateCompilation(library, out Compilation built, out ImmutableArray<Diagnostic> diagnostics);
        Assert.Empty(diagnostics);
        using var image = new MemoryStream();
        Microsoft.CodeAnalysis.Emit.EmitResult result = built.Emit(image);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        return MetadataReference.CreateFromImage(image.ToArray());
    }

    private static GeneratorHarness.Result RunWithModels(params string[] sources) =>
        GeneratorHarness.Run(GeneratorHarness.Compile(sources).AddReferences(ModelsAssembly.Value));

    [Fact]
    public void NetworkOfAReferencedBlock_GeneratesWhatTheSameBlocksInSourceGenerate()
    {
        GeneratorHarness.Result referenced = RunWithModels(MyDetector);
        Assert.Empty(referenced.GeneratorDiagnostics);
        Assert.Empty(referenced.CompileErrors);

        GeneratorHarness.Result inSource = GeneratorHarness.Run([.. GeneratorHarness.ModelSources(), MyDetector]);
        Assert.Empty(inSource.GeneratorDiagnostics);
        foreach (string file in new[] { "MyDetector.Network.g.cs", "MyDetector.Training.g.cs", "MyDetector.Descriptor.g.cs" })
            Assert.Equal(inSource.Files[file], referenced.Files[file]);
        // Only the user's network is generated here: the package's own detectors are compiled in it.
        Assert.Equal(3, referenced.Files.Count);
        // classes = 3: the classification conv has 9 * 3 outputs.
        Assert.Contains("\"bbox_head.retina_cls\", new global::GhmGen.Backends.ConvSpec(256, 27, 3, 1, 1, 1)", referenced.Files["MyDetector.Network.g.cs"]);
    }

    [Fact]
    public void ErrorInsideAReferencedBlock_IsReportedAtTheNetworkAttribute()
    {
        string source = MyDetector.Replace("classes = 3", "classes = 0");
        GeneratorHarness.Result result = RunWithModels(source);
        Diagnostic d = Assert.Single(result.GeneratorDiagnostics);
        Assert.Equal("GHM004", d.Id);
        Assert.Equal(source.IndexOf("Network(\"my-detector\"", StringComparison.Ordinal), d.Location.SourceSpan.Start);
        Assert.Equal("Source0.cs", d.Location.GetLineSpan().Path);
        Assert.Empty(result.Files);
    }

    [Fact]
    public void UnknownArgumentOfAReferencedBlock_IsReportedAtTheNetworkAttribute()
    {
        string source = MyDetector.Replace("classes = 3", "clases = 3");
        Diagnostic d = Assert.Single(RunWithModels(source).GeneratorDiagnostics);
        Assert.Equal("GHM010", d.Id);
        Assert.Contains("clases", d.GetMessage());
        Assert.Equal(source.IndexOf("Network(\"my-detector\"", StringComparison.Ordinal), d.Location.SourceSpan.Start);
    }

    [Fact]
    public void ReferencedBlocksCompose_WithTheUsersOwnLayers()
    {
        // The demo's layout with the package's blocks: a user's multi-attribute network.
        const string source = """
            using GhmGen.Description;
            using GhmGen.Models.Blocks;

            namespace MyApp;

            [Network("small")]
            [Input("image", Channels = 3)]
            [Use("backbone", nameof(ResNet18), Args = "width = 16")]
            [Use("neck", nameof(FpnAnyInput), From = "backbone.c3, backbone.c4, backbone.c5", Args = "channels = 32, in3 = 32, in4 = 64, in5 = 128")]
            [Shared("bbox_head", nameof(RetinaHead), From = "neck.p3, neck.p4, neck.p5, neck.p6, neck.p7", Part = "head", Args = "classes = 2, channels = 32, convs = 1")]
            [Output("cls_p3", "bbox_head.p3.cls"), Output("reg_p3", "bbox_head.p3.reg")]
            public sealed partial class Small;
            """;
        GeneratorHarness.Result result = RunWithModels(source);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Empty(result.CompileErrors);
        Assert.Contains("Small.Network.g.cs", result.Files.Keys);
    }

    [Fact]
    public void BlockOfTheCompilation_WinsOverAReferencedBlockOfTheSameName()
    {
        // A local RetinaNet of one conv: the network is that, not the package's detector.
        const string source = """
            using GhmGen.Description;

            namespace MyApp;

            [Block("classes = 1")]
            [Input("x", Channels = 3)]
            [Conv("only", Out = "classes", Kernel = 1, Bias = true)]
            [Output("cls_p3", "only")]
            public sealed class RetinaNet;

            [Network("mine", Block = nameof(RetinaNet), Args = "classes = 2")]
            public sealed partial class Mine;
            """;
        GeneratorHarness.Result result = RunWithModels(source);
        Assert.Empty(result.GeneratorDiagnostics);
        Assert.Contains("public const long Total = 8;", result.Files["Mine.Network.g.cs"]); // 3 * 2 + 2
    }

    [Fact]
    public void InternalBlockOfAReferencedAssembly_IsNotVisible()
    {
        MetadataReference library = Emit("Lib", ["""
            using GhmGen.Description;
            namespace Lib;
            [Block]
            [Input("x", Channels = 3)]
            [Conv("c", Out = 4, Kernel = 1)]
            [Output("y", "c")]
            internal sealed class Hidden;
            """]);
        const string source = """
            using GhmGen.Description;
            namespace MyApp;
            [Network("n", Block = "Hidden")]
            public sealed partial class N;
            """;
        GeneratorHarness.Result result = GeneratorHarness.Run(GeneratorHarness.Compile(source).AddReferences(library));
        Assert.Equal("GHM006", Assert.Single(result.GeneratorDiagnostics).Id);
    }

    [Fact]
    public void UnrelatedEdit_LeavesStepsCached_WithReferencedBlocks()
    {
        CSharpCompilation compilation = GeneratorHarness.Compile(MyDetector, "namespace Other; public class Unrelated { public int A; }")
            .AddReferences(ModelsAssembly.Value);
        GeneratorDriver driver = GeneratorHarness.CreateDriver().RunGenerators(compilation);
        SyntaxTree old = compilation.SyntaxTrees.Last();
        SyntaxTree edited = CSharpSyntaxTree.ParseText("namespace Other; public class Unrelated { public int A; public int B; }", GeneratorHarness.ParseOptions, path: old.FilePath);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, edited));

        GeneratorHarness.AssertStepsCached(driver.GetRunResult().Results.Single(), NetworkGenerator.ReferencedBlocksStep,
            NetworkGenerator.AllBlocksStep, NetworkGenerator.ExpandStep, NetworkGenerator.PlanStep, NetworkGenerator.ModelsStep);
    }
}
