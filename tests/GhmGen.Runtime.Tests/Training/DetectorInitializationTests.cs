using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>
/// mmdetection's training initialisation (Kaiming fan_out for the backbone, Xavier for the neck,
/// N(0, 0.01) and the prior bias for the head, zero_init_residual on a bottleneck's bn3 and a basic block's bn2) checked by its moments
/// and bounds, and torchvision backbones loaded under <c>backbone.</c>.
/// </summary>
public sealed class DetectorInitializationTests
{
    private sealed class SmallDetector : INetwork
    {
        public Conv2d Stem { get; } = new("backbone.conv1", new ConvSpec(3, 64, 7, 2, 3, 1), bias: false);
        public BatchNorm2d StemNorm { get; } = new("backbone.bn1", 64);
        public Conv2d Wide { get; } = new("backbone.layer1.0.conv3", new ConvSpec(64, 256, 1, 1, 0, 1), bias: false);
        public BatchNorm2d Last { get; } = new("backbone.layer1.0.bn3", 256);
        public BatchNorm2d Middle { get; } = new("backbone.layer1.0.bn2", 64); // a bottleneck's: not its last norm
        public BatchNorm2d BasicLast { get; } = new("backbone.layer2.0.bn2", 32); // a basic block's (no bn3): its last norm
        public Conv2d Lateral { get; } = new("neck.lateral_convs.0.conv", new ConvSpec(256, 128, 1, 1, 0, 1), bias: true);
        public Conv2d ClsConv { get; } = new("bbox_head.cls_convs.0.conv", new ConvSpec(128, 128, 3, 1, 1, 1), bias: true);
        public Conv2d RetinaCls { get; } = new("bbox_head.retina_cls", new ConvSpec(128, 18, 3, 1, 1, 1), bias: true);

        public string Name => "small-detector";

        public IReadOnlyList<StateTensor> State => [
            Stem.Weight, StemNorm.Weight, StemNorm.Bias, StemNorm.RunningMean, StemNorm.RunningVar, StemNorm.NumBatchesTracked,
            Wide.Weight, Last.Weight, Last.Bias, Last.RunningMean, Last.RunningVar, Last.NumBatchesTracked,
            Middle.Weight, Middle.Bias, BasicLast.Weight, BasicLast.Bias,
            Lateral.Weight, Lateral.Bias!, ClsConv.Weight, ClsConv.Bias!, RetinaCls.Weight, RetinaCls.Bias!];

        public long ParameterCount => State.Where(t => t.Kind == StateKind.Parameter).Sum(t => t.ElementCount);
    }

    private static (double Mean, double Std) Moments(float[] v)
    {
        double mean = v.Average(x => (double)x);
        return (mean, Math.Sqrt(v.Average(x => (x - mean) * (x - mean))));
    }

