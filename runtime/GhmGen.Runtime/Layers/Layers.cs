using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>A convolution layer of a generated network: its fixed arguments and its weights.</summary>
public sealed class Conv2d
{
    /// <summary>Creates the layer with zeroed weight (and bias) tensors keyed under <paramref name="key"/>.</summary>
    public Conv2d(string key, ConvSpec spec, bool bias)
    {
        Key = key;
        Spec = spec;
        Weight = new StateTensor(key + ".weight", [spec.OutChannels, spec.InChannels / spec.Groups, spec.Kernel, spec.Kernel], StateKind.Parameter, role: StateRole.ConvWeight);
        Bias = bias ? new StateTensor(key + ".bias", [spec.OutChannels], StateKind.Parameter, role: StateRole.ConvBias) : null;
    }

    /// <summary>Checkpoint key prefix, e.g. <c>backbone.conv1</c>.</summary>
    public string Key { get; }

    /// <summary>Channels, kernel, stride, padding and groups.</summary>
    public ConvSpec Spec { get; }

    /// <summary>[out, in/groups, k, k].</summary>
    public StateTensor Weight { get; }

    /// <summary>[out], or null when the convolution has no bias.</summary>
    public StateTensor? Bias { get; }
}

/// <summary>A batch-norm layer of a generated network (eps 1e-5); used frozen, with running statistics.</summary>
public sealed class BatchNorm2d
{
    /// <summary>Creates the layer with its five state tensors keyed under <paramref name="key"/>.</summary>
    public BatchNorm2d(string key, int channels)
    {
        Key = key;
        Channels = channels;
        Weight = new StateTensor(key + ".weight", [channels], StateKind.Parameter, role: StateRole.BatchNormWeight);
        Bias = new StateTensor(key + ".bias", [channels], StateKind.Parameter, role: StateRole.BatchNormBias);
        RunningMean = new StateTensor(key + ".running_mean", [channels], StateKind.Buffer, role: StateRole.BatchNormRunningMean);
        RunningVar = new StateTensor(key + ".running_var", [channels], StateKind.Buffer, role: StateRole.BatchNormRunningVar);
        NumBatchesTracked = new StateTensor(key + ".num_batches_tracked", [], StateKind.Buffer, StateElementType.Int64, StateRole.BatchNormBatchesTracked);
        Weight.Data.AsSpan().Fill(1f);
        RunningVar.Data.AsSpan().Fill(1f);
    }

    /// <summary>Epsilon added to the variance.</summary>
    public const double Epsilon = 1e-5;

    /// <summary>Checkpoint key prefix, e.g. <c>backbone.bn1</c>.</summary>
    public string Key { get; }

    /// <summary>Number of channels.</summary>
    public int Channels { get; }

    /// <summary>Scale (gamma).</summary>
    public StateTensor Weight { get; }

    /// <summary>Shift (beta).</summary>
    public StateTensor Bias { get; }

    /// <summary>Running mean.</summary>
    public StateTensor RunningMean { get; }

    /// <summary>Running variance.</summary>
    public StateTensor RunningVar { get; }

    /// <summary>PyTorch's int64 step counter.</summary>
    public StateTensor NumBatchesTracked { get; }
}

/// <summary>The shape of one value of a network for a given input size.</summary>
/// <param name="Name">The value's name (its layer's key, or a block output).</param>
/// <param name="Channels">Channels.</param>
/// <param name="Height">Height.</param>
/// <param name="Width">Width.</param>
public readonly record struct LayerShape(string Name, int Channels, int Height, int Width)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Channels}x{Height}x{Width}";
}

/// <summary>One row of a network's description table.</summary>
/// <param name="Name">The node's output name.</param>
/// <param name="Operation">What it computes, e.g. <c>conv 3x3/2 64->128 g32</c>.</param>
/// <param name="Inputs">The values it reads.</param>
/// <param name="Parameters">Learnable parameters it owns (0 for repeated applications of shared weights).</param>
public readonly record struct LayerInfo(string Name, string Operation, string Inputs, long Parameters);
