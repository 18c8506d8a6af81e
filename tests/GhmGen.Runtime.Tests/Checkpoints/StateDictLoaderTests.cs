using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>Loading checkpoint tensors into a network's state by key.</summary>
public sealed class StateDictLoaderTests
{
    [Theory]
    [InlineData("mmdet_like_zip.pth")]
    [InlineData("mmdet_like_legacy.pth")]
    [InlineData("bare_legacy.pth")]
    public void Strict_load_fills_every_tensor_with_pytorch_values(string file)
    {
        TestNetwork network = TestNetwork.MmdetLike();
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf(file));

        LoadReport report = StateDictLoader.Load(network, checkpoint);

        Assert.True(report.IsComplete);
        Assert.Equal(network.State.Count, report.Loaded.Count);
        JsonElement expected = CheckpointFixtures.Expected("mmdet_like");
        foreach ((CheckpointFixtures.ExpectedTensor want, StateTensor got) in CheckpointFixtures.ExpectedTensors(expected).Zip(network.State))
        {
            if (want.DType == "int64") Assert.Equal(CheckpointFixtures.IntValues(want.Values), got.Int64Data);
            else Assert.Equal(CheckpointFixtures.FloatValues(want.Values), got.Data);
        }
        StateTensor tracked = network.State.Single(s => s.Key == "backbone.bn1.num_batches_tracked");
        Assert.Equal([1234L], tracked.Int64Data);
        Assert.Empty(tracked.Shape);
        Assert.Equal(30, network.State.Single(s => s.Key == "bbox_head.loss_cls.acc_sum").Data.Length);
    }

    private static TestNetwork MismatchedNetwork() => new(
        "mismatched",
        new StateTensor("backbone.conv1.weight", [4, 3, 3, 3], StateKind.Parameter),
        new StateTensor("backbone.bn1.weight", [5], StateKind.Parameter), // checkpoint has [4]
        new StateTensor("backbone.bn1.num_batches_tracked", [], StateKind.Buffer, StateElementType.Int64),
        new StateTensor("bbox_head.loss_cls.edges", [31], StateKind.Buffer, StateElementType.Int64), // float32 in file
        new StateTensor("neck.fpn_convs.0.conv.weight", [4, 4, 3, 3], StateKind.Parameter)); // not in file

    [Fact]
    public void Strict_load_reports_every_problem_in_one_exception_and_changes_nothing()
    {
        TestNetwork network = MismatchedNetwork();
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_zip.pth"));

        var error = Assert.Throws<CheckpointMismatchException>(() => StateDictLoader.Load(network, checkpoint));

        Assert.Contains("checkpoint 'mmdet_like_zip.pth' does not fit network 'mismatched'", error.Message);
        Assert.Contains("missing in checkpoint: neck.fpn_convs.0.conv.weight", error.Message);
        Assert.Contains("unexpected in checkpoint: backbone.bn1.bias", error.Message);
        // 10 unexpected keys: the message names the first 5, the report has them all.
        Assert.Contains("  ... and 5 more unexpected", error.Message);
        Assert.Equal(10, error.Report.Unexpected.Count);
        Assert.Contains("bbox_head.loss_bbox.acc_sum", error.Report.Unexpected);
        Assert.Contains("mismatched: backbone.bn1.weight: checkpoint has float32 [4], network expects float32 [5]", error.Message);
        Assert.Contains("mismatched: bbox_head.loss_cls.edges: checkpoint has float32 [31], network expects int64 [31]", error.Message);
        Assert.Equal(["neck.fpn_convs.0.conv.weight"], error.Report.Missing);
        Assert.Equal(2, error.Report.Mismatched.Count);
        Assert.All(network.State[0].Data, v => Assert.Equal(0f, v));
        Assert.Equal([0L], network.State[2].Int64Data);
    }

    [Fact]
    public void Mismatch_message_names_the_first_keys_of_each_kind_and_the_report_keeps_all()
    {
        // 20 keys the checkpoint lacks: the message names 5 and counts the rest.
        StateTensor[] lacking = Enumerable.Range(0, 20)
            .Select(i => new StateTensor($"neck.extra.{i}.weight", [4], StateKind.Parameter)).ToArray();
        var network = new TestNetwork("bigger", [.. TestNetwork.MmdetLike().State, .. lacking]);
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_zip.pth"));

        var error = Assert.Throws<CheckpointMismatchException>(() => StateDictLoader.Load(network, checkpoint));

        string[] lines = error.Message.Split(Environment.NewLine);
        Assert.Equal($"checkpoint 'mmdet_like_zip.pth' does not fit network 'bigger': {network.State.Count - 20} loaded, 20 missing, 0 unexpected, 0 mismatched", lines[0]);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"  missing in checkpoint: neck.extra.{i}.weight"), lines[1..6]);
        Assert.Equal("  ... and 15 more missing", lines[6]);
        Assert.Equal(7, lines.Length);
        Assert.Equal(lacking.Select(t => t.Key), error.Report.Missing);
        Assert.Equal("mmdet_like_zip.pth", error.FileName);
        Assert.Equal("bigger", error.NetworkName);
        Assert.Equal(21, error.Report.Describe().Split(Environment.NewLine).Length);
    }

    [Fact]
    public void Non_strict_load_fills_what_matches_and_reports_the_rest()
    {
        TestNetwork network = MismatchedNetwork();
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_legacy.pth"));

        LoadReport report = StateDictLoader.Load(network, checkpoint, strict: false);

        Assert.Equal(["backbone.conv1.weight", "backbone.bn1.num_batches_tracked"], report.Loaded);
        Assert.Equal(["neck.fpn_convs.0.conv.weight"], report.Missing);
        Assert.Equal(["backbone.bn1.weight", "bbox_head.loss_cls.edges"], report.Mismatched.Select(m => m.Key));
        int checkpointKeys = checkpoint.Tensors.Count;
        Assert.Equal(checkpointKeys - 4, report.Unexpected.Count);
        Assert.Equal(checkpoint.Find("backbone.conv1.weight")!.ReadFloat32(), network.State[0].Data);
        Assert.Equal([1234L], network.State[2].Int64Data);
        Assert.All(network.State[1].Data, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void DataParallel_module_prefix_is_ignored()
    {
        using TorchCheckpoint source = TorchCheckpoint.Read(CheckpointFixtures.PathOf("mmdet_like_zip.pth"));
        TestNetwork original = TestNetwork.MmdetLike();
        StateDictLoader.Load(original, source);
        var prefixed = new TestNetwork("prefixed", original.State.Select(s =>
        {
            var copy = new StateTensor("module." + s.Key, [.. s.Shape], s.Kind, s.ElementType);
            s.Data.CopyTo(copy.Data);
            s.Int64Data.CopyTo(copy.Int64Data);
            return copy;
        }).ToArray());
        string path = Path.Combine(Path.GetTempPath(), $"ghm-prefixed-{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, prefixed);
            using TorchCheckpoint checkpoint = TorchCheckpoint.Read(path);
            TestNetwork target = TestNetwork.MmdetLike();
            Assert.True(StateDictLoader.Load(target, checkpoint).IsComplete);
            Assert.Equal(original.State[0].Data, target.State[0].Data);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
