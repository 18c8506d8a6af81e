namespace GhmGen.Generators.Models;

/// <summary>A layer that owns state: a convolution, a batch norm, or a buffer.</summary>
/// <param name="Kind">conv, bn or buffer.</param>
/// <param name="Key">Checkpoint key prefix (full, dotted).</param>
/// <param name="Part">The network part its parameters count towards ("" for none).</param>
internal sealed record LayerModel(
    string Kind, string Key, string Part,
    int InChannels, int OutChannels, int Kernel, int Stride, int Padding, int Groups, bool Bias,
    int Length)
{
    public long ParameterCount => Kind switch
    {
        "conv" => (long)OutChannels * (InChannels / Groups) * Kernel * Kernel + (Bias ? OutChannels : 0),
        "bn" => 2L * OutChannels,
        _ => 0,
    };
}

/// <summary>One value of the flattened graph: a tensor with known channels and a size rule.</summary>
/// <param name="Id">Dense index.</param>
/// <param name="Name">Full dotted name.</param>
/// <param name="Channels">Channels.</param>
internal sealed record ValueModel(int Id, string Name, int Channels);

/// <summary>
/// One operation of the flattened graph, in execution order.
/// Op: input, conv, bn, relu, maxpool, upsample, add.
/// For conv/bn, Layer indexes <see cref="NetworkModel.Layers"/>; Kernel/Stride/Padding are used by maxpool;
/// SizeOf is the value whose size an upsample takes.
/// </summary>
internal sealed record NodeModel(
    string Op, int Output, EquatableArray<int> Inputs, int Layer,
    int Kernel, int Stride, int Padding, int SizeOf, bool Relu, bool SharedRepeat);

/// <summary>A named network output.</summary>
internal sealed record OutputModel(string Name, int Value);

/// <summary>The flattened, checked network: everything the emitter needs, nothing from Roslyn.</summary>
internal sealed record NetworkModel(
    string TypeName, string Namespace, string Accessibility, string NetworkName, int MinInputSize,
    EquatableArray<LayerModel> Layers,
    EquatableArray<ValueModel> Values,
    EquatableArray<NodeModel> Nodes,
    EquatableArray<OutputModel> Outputs,
    EquatableArray<string> Parts);

/// <summary>The result of expanding one network: its model when valid, and its diagnostics.</summary>
internal sealed record ExpansionResult(NetworkModel? Model, EquatableArray<DiagnosticInfo> Diagnostics);
