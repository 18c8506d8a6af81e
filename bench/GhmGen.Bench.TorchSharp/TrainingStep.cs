using GhmGen.Layers;
using static TorchSharp.torch;

namespace GhmGen.Bench.TorchSharp;

/// <summary>
/// The training step every side_by_side_train.py peer performs (its Python twin is that script's
/// pytorch-eager worker): configs/ghm's optimiser without gradient clipping, and a synthetic loss whose
/// gradient with respect to each head map is a seeded tensor G.
/// </summary>
internal static class TrainingStep
{
    public const double LearningRate = 0.01, Momentum = 0.9, WeightDecay = 1e-4;

    /// <summary>mmdetection's ResNet frozen_stages=1: the stem and layer1 never train (names as in the traced wrapper: <c>net.</c> + state-dict key).</summary>
    public static bool IsTrained(string name)
    {
        string key = name.StartsWith("net.", StringComparison.Ordinal) ? name[4..] : name;
        return !(key.StartsWith("backbone.conv1.", StringComparison.Ordinal) || key.StartsWith("backbone.bn1.", StringComparison.Ordinal)
                 || key.StartsWith("backbone.layer1.", StringComparison.Ordinal));
    }

    /// <summary>
    /// G for each head map [B, 720|36, h, w], in <see cref="WorkerProtocol.HeadOutputNames"/> order: the seeded uniform
    /// of key <c>bench.train.G.{name}</c> on (-1/n, 1/n), n = the map's element count
    /// (<c>SeededWeights.FillUniform(key, span, -1.0 / n, 1.0 / n)</c> = <c>seeded_weights.uniform(key, n, -1 / n, 1 / n)</c>),
    /// so each map contributes a mean-sized term and SGD at lr 0.01 stays stable for many steps.
    /// </summary>
    public static Tensor[] SeededLossWeights(int batch, int height, int width)
    {
        (int H, int W)[] levels = WorkerProtocol.LevelSizes(height, width);
        var weights = new Tensor[WorkerProtocol.HeadOutputNames.Length];
        for (int i = 0; i < weights.Length; i++)
        {
            string name = WorkerProtocol.HeadOutputNames[i];
            int channels = name.StartsWith("cls", StringComparison.Ordinal) ? 720 : 36;
            (int h, int w) = levels[i % 5];
            int n = batch * channels * h * w;
            var values = new float[n];
            SeededWeights.FillUniform($"bench.train.G.{name}", values, -1.0 / n, 1.0 / n);
            weights[i] = tensor(values, [batch, channels, h, w]);
        }
        return weights;
    }
}
