using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>Turns a convolution (and the frozen batch norm after it) into a backend's prepared convolution.</summary>
public static class ConvPreparation
{
    /// <summary>
    /// Copies the convolution's weights, folds <paramref name="batchNorm"/> into them when given
    /// (running statistics, eps 1e-5), and hands them to <paramref name="backend"/>.
    /// </summary>
    public static IPreparedConv Prepare(IBackend backend, Conv2d conv, BatchNorm2d? batchNorm)
    {
        float[]? scratch = null;
        return Prepare(backend, conv, batchNorm, ref scratch);
    }

    /// <summary>
    /// As <see cref="Prepare(IBackend, Conv2d, BatchNorm2d?)"/>, folding into <paramref name="scratch"/>
    /// (grown as needed and kept for the next call) instead of a new copy per convolution: preparing
    /// a whole network then leaves no weight-sized garbage behind (backends copy what they keep).
    /// </summary>
    public static IPreparedConv Prepare(IBackend backend, Conv2d conv, BatchNorm2d? batchNorm, ref float[]? scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(conv);
        if (batchNorm is null)
            return backend.PrepareConv(conv.Spec, conv.Weight.Data, conv.Bias is { } b ? b.Data : ReadOnlySpan<float>.Empty);
        int weights = FoldInto(conv, batchNorm, ref scratch);
        return backend.PrepareConv(conv.Spec, scratch.AsSpan(0, weights), scratch.AsSpan(weights, conv.Spec.OutChannels));
    }

    /// <summary>
    /// Replaces the weights of <paramref name="prepared"/> (made by <see cref="Prepare(IBackend, Conv2d, BatchNorm2d?, ref float[])"/>
    /// from the same layers) with the layers' current host values, folded again: after an optimizer
    /// changed them. Allocates nothing once <paramref name="scratch"/> is large enough.
    /// </summary>
    public static void Update(ITrainingBackend backend, IPreparedConv prepared, Conv2d conv, BatchNorm2d? batchNorm, ref float[]? scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(conv);
        if (batchNorm is null)
        {
            backend.UpdateConv(prepared, conv.Weight.Data, conv.Bias is { } b ? b.Data : ReadOnlySpan<float>.Empty);
            return;
        }
        int weights = FoldInto(conv, batchNorm, ref scratch);
        backend.UpdateConv(prepared, scratch.AsSpan(0, weights), scratch.AsSpan(weights, conv.Spec.OutChannels));
    }

    /// <summary>Writes the folded weight, then the folded bias [out], at the start of <paramref name="scratch"/>; returns the weight's length.</summary>
    private static int FoldInto(Conv2d conv, BatchNorm2d batchNorm, [System.Diagnostics.CodeAnalysis.NotNull] ref float[]? scratch)
    {
        if (batchNorm.Channels != conv.Spec.OutChannels)
            throw new ArgumentException($"batch norm '{batchNorm.Key}' has {batchNorm.Channels} channels; convolution '{conv.Key}' has {conv.Spec.OutChannels}");
        int weights = conv.Weight.Data.Length, outChannels = conv.Spec.OutChannels;
        if (scratch is null || scratch.Length < weights + outChannels) scratch = new float[weights + outChannels];
        Span<float> weight = scratch.AsSpan(0, weights), bias = scratch.AsSpan(weights, outChannels);
        conv.Weight.Data.CopyTo(weight);
        if (conv.Bias is { } cb) cb.Data.CopyTo(bias);
        else bias.Clear();
        BatchNormFolding.Fold(weight, bias, batchNorm.Weight.Data, batchNorm.Bias.Data, batchNorm.RunningMean.Data, batchNorm.RunningVar.Data, BatchNorm2d.Epsilon);
        return weights;
    }
}
