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
    /// As <see cref="Prepare(IBackend, Conv2d, BatchNorm2d?, ref float[])"/>, for a convolution that training
    /// changes: where the backend can read the weights on demand
    /// (<see cref="ITrainingBackend.PrepareConv(ConvSpec, IConvWeightSource, bool)"/>: the CPU backend), it keeps
    /// no copy of them and folds the layers' current host values each time it packs them, so the host weights
    /// are the network's only copy; elsewhere it is <see cref="Prepare(IBackend, Conv2d, BatchNorm2d?, ref float[])"/>.
    /// <see cref="Update"/> then only tells the backend that they changed. The layers must outlive the result.
    /// </summary>
    public static IPreparedConv PrepareTrained(IBackend backend, Conv2d conv, BatchNorm2d? batchNorm, ref float[]? scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(conv);
        if (backend is ITrainingBackend training
            && training.PrepareConv(conv.Spec, new FoldedWeights(conv, batchNorm), conv.Bias is not null || batchNorm is not null) is { } prepared)
            return prepared;
        return Prepare(backend, conv, batchNorm, ref scratch);
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
        if (backend.MarkWeightsChanged(prepared)) return; // read from the layers when next packed (PrepareTrained)
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
        CheckChannels(conv, batchNorm);
        int weights = conv.Weight.Data.Length, outChannels = conv.Spec.OutChannels;
        if (scratch is null || scratch.Length < weights + outChannels) scratch = new float[weights + outChannels];
        Fold(conv, batchNorm, scratch.AsSpan(0, weights), scratch.AsSpan(weights, outChannels));
        return weights;
    }

    private static void CheckChannels(Conv2d conv, BatchNorm2d batchNorm)
    {
        if (batchNorm.Channels != conv.Spec.OutChannels)
            throw new ArgumentException($"batch norm '{batchNorm.Key}' has {batchNorm.Channels} channels; convolution '{conv.Key}' has {conv.Spec.OutChannels}");
    }

    // The convolution's weight and bias (zeros without one) with the batch norm folded in.
    private static void Fold(Conv2d conv, BatchNorm2d batchNorm, Span<float> weight, Span<float> bias)
    {
        conv.Weight.Data.CopyTo(weight);
        if (conv.Bias is { } cb) cb.Data.CopyTo(bias);
        else bias.Clear();
        BatchNormFolding.Fold(weight, bias, batchNorm.Weight.Data, batchNorm.Bias.Data, batchNorm.RunningMean.Data, batchNorm.RunningVar.Data, BatchNorm2d.Epsilon);
    }

    // The layers' current values, folded as FoldInto folds them (so bitwise the weights Prepare hands over).
    private sealed class FoldedWeights : IConvWeightSource
    {
        private readonly Conv2d conv;
        private readonly BatchNorm2d? batchNorm;

        public FoldedWeights(Conv2d conv, BatchNorm2d? batchNorm)
        {
            if (batchNorm is not null) CheckChannels(conv, batchNorm);
            this.conv = conv;
            this.batchNorm = batchNorm;
        }

        public void ReadWeights(Span<float> weight, Span<float> bias)
        {
            if (batchNorm is not null)
            {
                Fold(conv, batchNorm, weight, bias);
                return;
            }
            conv.Weight.Data.CopyTo(weight);
            if (conv.Bias is { } b) b.Data.CopyTo(bias);
        }
    }
}
