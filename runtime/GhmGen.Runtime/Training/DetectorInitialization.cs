// mmdetection's initialisation of a RetinaNet for training (docs/TRAINING.md "Initialisation"):
//   backbone.*  convolutions Kaiming normal (fan_out, ReLU gain: std = sqrt(2 / (out * k * k))),
//               batch norms weight 1 bias 0, and with zero_init_residual (mmdet's default) the last
//               norm of each residual block weight 0 (bn3 of a bottleneck, bn2 of a basic block,
//               the block that has no bn3); running mean 0, variance 1
//   neck.*      Xavier uniform (gain 1: bound = sqrt(6 / (fan_in + fan_out))), bias 0
//   otherwise   (the head) Normal(0, 0.01), bias 0; retina_cls.bias = -log((1 - 0.01) / 0.01)
//   GHM buffers edges as mmdetection builds them, acc_sum 0.
// Random numbers come from a seeded splitmix64 stream per key (Box-Muller for normals), so the
// same seed gives the same weights on every machine. --pretrained then overwrites the backbone
// with a torchvision classification checkpoint (conv1.weight, layer1.0.conv1.weight, ...; fc.*
// ignored; num_batches_tracked may be missing and stays 0).
// Tests: tests/GhmGen.Runtime.Tests/Training/DetectorInitializationTests.cs.
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>Initialises a detector's state the way mmdetection does before training, and loads torchvision backbones.</summary>
public static class DetectorInitialization
{
    /// <summary>The classification prior of RetinaNet's <c>retina_cls</c> bias: -log((1 - 0.01) / 0.01).</summary>
    public static readonly float PriorBias = (float)-Math.Log((1 - 0.01) / 0.01);

    /// <summary>Fills every state tensor of <paramref name="network"/> with mmdetection's initial values (seeded).</summary>
    public static void Initialize(INetwork network, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(network);
        IReadOnlyList<StateTensor> state = network.State;
        // Blocks with a third norm are bottlenecks; the others' last norm is bn2 (BasicBlock).
        var bottlenecks = new HashSet<string>(state.Where(t => t.Key.EndsWith(".bn3.weight", StringComparison.Ordinal))
            .Select(t => t.Key[..^".bn3.weight".Length]), StringComparer.Ordinal);
        for (int i = 0; i < state.Count; i++)
        {
            StateTensor t = state[i];
            bool backbone = t.Key.StartsWith("backbone.", StringComparison.Ordinal);
            bool neck = t.Key.StartsWith("neck.", StringComparison.Ordinal);
            switch (t.Role)
            {
                case StateRole.ConvWeight:
                {
                    int outChannels = t.Shape[0], fanIn = t.Shape[1] * t.Shape[2] * t.Shape[3];
                    int fanOut = outChannels * t.Shape[2] * t.Shape[3];
                    if (backbone) Normal(t.Data, Math.Sqrt(2.0 / fanOut), t.Key, seed);
                    else if (neck) Uniform(t.Data, Math.Sqrt(6.0 / (fanIn + fanOut)), t.Key, seed);
                    else Normal(t.Data, 0.01, t.Key, seed);
                    break;
                }
                case StateRole.ConvBias:
                    t.Data.AsSpan().Fill(!backbone && !neck && t.Key.EndsWith("retina_cls.bias", StringComparison.Ordinal) ? PriorBias : 0f);
                    break;
                case StateRole.BatchNormWeight:
                    t.Data.AsSpan().Fill(backbone && IsLastResidualNorm(t.Key, bottlenecks) ? 0f : 1f);
                    break;
                case StateRole.BatchNormBias:
                case StateRole.BatchNormRunningMean:
                    t.Data.AsSpan().Clear();
                    break;
                case StateRole.BatchNormRunningVar:
                    t.Data.AsSpan().Fill(1f);
                    break;
                case StateRole.BatchNormBatchesTracked:
                    t.Int64Data.AsSpan().Clear();
                    break;
                default:
                    // Declared buffers: the GHM edges as mmdetection builds them, everything else 0.
                    if (SeededWeights.RoleOf(t) is SeededRole.GhmcEdges or SeededRole.GhmrEdges) SeededWeights.Fill(t);
                    else if (t.ElementType == StateElementType.Float32) t.Data.AsSpan().Clear();
                    else t.Int64Data.AsSpan().Clear();
                    break;
            }
        }
    }

