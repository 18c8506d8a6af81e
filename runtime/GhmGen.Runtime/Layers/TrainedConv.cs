using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// One trained convolution of a training session, with the batch norm folded into it (norm_eval:
/// running statistics, so conv + BN stays one prepared convolution): its prepared weights, the
/// views of its folded weight and bias gradients on the backend, and the host gradients of its
/// trained parameters. Generated training sessions make one per trained convolution, with
/// <see cref="TrainedConv(Conv2d, BatchNorm2d?, IPreparedConv, bool, bool, ITrainingBackend)"/>: on a backend
/// whose tensors live in host memory the folded gradients are the host gradients' own arrays, unfolded in
/// place. Not thread-safe; dispose it (its backend memory) after the sessions that use it.
/// </summary>
public sealed class TrainedConv : IDisposable
{
    private readonly DeviceBuffer? _owned;
    // Whether the folded weight (bias) gradient is the host array of Weight (of Bias with nothing folded, or
    // of BatchNormBias: d beta = d folded bias) itself.
    private readonly bool _weightInPlace, _biasInPlace;

    /// <summary>
    /// Describes <paramref name="conv"/> (and <paramref name="batchNorm"/>, folded into
    /// <paramref name="prepared"/>) in training. <paramref name="weightGradient"/> holds the folded
    /// weight's gradient (out x in/groups x k x k elements); <paramref name="biasGradient"/> the folded
    /// bias's ([out]), needed when the conv's bias or the batch norm is trained, else null. The caller
    /// owns the memory of both.
    /// </summary>
    public TrainedConv(Conv2d conv, BatchNorm2d? batchNorm, IPreparedConv prepared, bool trainConv, bool trainBatchNorm,
        TensorView weightGradient, TensorView? biasGradient)
        : this(conv, batchNorm, prepared, trainConv, trainBatchNorm)
    {
        if (weightGradient.ElementCount != conv.Spec.WeightCount)
            throw new ArgumentException($"weight gradient {weightGradient.ShapeText} of '{conv.Key}' does not hold {conv.Spec.WeightCount} elements", nameof(weightGradient));
        bool needBias = NeedsBias(conv, trainConv, trainBatchNorm);
        if (needBias != biasGradient.HasValue || biasGradient is { } bg && bg.ElementCount != conv.Spec.OutChannels)
            throw new ArgumentException($"'{conv.Key}' needs {(needBias ? $"a bias gradient of {conv.Spec.OutChannels} elements" : "no bias gradient")}", nameof(biasGradient));
        WeightGradient = weightGradient;
        BiasGradient = biasGradient;
    }

