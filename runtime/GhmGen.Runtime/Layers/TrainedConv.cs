using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// One trained convolution of a training session, with the batch norm folded into it (norm_eval:
/// running statistics, so conv + BN stays one prepared convolution): its prepared weights, the
/// views of its folded weight and bias gradients on the backend, and the host gradients of its
/// trained parameters. Generated training sessions make one per trained convolution.
/// </summary>
public sealed class TrainedConv
{
    /// <summary>
    /// Describes <paramref name="conv"/> (and <paramref name="batchNorm"/>, folded into
    /// <paramref name="prepared"/>) in training. <paramref name="weightGradient"/> holds the folded
    /// weight's gradient (out x in/groups x k x k elements); <paramref name="biasGradient"/> the folded
    /// bias's ([out]), needed when the conv's bias or the batch norm is trained, else null.
    /// </summary>
    public TrainedConv(Conv2d conv, BatchNorm2d? batchNorm, IPreparedConv prepared, bool trainConv, bool trainBatchNorm,
        TensorView weightGradient, TensorView? biasGradient)
    {
        ArgumentNullException.ThrowIfNull(conv);
        ArgumentNullException.ThrowIfNull(prepared);
        if (!trainConv && !trainBatchNorm)
            throw new ArgumentException($"convolution '{conv.Key}' is not trained: nothing of it needs a gradient");
        if (trainBatchNorm && batchNorm is null)
            throw new ArgumentException($"convolution '{conv.Key}' has no batch norm to train", nameof(batchNorm));
        if (batchNorm is not null && batchNorm.Channels != conv.Spec.OutChannels)
            throw new ArgumentException($"batch norm '{batchNorm.Key}' has {batchNorm.Channels} channels; convolution '{conv.Key}' has {conv.Spec.OutChannels}", nameof(batchNorm));
        if (weightGradient.ElementCount != conv.Spec.WeightCount)
            throw new ArgumentException($"weight gradient {weightGradient.ShapeText} of '{conv.Key}' does not hold {conv.Spec.WeightCount} elements", nameof(weightGradient));
        bool needBias = trainConv && conv.Bias is not null || trainBatchNorm;
        if (needBias != biasGradient.HasValue || biasGradient is { } bg && bg.ElementCount != conv.Spec.OutChannels)
            throw new ArgumentException($"'{conv.Key}' needs {(needBias ? $"a bias gradient of {conv.Spec.OutChannels} elements" : "no bias gradient")}", nameof(biasGradient));
        Conv = conv;
        BatchNorm = batchNorm;
        Prepared = prepared;
        WeightGradient = weightGradient;
        BiasGradient = biasGradient;
        Weight = trainConv ? new ParameterGradient(conv.Weight) : null;
        Bias = trainConv && conv.Bias is { } b ? new ParameterGradient(b) : null;
        BatchNormWeight = trainBatchNorm ? new ParameterGradient(batchNorm!.Weight) : null;
        BatchNormBias = trainBatchNorm ? new ParameterGradient(batchNorm!.Bias) : null;
    }

    /// <summary>The convolution.</summary>
    public Conv2d Conv { get; }

    /// <summary>The batch norm folded into it, if any.</summary>
    public BatchNorm2d? BatchNorm { get; }

    /// <summary>The folded weights on the backend.</summary>
    public IPreparedConv Prepared { get; }

    /// <summary>d loss / d folded weight, on the backend (written by <c>Conv2dBackwardWeights</c>).</summary>
    public TensorView WeightGradient { get; }

    /// <summary>d loss / d folded bias, on the backend, or null when no trained parameter needs it.</summary>
    public TensorView? BiasGradient { get; }

    /// <summary>The convolution weight's gradient, or null when the convolution is frozen.</summary>
    public ParameterGradient? Weight { get; }

    /// <summary>The convolution bias's gradient, or null (frozen, or no bias).</summary>
    public ParameterGradient? Bias { get; }

    /// <summary>The batch norm weight's (gamma's) gradient, or null (frozen, or no batch norm).</summary>
    public ParameterGradient? BatchNormWeight { get; }

    /// <summary>The batch norm bias's (beta's) gradient, or null (frozen, or no batch norm).</summary>
    public ParameterGradient? BatchNormBias { get; }

    /// <summary>Host floats <see cref="CollectGradients"/> and <see cref="Refold"/> need as scratch.</summary>
    public int ScratchLength => (int)Conv.Spec.WeightCount + Conv.Spec.OutChannels;

    /// <summary>
    /// Downloads the folded gradients and writes the host gradients of the trained parameters,
    /// unfolding the batch norm (<see cref="BatchNormFolding.UnfoldGradients"/>). Allocates nothing.
    /// </summary>
    public void CollectGradients(IBackend backend, float[] scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(scratch);
        int weights = (int)Conv.Spec.WeightCount, outChannels = Conv.Spec.OutChannels;
        if (BatchNorm is null)
        {
            // Nothing folded: the folded gradients are the gradients.
            backend.Download(WeightGradient, Weight!.Data);
            if (Bias is not null) backend.Download(BiasGradient!.Value, Bias.Data);
            return;
        }
        if (scratch.Length < weights + outChannels)
            throw new ArgumentException($"scratch has {scratch.Length} floats; '{Conv.Key}' needs {weights + outChannels}", nameof(scratch));
        Span<float> dw = scratch.AsSpan(0, weights), db = scratch.AsSpan(weights, outChannels);
        backend.Download(WeightGradient, dw);
        if (BiasGradient is { } bias) backend.Download(bias, db);
        BatchNormFolding.UnfoldGradients(dw, BiasGradient is null ? default : db,
            Conv.Weight.Data, Conv.Bias is { } b ? b.Data : default,
            BatchNorm.Weight.Data, BatchNorm.RunningMean.Data, BatchNorm.RunningVar.Data,
            Weight is { } gw ? gw.Data : default, Bias is { } gb ? gb.Data : default,
            BatchNormWeight is { } gg ? gg.Data : default, BatchNormBias is { } gbeta ? gbeta.Data : default,
            BatchNorm2d.Epsilon);
    }

    /// <summary>Folds the current host weights again and replaces the prepared ones (after an optimizer step). Allocates nothing.</summary>
    public void Refold(ITrainingBackend backend, float[] scratch)
    {
        ArgumentNullException.ThrowIfNull(scratch);
        if (BatchNorm is not null && scratch.Length < ScratchLength)
            throw new ArgumentException($"scratch has {scratch.Length} floats; '{Conv.Key}' needs {ScratchLength}", nameof(scratch));
        float[]? s = scratch;
        ConvPreparation.Update(backend, Prepared, Conv, BatchNorm, ref s);
    }
}
