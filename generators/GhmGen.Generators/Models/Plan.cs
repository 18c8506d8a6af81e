using System.Linq;

namespace GhmGen.Generators.Models;

// What the planner decides for one network, as data: the fused forward calls, the reverse pass,
// and a static memory plan for inference and one for training. Tensors are numbered: value v's
// activation is tensor v, its gradient tensor V + v (V = the number of values).

/// <summary>One backend call of the generated forward pass, writing value <see cref="Output"/>.</summary>
internal abstract record ForwardStep(int Output)
{
    /// <summary>The values it reads.</summary>
    public abstract EquatableArray<int> Reads { get; }

    /// <summary>The values it writes: <see cref="Output"/>, or every output of a <see cref="SharedConvStep"/>.</summary>
    public virtual EquatableArray<int> Writes => new([Output]);

    /// <summary>Values whose buffer the output may take over when they die here (elementwise ops).</summary>
    public virtual EquatableArray<int> InPlaceCandidates => EquatableArray<int>.Empty;
}

/// <summary>Input = the caller's tensor.</summary>
internal sealed record UploadStep(int Output) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => EquatableArray<int>.Empty;
}

/// <summary>y = act(conv(x) + bias [+ residual]) with batch norm folded into <see cref="Conv"/> (an index of <see cref="NetworkPlan.Convs"/>).</summary>
internal sealed record ConvStep(int Output, int Input, int? Residual, int Conv, bool Relu) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => Residual is { } r ? new([Input, r]) : new([Input]);
}

/// <summary>
/// One convolution applied to several inputs in one backend call (<c>IBackend.Conv2dShared</c>):
/// the applications of a shared layer that do not depend on one another, such as a shared head's
/// levels. Every member has the same <see cref="ConvStep.Conv"/> and <see cref="ConvStep.Relu"/> and
/// no residual; all inputs are read before any output is written, so no output takes an input's slot.
/// </summary>
internal sealed record SharedConvStep(EquatableArray<ConvStep> Applications) : ForwardStep(Applications[0].Output)
{
    public override EquatableArray<int> Reads => Applications.Select(a => a.Input).ToEquatableArray();

    public override EquatableArray<int> Writes => Applications.Select(a => a.Output).ToEquatableArray();
}

/// <summary>y = max-pool(x).</summary>
internal sealed record MaxPoolStep(int Output, int Input, int Kernel, int Stride, int Padding) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = lower + nearest-upsample(upper) to lower's size (in lower's buffer when it dies here, else after a copy).</summary>
internal sealed record UpsampleAddStep(int Output, int Upper, int Lower) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => new([Upper, Lower]);

    public override EquatableArray<int> InPlaceCandidates => new([Lower]);
}

/// <summary>y = act(left + right).</summary>
internal sealed record AddStep(int Output, int Left, int Right, bool Relu) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => new([Left, Right]);

    public override EquatableArray<int> InPlaceCandidates => new([Left, Right]);
}

/// <summary>y = max(x, 0).</summary>
internal sealed record ReluStep(int Output, int Input) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => new([Input]);

    public override EquatableArray<int> InPlaceCandidates => new([Input]);
}

/// <summary>
/// y = act(batch norm of x with the batch's statistics [+ residual]): training's forward of a batch
/// norm with <see cref="BatchNormLayer.BatchStatistics"/>, after its convolution wrote x unfolded.
/// </summary>
/// <param name="Output">The value the fused inference step writes (after the add and ReLU).</param>
/// <param name="Input">The convolution's output, which the batch norm reads (kept for the reverse pass).</param>
/// <param name="Residual">The value added before the ReLU, if any.</param>
/// <param name="Relu">Whether a ReLU follows.</param>
/// <param name="Norm">Index of <see cref="NetworkPlan.Norms"/>.</param>
/// <param name="Application">Index of <see cref="NetworkPlan.NormApplications"/>: whose saved statistics it writes.</param>
internal sealed record BatchNormStep(int Output, int Input, int? Residual, bool Relu, int Norm, int Application) : ForwardStep(Output)
{
    public override EquatableArray<int> Reads => Residual is { } r ? new([Input, r]) : new([Input]);
}