    [Fact]
    public void Follows_mmdetections_rules_per_part()
    {
        var net = new SmallDetector();
        foreach (StateTensor t in net.State) { t.Data.AsSpan().Fill(float.NaN); t.Int64Data.AsSpan().Fill(5); }

        DetectorInitialization.Initialize(net, seed: 3);

        // Kaiming normal, fan_out = 64 * 7 * 7: std sqrt(2 / 3136) = 0.02525; 9408 samples give the std within ~2%.
        (double mean, double std) = Moments(net.Stem.Weight.Data);
        Assert.InRange(mean, -0.002, 0.002);
        Assert.InRange(std, 0.02525 * 0.97, 0.02525 * 1.03);
        // 1x1 conv3 fan_out 256: std sqrt(2/256) = 0.0884.
        Assert.InRange(Moments(net.Wide.Weight.Data).Std, 0.0884 * 0.97, 0.0884 * 1.03);
        Assert.All(net.StemNorm.Weight.Data, v => Assert.Equal(1f, v));
        Assert.All(net.Last.Weight.Data, v => Assert.Equal(0f, v)); // zero_init_residual: Bottleneck.norm3
        Assert.All(net.Middle.Weight.Data, v => Assert.Equal(1f, v));
        Assert.All(net.BasicLast.Weight.Data, v => Assert.Equal(0f, v)); // and BasicBlock.norm2
        Assert.All(net.Last.RunningVar.Data, v => Assert.Equal(1f, v));
        Assert.All(net.Last.RunningMean.Data, v => Assert.Equal(0f, v));
        Assert.Equal(0, net.Last.NumBatchesTracked.Int64Data[0]);
        // Xavier uniform: bound sqrt(6 / (256 + 128)) = 0.125, and the samples reach near it.
        Assert.All(net.Lateral.Weight.Data, v => Assert.InRange(v, -0.125f, 0.125f));
        Assert.True(net.Lateral.Weight.Data.Max() > 0.12f && net.Lateral.Weight.Data.Min() < -0.12f);
        Assert.All(net.Lateral.Bias!.Data, v => Assert.Equal(0f, v));
        // Head: N(0, 0.01), bias 0, the prior on retina_cls.
        Assert.InRange(Moments(net.ClsConv.Weight.Data).Std, 0.0097, 0.0103);
        Assert.All(net.ClsConv.Bias!.Data, v => Assert.Equal(0f, v));
        Assert.All(net.RetinaCls.Bias!.Data, v => Assert.Equal(-4.59512f, v, 1e-5f));
    }

    [Fact]
    public void The_same_seed_gives_the_same_weights_and_another_seed_others()
    {
        var a = new SmallDetector();
        var b = new SmallDetector();
        var c = new SmallDetector();
        DetectorInitialization.Initialize(a, seed: 1);
        DetectorInitialization.Initialize(b, seed: 1);
        DetectorInitialization.Initialize(c, seed: 2);
        Assert.Equal(a.Stem.Weight.Data, b.Stem.Weight.Data);
        Assert.NotEqual(a.Stem.Weight.Data, c.Stem.Weight.Data);
    }

    [Fact]
    public void A_torchvision_backbone_loads_under_backbone_and_fc_is_ignored()
    {
        var source = new SmallDetector();
        DetectorInitialization.Initialize(source, seed: 9);
        // torchvision keys: no "backbone." prefix, an fc layer, no num_batches_tracked.
        var state = source.State.Where(t => t.Key.StartsWith("backbone.", StringComparison.Ordinal) && !t.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal))
            .Select(t =>
            {
                var copy = new StateTensor(t.Key["backbone.".Length..], [.. t.Shape], t.Kind, t.ElementType, t.Role);
                t.Data.CopyTo(copy.Data, 0);
                return copy;
            }).ToList();
        var fc = new StateTensor("fc.weight", [10, 256], StateKind.Parameter);
        fc.Data.AsSpan().Fill(7f);
        state.Add(fc);
        string path = Path.Combine(Path.GetTempPath(), $"tv-{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, state);
            var target = new SmallDetector();
            DetectorInitialization.Initialize(target, seed: 1);
            float[] neckBefore = [.. target.Lateral.Weight.Data];

            DetectorInitialization.LoadPretrainedBackbone(target, path);

            Assert.Equal(source.Stem.Weight.Data, target.Stem.Weight.Data);
            Assert.Equal(source.Last.Bias.Data, target.Last.Bias.Data);
            Assert.Equal(neckBefore, target.Lateral.Weight.Data); // only the backbone changes
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_classification_checkpoint_of_another_shape_is_refused_with_the_key()
    {
        var wrong = new StateTensor("conv1.weight", [32, 3, 7, 7], StateKind.Parameter, role: StateRole.ConvWeight);
        string path = Path.Combine(Path.GetTempPath(), $"tv-{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, [wrong]);
            var error = Assert.Throws<CheckpointMismatchException>(() => DetectorInitialization.LoadPretrainedBackbone(new SmallDetector(), path));
            Assert.Contains("conv1.weight", error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
