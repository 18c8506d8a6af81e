namespace GhmGen.Generators.Models;

// The flattened graph of one network: layers (the state), values (tensors) and nodes (one per
// primitive op, in execution order). One record per kind, each with what it reads, writes and
// owns; no Roslyn types, no placeholders.

/// <summary>A layer that owns state, keyed by its checkpoint key prefix.</summary>
/// <param name="Key">Checkpoint key prefix (full, dotted).</param>
/// <param name="Part">The network part its parameters count towards ("" for none).</param>
/// <param name="Trainable">Whether its parameters are trained (false when frozen; always false for a buffer).</param>
internal abstract record LayerModel(string Key, string Part, bool Trainable)
{
    /// <summary>Learnable parameters (buffers excluded).</summary>
    public abstract long ParameterCount { get; }

    /// <summary>Tensors it adds to the state dict.</summary>
    public abstract int StateTensorCount { get; }
}

/// <summary>A convolution (square kernel).</summary>
internal sealed record ConvLayer(string Key, string Part, bool Trainable,
    int InChannels, int OutChannels, int Kernel, int Stride, int Padding, int Groups, bool Bias)
    : LayerModel(Key, Part, Trainable)
{
    public long WeightCount => (long)OutChannels * (InChannels / Groups) * Kernel * Kernel;

    public override long ParameterCount => WeightCount + (Bias ? OutChannels : 0);

    public override int StateTensorCount => Bias ? 2 : 1;
}

/// <summary>A batch norm: affine weight and bias (parameters), running statistics (buffers).</summary>
/// <param name="Key">Checkpoint key prefix (full, dotted).</param>
/// <param name="Part">The network part its parameters count towards ("" for none).</param>
/// <param name="Trainable">Whether its parameters are trained (false when frozen).</param>
/// <param name="Channels">Channels.</param>
/// <param name="BatchStatistics">Whether training normalizes with the batch's statistics and updates the running ones
/// (a trained batch norm of a network with NormEval = false; PyTorch's train() mode). Otherwise training uses the
/// running statistics and folds it into the convolution (norm_eval, or frozen). Inference always folds it.</param>
internal sealed record BatchNormLayer(string Key, string Part, bool Trainable, int Channels, bool BatchStatistics = false)
    : LayerModel(Key, Part, Trainable)
{
    public override long ParameterCount => 2L * Channels;

    public override int StateTensorCount => 5;
}

/// <summary>A 1-d float buffer saved with the weights.</summary>
internal sealed record BufferLayer(string Key, string Part, int Length) : LayerModel(Key, Part, false)
{
    public override long ParameterCount => 0;

    public override int StateTensorCount => 1;
}

/// <summary>
/// One value of the flattened graph: a tensor with known channels. Its spatial size is the
/// input size divided by <see cref="Stride"/> (up to rounding), the product of the strides on
/// the way from the input: what memory planning compares, independent of any input size.
/// </summary>
internal sealed record ValueModel(int Id, string Name, int Channels, long Stride);

/// <summary>One primitive op of the flattened graph, writing <see cref="Output"/>.</summary>
/// <param name="Output">The value it writes.</param>
/// <param name="SharedRepeat">Whether it is a second or later application of shared weights.</param>
internal abstract record NodeModel(int Output, bool SharedRepeat)
{
    /// <summary>The values it reads, in operand order.</summary>
    public abstract EquatableArray<int> Reads { get; }
}

/// <summary>The network input.</summary>
internal sealed record InputNode(int Output) : NodeModel(Output, false)
{
    public override EquatableArray<int> Reads => EquatableArray<int>.Empty;
}

/// <summary>y = conv(x) (+ ReLU when <paramref name="Relu"/>); <paramref name="Layer"/> indexes the layers.</summary>
internal sealed record ConvNode(int Output, int Input, int Layer, bool Relu, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = batch norm(x).</summary>
internal sealed record BatchNormNode(int Output, int Input, int Layer, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = max(x, 0).</summary>
internal sealed record ReluNode(int Output, int Input, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = max-pool(x).</summary>
internal sealed record MaxPoolNode(int Output, int Input, int Kernel, int Stride, int Padding, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = nearest-upsample(x) to the size of <paramref name="SizeOf"/> (which it does not read).</summary>
internal sealed record UpsampleNode(int Output, int Input, int SizeOf, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Input]);
}

/// <summary>y = left + right.</summary>
internal sealed record AddNode(int Output, int Left, int Right, bool SharedRepeat) : NodeModel(Output, SharedRepeat)
{
    public override EquatableArray<int> Reads => new([Left, Right]);
}

/// <summary>A named network output.</summary>
internal sealed record OutputModel(string Name, int Value);

/// <summary>The flattened, checked network: everything the planner and emitter need, nothing from Roslyn.</summary>
internal sealed record NetworkModel(
    string TypeName, string Namespace, string Accessibility, string NetworkName, int MinInputSize,
    EquatableArray<LayerModel> Layers,
    EquatableArray<ValueModel> Values,
    EquatableArray<NodeModel> Nodes,
    EquatableArray<OutputModel> Outputs,
    EquatableArray<string> Parts);

/// <summary>
/// The result of expanding one network: its model when valid, where each node was declared
/// (apart from the model, so an edit that only moves text leaves the model equal), and its diagnostics.
/// </summary>
internal sealed record ExpansionResult(NetworkModel? Model, EquatableArray<NodeLocation> NodeLocations, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>Where one node was declared (its attribute), when known.</summary>
internal sealed record NodeLocation(LocationInfo? Location);