    /// <summary>
    /// As the other constructor, with the folded gradients' memory made here: where <paramref name="backend"/>
    /// can work in host arrays (<see cref="ITrainingBackend.WrapHost"/>: the CPU and reference backends), the
    /// folded weight gradient is <see cref="Weight"/>'s array and the folded bias gradient that of
    /// <see cref="BatchNormBias"/> (or of <see cref="Bias"/> when nothing is folded), so the backward pass
    /// writes the host gradients directly and <see cref="CollectGradients"/> unfolds them in place; what is
    /// left (a GPU's, a frozen convolution under a trained batch norm) is one buffer of
    /// <paramref name="backend"/>'s, which this object owns.
    /// </summary>
    public TrainedConv(Conv2d conv, BatchNorm2d? batchNorm, IPreparedConv prepared, bool trainConv, bool trainBatchNorm, ITrainingBackend backend)
        : this(conv, batchNorm, prepared, trainConv, trainBatchNorm)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ConvSpec spec = conv.Spec;
        int outChannels = spec.OutChannels;
        DeviceBuffer? weightHost = Weight is { } w ? backend.WrapHost(w.Data) : null;
        ParameterGradient? biasHost = batchNorm is null ? Bias : BatchNormBias;
        bool needBias = NeedsBias(conv, trainConv, trainBatchNorm);
        DeviceBuffer? biasBuffer = needBias && biasHost is not null ? backend.WrapHost(biasHost.Data) : null;
        long rest = (weightHost is null ? spec.WeightCount : 0) + (needBias && biasBuffer is null ? outChannels : 0);
        _owned = rest > 0 ? backend.Allocate(rest) : null;
        _weightInPlace = weightHost is not null;
        _biasInPlace = biasBuffer is not null;
        WeightGradient = new TensorView(weightHost ?? _owned!, 0, outChannels, spec.InChannels / spec.Groups, spec.Kernel, spec.Kernel);
        if (needBias)
            BiasGradient = new TensorView(biasBuffer ?? _owned!, biasBuffer is not null || weightHost is not null ? 0 : spec.WeightCount, 1, outChannels, 1, 1);
    }

    // The checks and the host gradients, common to both constructors.
    private TrainedConv(Conv2d conv, BatchNorm2d? batchNorm, IPreparedConv prepared, bool trainConv, bool trainBatchNorm)
    {
        ArgumentNullException.ThrowIfNull(conv);
        ArgumentNullException.ThrowIfNull(prepared);
        if (!trainConv && !trainBatchNorm)
            throw new ArgumentException($"convolution '{conv.Key}' is not trained: nothing of it needs a gradient");
        if (trainBatchNorm && batchNorm is null)
            throw new ArgumentException($"convolution '{conv.Key}' has no batch norm to train", nameof(batchNorm));
        if (batchNorm is not null && batchNorm.Channels != conv.Spec.OutChannels)
            throw new ArgumentException($"batch norm '{batchNorm.Key}' has {batchNorm.Channels} channels; convolution '{conv.Key}' has {conv.Spec.OutChannels}", nameof(batchNorm));
        Conv = conv;
        BatchNorm = batchNorm;
        Prepared = prepared;
        Weight = trainConv ? new ParameterGradient(conv.Weight) : null;
        Bias = trainConv && conv.Bias is { } b ? new ParameterGradient(b) : null;
        BatchNormWeight = trainBatchNorm ? new ParameterGradient(batchNorm!.Weight) : null;
        BatchNormBias = trainBatchNorm ? new ParameterGradient(batchNorm!.Bias) : null;
    }

    private static bool NeedsBias(Conv2d conv, bool trainConv, bool trainBatchNorm) => trainConv && conv.Bias is not null || trainBatchNorm;

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
    /// Downloads the folded gradients (unless they are the host arrays already) and writes the host gradients
    /// of the trained parameters, unfolding the batch norm (<see cref="BatchNormFolding.UnfoldGradients"/>, in
    /// place when the folded gradients are the host arrays). Allocates nothing.
    /// </summary>
    public void CollectGradients(IBackend backend, float[] scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(scratch);
        int weights = (int)Conv.Spec.WeightCount, outChannels = Conv.Spec.OutChannels;
        if (BatchNorm is null)
        {
            // Nothing folded: the folded gradients are the gradients.
            if (!_weightInPlace) backend.Download(WeightGradient, Weight!.Data);
            if (Bias is not null && !_biasInPlace) backend.Download(BiasGradient!.Value, Bias.Data);
            return;
        }
        if (scratch.Length < weights + outChannels)
            throw new ArgumentException($"scratch has {scratch.Length} floats; '{Conv.Key}' needs {weights + outChannels}", nameof(scratch));
        Span<float> dw = _weightInPlace ? Weight!.Data : scratch.AsSpan(0, weights);
        Span<float> db = _biasInPlace ? BatchNormBias!.Data : scratch.AsSpan(weights, outChannels);
        if (!_weightInPlace) backend.Download(WeightGradient, dw);
        if (BiasGradient is { } bias && !_biasInPlace) backend.Download(bias, db);
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

    /// <summary>Releases the backend buffer this object made (none when the folded gradients are host arrays or the caller's views).</summary>
    public void Dispose() => _owned?.Dispose();
}