/// <summary>One distinct convolution as the backends prepare it: its layer and the batch norm folded into it.</summary>
/// <param name="Layer">The convolution's index in the network's layers.</param>
/// <param name="BatchNorm">The index of the batch norm folded into it, or null for none.</param>
/// <param name="Trained">Whether the convolution or its batch norm has trained parameters.</param>
/// <param name="BatchStatistics">Whether its batch norm trains with batch statistics: folded for inference, prepared unfolded for training.</param>
internal sealed record PreparedConvModel(int Layer, int? BatchNorm, bool Trained, bool BatchStatistics = false);

/// <summary>
/// A trained prepared convolution: which host gradients it fills (its folded gradients' memory is made by
/// the runtime's TrainedConv).
/// </summary>
/// <param name="Conv">Index of <see cref="NetworkPlan.Convs"/>.</param>
/// <param name="Weight">The convolution's weight (and bias, if any) are trained.</param>
/// <param name="BatchNorm">The folded batch norm's weight and bias are trained.</param>
/// <param name="FoldedBias">A trained parameter needs the folded bias's gradient.</param>
internal sealed record TrainedConvModel(int Conv, bool Weight, bool BatchNorm, bool FoldedBias);

/// <summary>One backend call of the generated reverse pass.</summary>
internal abstract record BackwardStep
{
    /// <summary>Tensors it reads.</summary>
    public abstract EquatableArray<int> Reads(int values);

    /// <summary>The tensor it writes, if any.</summary>
    public abstract int? Writes(int values);

    /// <summary>Whether it adds to <see cref="Writes"/> (false: it overwrites, the tensor's first contribution).</summary>
    public abstract bool Accumulates { get; }

    /// <summary>Tensors whose buffer the written one may take over when they die here.</summary>
    public virtual EquatableArray<int> InPlaceCandidates(int values) => EquatableArray<int>.Empty;
}

/// <summary>Zeroes the folded gradients of a trained convolution no gradient reaches (it then stays 0).</summary>
internal sealed record ZeroWeightGradientsStep(int Trained) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => EquatableArray<int>.Empty;

    public override int? Writes(int values) => null;

    public override bool Accumulates => false;
}

/// <summary>dValue = activation(Value) &gt; 0 ? dValue : 0, in place (the ReLU that produced Value).</summary>
internal sealed record ReluBackwardStep(int Value) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([Value, values + Value]);

    public override int? Writes(int values) => values + Value;

    public override bool Accumulates => true; // in place: the gradient already lives here
}

/// <summary>Folded weight (and bias) gradients of a convolution from its input activation and output gradient.</summary>
internal sealed record ConvWeightsBackwardStep(int Conv, int Trained, int Input, int Output, bool Accumulate) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([Input, values + Output]);

    public override int? Writes(int values) => null;

    public override bool Accumulates => Accumulate;
}

/// <summary>
/// The reverse of a <see cref="BatchNormStep"/> from d Output (after the ReLU's backward): dInput
/// (when <paramref name="WriteInput"/>, overwritten: the convolution's output has no other reader) and
/// the batch norm's weight and bias gradients (added to when <paramref name="AccumulateParameters"/>:
/// a later application of a shared batch norm).
/// </summary>
internal sealed record BatchNormBackwardStep(int Norm, int Application, int Input, int Output, bool WriteInput, bool AccumulateParameters) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([Input, values + Output]);

    public override int? Writes(int values) => WriteInput ? values + Input : null;

    public override bool Accumulates => false;
}

/// <summary>Zeroes the weight and bias gradients of a batch-statistics batch norm that no gradient reaches.</summary>
internal sealed record ZeroNormGradientsStep(int Norm) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => EquatableArray<int>.Empty;

    public override int? Writes(int values) => null;

    public override bool Accumulates => false;
}

