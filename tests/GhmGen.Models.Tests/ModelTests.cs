using System.Globalization;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Models.Tests;

/// <summary>
/// The four generated detectors against docs/MODEL.md §1 and against the state dicts of a PyTorch
/// model with mmdetection's module structure (tools/reference/state_keys.py).
/// </summary>
public class ModelTests
{
    public static TheoryData<string, long, long, long, long, int> Spec => new()
    {
        // name, total, backbone, neck, head, state-dict keys (docs/MODEL.md §1)
        { "retinanet-ghm-r50-fpn", 37_968_692, 23_508_032, 7_997_440, 6_463_220, 358 },
        { "retinanet-ghm-r101-fpn", 56_960_820, 42_500_160, 7_997_440, 6_463_220, 664 },
        { "retinanet-ghm-x101-32x4d-fpn", 56_589_364, 42_128_704, 7_997_440, 6_463_220, 664 },
        { "retinanet-ghm-x101-64x4d-fpn", 95_866_932, 81_406_272, 7_997_440, 6_463_220, 664 },
    };

    [Theory]
    [MemberData(nameof(Spec))]
    public void ParameterCounts_EqualSpec(string name, long total, long backbone, long neck, long head, int keys)
    {
        ModelInfo model = ModelRegistry.Get(name);
        Assert.Equal(total, model.TotalParameters);
        Assert.Equal([("backbone", backbone), ("neck", neck), ("head", head)], model.Parts);
        Assert.Equal(keys, model.StateTensorCount);

        // Recount from the built network's state, independently of the generated constants.
        INetwork network = model.Create();
        Assert.Equal(name, network.Name);
        Assert.Equal(keys, network.State.Count);
        Assert.Equal(total, network.State.Where(t => t.Kind == StateKind.Parameter).Sum(t => t.ElementCount));
        Assert.Equal(backbone, network.State.Where(t => t.Kind == StateKind.Parameter && t.Key.StartsWith("backbone.", StringComparison.Ordinal)).Sum(t => t.ElementCount));
        Assert.Equal(head, network.State.Where(t => t.Kind == StateKind.Parameter && t.Key.StartsWith("bbox_head.", StringComparison.Ordinal)).Sum(t => t.ElementCount));
    }

    [Theory]
    [InlineData("retinanet-ghm-r50-fpn")]
    [InlineData("retinanet-ghm-r101-fpn")]
    [InlineData("retinanet-ghm-x101-32x4d-fpn")]
    [InlineData("retinanet-ghm-x101-64x4d-fpn")]
    public void StateDict_EqualsPyTorchKeysShapesAndOrder(string name)
    {
        string[] expected = File.ReadAllLines(Fixture("StateDicts", name + ".txt")).Where(l => l.Length > 0).ToArray();
        string[] actual = ModelRegistry.Get(name).Create().State.Select(t =>
            $"{t.Key}\t{(t.ElementType == StateElementType.Int64 ? "int64" : "float32")}\t{t.ShapeText}\t{(t.Kind == StateKind.Parameter ? "parameter" : "buffer")}").ToArray();
        Assert.Equal(expected, actual);
    }

    [Theory]
    [InlineData("retinanet-ghm-r50-fpn")]
    [InlineData("retinanet-ghm-r101-fpn")]
    [InlineData("retinanet-ghm-x101-32x4d-fpn")]
    [InlineData("retinanet-ghm-x101-64x4d-fpn")]
    public void TrainedKeys_AreEveryParameterButTheStemAndLayer1(string name)
    {
        // docs/MODEL.md §2: frozen_stages=1 (stem and layer1 not trained), norm_eval=True (BN affine of layers 2-4 trained).
        ModelInfo model = ModelRegistry.Get(name);
        string[] frozen = ["backbone.conv1.", "backbone.bn1.", "backbone.layer1."];
        string[] expected = model.Create().State
            .Where(t => t.Kind == StateKind.Parameter && !frozen.Any(p => t.Key.StartsWith(p, StringComparison.Ordinal)))
            .Select(t => t.Key).ToArray();
        Assert.Equal(expected, model.TrainedKeys);
        Assert.Contains("backbone.layer2.0.bn1.weight", model.TrainedKeys);
        Assert.True(model.TrainingActivationBytes(2, 800, 1216) > 0);
    }

    [Fact]
    public void FeatureSizes_At800x1216_AreSpecs()
    {
        // docs/MODEL.md §2: (100,152), (50,76), (25,38), (13,19), (7,10): 182,403 anchors.
        LayerShape[] outputs = RetinaNetGhmR50Fpn.OutputsFor(800, 1216);
        Assert.Equal(["cls_p3", "reg_p3", "cls_p4", "reg_p4", "cls_p5", "reg_p5", "cls_p6", "reg_p6", "cls_p7", "reg_p7"], outputs.Select(o => o.Name));
        (int, int)[] sizes = outputs.Where((_, i) => i % 2 == 0).Select(o => (o.Height, o.Width)).ToArray();
        Assert.Equal([(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)], sizes);
        Assert.All(outputs.Where((_, i) => i % 2 == 0), o => Assert.Equal(720, o.Channels));
        Assert.All(outputs.Where((_, i) => i % 2 == 1), o => Assert.Equal(36, o.Channels));
        Assert.Equal(182_403, sizes.Sum(s => s.Item1 * s.Item2 * 9));
        Assert.Equal(49_104, RetinaNetGhmR50Fpn.OutputsFor(512, 512).Where((_, i) => i % 2 == 0).Sum(o => o.Height * o.Width * 9));
    }

    [Theory]
    [InlineData("retinanet-ghm-r50-fpn")]
    [InlineData("retinanet-ghm-r101-fpn")]
    [InlineData("retinanet-ghm-x101-32x4d-fpn")]
    [InlineData("retinanet-ghm-x101-64x4d-fpn")]
    public void MultiplyAccumulates_EqualPyTorchHookCount(string name)
    {
        // Counted in PyTorch with forward hooks on every Conv2d (tools/reference/state_keys.py).
        foreach (string line in File.ReadAllLines(Fixture("StateDicts", name + ".macs.txt")).Where(l => l.Length > 0))
        {
            string[] parts = line.Split('\t');
            int[] hw = parts[0].Split('x').Select(int.Parse).ToArray();
            Assert.Equal(long.Parse(parts[1], CultureInfo.InvariantCulture), ModelRegistry.Get(name).MultiplyAccumulates(hw[0], hw[1]));
        }
    }

    [Fact]
    public void TooSmallInput_IsRejectedWithTheModelName()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RetinaNetGhmR50Fpn.OutputShapes(0, 64));
        Assert.Contains("0x64", e.Message);
    }

    [Fact]
    public void UnknownModel_ListsKnownNames()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Get("retinanet-r50"));
        Assert.Contains("retinanet-ghm-r50-fpn", e.Message);
    }

    [Fact]
    public void DescribeTable_ListsEveryLayerWithShapes()
    {
        string table = RetinaNetGhmR50Fpn.DescribeTable(800, 1216);
        Assert.Contains("backbone.conv1", table);
        Assert.Contains("64x400x608", table);
        Assert.Contains("bbox_head.p7.cls", table);
        Assert.Equal(RetinaNetGhmR50Fpn.Description.Count + 3, table.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    internal static string Fixture(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "Fixtures", .. parts]);
}