    /// <summary>
    /// Loads a torchvision-style ResNet/ResNeXt classification checkpoint into the
    /// <c>backbone.</c> tensors of <paramref name="network"/>: every backbone key must be in the
    /// file with its shape (num_batches_tracked may be missing), <c>fc.*</c> is ignored, any other
    /// extra key is an error.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">Keys missing, unexpected or of another shape.</exception>
    public static LoadReport LoadPretrainedBackbone(INetwork network, string path)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(path);
        const string prefix = "backbone.";
        StateTensor[] targets = [.. network.State.Where(t => t.Key.StartsWith(prefix, StringComparison.Ordinal))];
        StateTensor[] renamed = [.. targets.Select(t => new StateTensor(t.Key[prefix.Length..], [.. t.Shape], t.Kind, t.ElementType, t.Role))];
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(path);
        CheckpointTensor[] tensors = [.. checkpoint.Tensors.Where(t => !t.Key.StartsWith("fc.", StringComparison.Ordinal))];
        LoadReport report = StateDictLoader.Load(renamed, tensors, checkpoint.FileName, network.Name + " backbone", strict: false);
        var missing = report.Missing.Where(k => !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).ToArray();
        if (missing.Length > 0 || report.Unexpected.Count > 0 || report.Mismatched.Count > 0)
            throw new CheckpointMismatchException(checkpoint.FileName, network.Name + " backbone",
                new LoadReport(report.Loaded, missing, report.Unexpected, report.Mismatched));
        var loaded = new HashSet<string>(report.Loaded, StringComparer.Ordinal);
        for (int i = 0; i < targets.Length; i++)
        {
            if (!loaded.Contains(renamed[i].Key)) continue;
            if (targets[i].ElementType == StateElementType.Int64) renamed[i].Int64Data.CopyTo(targets[i].Int64Data, 0);
            else renamed[i].Data.CopyTo(targets[i].Data, 0);
        }
        return report;
    }

    // mmdetection's ResNet.init_weights with zero_init_residual: Bottleneck.norm3, BasicBlock.norm2.
    private static bool IsLastResidualNorm(string key, HashSet<string> bottlenecks)
    {
        if (key.EndsWith(".bn3.weight", StringComparison.Ordinal)) return true;
        if (!key.EndsWith(".bn2.weight", StringComparison.Ordinal)) return false;
        string block = key[..^".bn2.weight".Length];
        return block.Contains(".layer", StringComparison.Ordinal) && !bottlenecks.Contains(block);
    }

    // N(0, std^2) by Box-Muller on the key's splitmix64 stream.
    private static void Normal(float[] values, double std, string key, long seed)
    {
        ulong state = SeededWeights.Fnv1a64(key) ^ unchecked((ulong)seed * 0x9E3779B97F4A7C15UL);
        for (int i = 0; i < values.Length; i += 2)
        {
            double u1 = Unit(ref state), u2 = Unit(ref state);
            double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u1)), phi = 2.0 * Math.PI * u2;
            values[i] = (float)(std * r * Math.Cos(phi));
            if (i + 1 < values.Length) values[i + 1] = (float)(std * r * Math.Sin(phi));
        }
    }

    // U(-bound, bound) on the key's splitmix64 stream.
    private static void Uniform(float[] values, double bound, string key, long seed)
    {
        ulong state = SeededWeights.Fnv1a64(key) ^ unchecked((ulong)seed * 0x9E3779B97F4A7C15UL);
        for (int i = 0; i < values.Length; i++) values[i] = (float)(bound * (2.0 * Unit(ref state) - 1.0));
    }

    private static double Unit(ref ulong state)
    {
        state = unchecked(state + 1);
        return (SeededWeights.SplitMix64(state) >> 11) * (1.0 / (1UL << 53));
    }
}
