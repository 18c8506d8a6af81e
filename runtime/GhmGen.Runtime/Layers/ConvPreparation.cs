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
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(conv);
        if (batchNorm is null)
            return backend.PrepareConv(conv.Spec, conv.Weight.Data, conv.Bias is { } b ? b.Data : ReadOnlySpan<float>.Empty);
        if (batchNorm.Channels != conv.Spec.OutChannels)
            throw new ArgumentException($"batch norm '{batchNorm.Key}' has {batchNorm.Channels} channels; convolution '{conv.Key}' has {conv.Spec.OutChannels}");
        float[] weight = (float[])conv.Weight.Data.Clone();
        float[] bias = conv.Bias is { } cb ? (float[])cb.Data.Clone() : new float[conv.Spec.OutChannels];
        BatchNormFolding.Fold(weight, bias, batchNorm.Weight.Data, batchNorm.Bias.Data, batchNorm.RunningMean.Data, batchNorm.RunningVar.Data, BatchNorm2d.Epsilon);
        return backend.PrepareConv(conv.Spec, weight, bias);
    }
}