/// <summary>dInput (+)= the transposed convolution of dOutput.</summary>
internal sealed record ConvDataBackwardStep(int Conv, int Output, int Input, bool Accumulate) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([values + Output]);

    public override int? Writes(int values) => values + Input;

    public override bool Accumulates => Accumulate;
}

/// <summary>dInput (+)= dOutput routed to each window's maximum (reads the forward input).</summary>
internal sealed record MaxPoolBackwardStep(int Output, int Input, int Kernel, int Stride, int Padding, bool Accumulate) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([Input, values + Output]);

    public override int? Writes(int values) => values + Input;

    public override bool Accumulates => Accumulate;
}

/// <summary>dUpper (+)= the sum of dOutput over the cells that took each upper cell.</summary>
internal sealed record UpsampleBackwardStep(int Output, int Upper, bool Accumulate) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([values + Output]);

    public override int? Writes(int values) => values + Upper;

    public override bool Accumulates => Accumulate;
}

/// <summary>dTo (+)= dFrom: an identity path (a residual, an add operand, the lower side of an upsample-add, a ReLU's input).</summary>
internal sealed record PassGradientStep(int From, int To, bool Accumulate) : BackwardStep
{
    public override EquatableArray<int> Reads(int values) => new([values + From]);

    public override int? Writes(int values) => values + To;

    public override bool Accumulates => Accumulate;

    /// <summary>The first contribution may simply take over dFrom's buffer when dFrom dies here.</summary>
    public override EquatableArray<int> InPlaceCandidates(int values) => Accumulate ? EquatableArray<int>.Empty : new([values + From]);
}

/// <summary>
/// Buffer slots for a timeline of steps: each materialized tensor's slot (-1 for tensors never
/// materialized), the slot count, and per step whether its written tensor took over an operand's slot.
/// </summary>
internal sealed record MemoryPlan(EquatableArray<int> SlotOf, int SlotCount, EquatableArray<bool> InPlace);

/// <summary>Everything the emitter needs beyond the graph.</summary>
/// <param name="Forward">The fused forward calls, in order.</param>
/// <param name="Convs">Distinct prepared convolutions, in first-use order.</param>
/// <param name="Inference">Slots of the inference session (timeline: the forward steps).</param>
/// <param name="TrainedConvs">The trained prepared convolutions.</param>
/// <param name="WeightGradientLength">Elements of the folded weight and bias gradients of every trained convolution.</param>
/// <param name="Backward">The reverse pass, in order.</param>
/// <param name="Training">Slots of the training session (timeline: the training forward steps, the output gradients, the backward steps).</param>
/// <param name="TrainingForward">The training session's forward calls: <paramref name="Forward"/>, except that a convolution whose
/// batch norm trains with batch statistics is its unfolded convolution then a <see cref="BatchNormStep"/>.</param>
/// <param name="Norms">The batch norms trained with batch statistics (layer indices), in first-use order.</param>
/// <param name="NormApplications">Per <see cref="BatchNormStep"/> (a shared batch norm has several), its index of <paramref name="Norms"/>.</param>
internal sealed record NetworkPlan(
    EquatableArray<ForwardStep> Forward,
    EquatableArray<PreparedConvModel> Convs,
    MemoryPlan Inference,
    EquatableArray<TrainedConvModel> TrainedConvs,
    long WeightGradientLength,
    EquatableArray<BackwardStep> Backward,
    MemoryPlan Training,
    EquatableArray<ForwardStep> TrainingForward,
    EquatableArray<int> Norms,
    EquatableArray<int> NormApplications);

/// <summary>A network ready to emit: its graph and its plan.</summary>
internal sealed record PlannedNetwork(NetworkModel Model, NetworkPlan Plan);

/// <summary>The result of planning one network: the planned network when valid, and every diagnostic of its expansion and planning.</summary>
internal sealed record PlanResult(PlannedNetwork? Network, EquatableArray<DiagnosticInfo> Diagnostics);
