using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Layers;
using GhmGen.Losses;

namespace GhmGen.Models.Tests;

/// <summary>The GHM loss state lives in the network's buffers: trained, saved and loaded with the weights.</summary>
public class GhmStateTests
{
    [Fact]
    public void NewNetwork_HasMmdetectionEdges()
    {
        INetwork network = ModelRegistry.Get("retinanet-ghm-r50-fpn").Create();
        float[] cls = network.State.Single(t => t.Key == GhmLossState.ClassificationEdgesKey).Data;
        float[] box = network.State.Single(t => t.Key == GhmLossState.BoxEdgesKey).Data;
        Assert.Equal(Enumerable.Range(0, 30).Select(k => k / 30f), cls[..30]);
        Assert.Equal(1f + 1e-6f, cls[30]);
        Assert.Equal(Enumerable.Range(0, 10).Select(k => k / 10f), box[..10]);
        Assert.Equal(1000f, box[10]);
    }

    [Fact]
    public void AccSum_UpdatedByTraining_SurvivesCheckpointRoundTrip()
    {
        ModelInfo model = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        INetwork network = model.Create();
        GhmLosses losses = GhmLossState.CreateLosses(network);

        // One image of 64x64: five levels of 8x8, 4x4, 2x2, 1x1, 1x1 cells.
        FeatureSize[] sizes = AnchorGenerator.FeatureSizes(64, 64);
        float[] anchors = AnchorGenerator.AllAnchors(sizes);
        int[] counts = sizes.Select(s => s.Height * s.Width * 9).ToArray();
        var random = new Random(3);
        float[][] cls = counts.Select(c => Enumerable.Range(0, c * 80).Select(_ => (float)(random.NextDouble() * 6 - 5)).ToArray()).ToArray();
        float[][] box = counts.Select(c => Enumerable.Range(0, c * 4).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray()).ToArray();
        RetinaTargets targets = RetinaTargets.Build(anchors, counts, [[8, 8, 40, 48]], [[3]]);
        losses.Compute(cls, box, targets);

        float[] accCls = network.State.Single(t => t.Key == GhmLossState.ClassificationAccSumKey).Data;
        float[] accBox = network.State.Single(t => t.Key == GhmLossState.BoxAccSumKey).Data;
        Assert.True(accCls.Sum() > 0 && accBox.Sum() > 0, "training did not update the network's buffers");

        string path = Path.Combine(Path.GetTempPath(), $"ghm-state-{Guid.NewGuid():N}.pth");
        try
        {
            TorchCheckpoint.Write(path, network);
            INetwork reloaded = model.Create();
            using (TorchCheckpoint checkpoint = TorchCheckpoint.Read(path))
                StateDictLoader.Load(reloaded, checkpoint);
            Assert.Equal(accCls, reloaded.State.Single(t => t.Key == GhmLossState.ClassificationAccSumKey).Data);
            Assert.Equal(accBox, reloaded.State.Single(t => t.Key == GhmLossState.BoxAccSumKey).Data);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
