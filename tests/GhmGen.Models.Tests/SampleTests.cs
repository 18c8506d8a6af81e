using GhmGen.Detection;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Models.Tests;

/// <summary>
/// samples/MyDetector: its one-line declaration (compiled into this project, with RetinaNet read
/// from GhmGen.Models' metadata as a package user's build does) is the detector the README and the
/// sample say it is, and README.md shows the sample's code as it is.
/// </summary>
public sealed class SampleTests
{
    [Fact]
    public void SampleDeclaration_IsAThreeClassRetinaNetGhmR50()
    {
        ModelInfo model = ModelInfo.For<MyApp.MyDetector>();
        Assert.Equal("my-detector", model.Name);
        Assert.Equal(3, model.Head.Classes);
        Assert.Equal([8, 16, 32, 64, 128], model.Head.Levels.Select(l => l.Stride));
        // The published R-50 detector with 80 classes, less the classification conv's 9 * 77 * (256 * 9 + 1).
        ModelInfo r50 = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        Assert.Equal(r50.TotalParameters - 9 * 77 * (256 * 9 + 1), model.TotalParameters);
        // Frozen as mmdetection's frozen_stages=1: the same keys trained as the published detector's, the classifier aside.
        Assert.Equal(r50.TrainedKeys, model.TrainedKeys);
        INetwork network = model.Create();
        Assert.Contains(network.State, t => t.Key == "bbox_head.retina_cls.weight" && t.Shape.SequenceEqual([27, 256, 3, 3]));
    }

    [Theory]
    [InlineData("sample-declaration", "MyDetector.cs")]
    [InlineData("sample-program", "Program.cs")]
    public void Readme_ShowsTheSampleAsItIs(string marker, string file)
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "GhmGen.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("GhmGen.sln not found");
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int at = readme.IndexOf($"<!-- README example: {marker} -->", StringComparison.Ordinal);
        Assert.True(at >= 0, $"README has no '{marker}' example");
        int start = readme.IndexOf("```csharp\n", at, StringComparison.Ordinal) + "```csharp\n".Length;
        string shown = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Equal(File.ReadAllText(Path.Combine(root, "samples", "MyDetector", file)), shown);
    }
}
