// The description language. Networks and blocks are declared with these attributes on partial
// classes; GhmGen.Generators reads them and emits typed layer code. Wherever a number is
// expected, an int or a string expression over the block's parameters is accepted
// (e.g. Out = 256 or Out = "planes * 4"): + - * / % and parentheses, integer arithmetic.
// Layers are evaluated in the order written; each takes the previous layer's output unless
// From names another value. A layer whose When expression is 0 passes its input through.
// Training: every parameter is trained unless it is frozen, by a Frozen path on the network or
// by Trainable = false on a layer or on a use of a block (which freezes everything inside it).
// Batch norm trains as mmdetection's norm_eval=True (running statistics, never updated; affine
// weight and bias trained), or with NormEval = false with batch statistics (see NetworkAttribute.NormEval).
namespace GhmGen.Description;

/// <summary>Declares a network: the class receives generated layer properties, counts, shapes and state.</summary>
/// <param name="name">The network's public name, e.g. <c>retinanet-ghm-r50-fpn</c>.</param>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class NetworkAttribute(string name) : Attribute
{
    /// <summary>The network's public name.</summary>
    public string Name { get; } = name;

    /// <summary>A block to instantiate as the whole network (its inputs and outputs become the network's); when unset, the class's own layer attributes are the network.</summary>
    public string? Block { get; set; }

    /// <summary>Arguments for <see cref="Block"/>: <c>"name = expr, ..."</c>.</summary>
    public string? Args { get; set; }

    /// <summary>The smallest input height and width the network must accept: no feature map may shrink to nothing at this size.</summary>
    public int MinInputSize { get; set; } = 32;

    /// <summary>
    /// Parts that are not trained, as comma-separated key paths: a layer's checkpoint key prefix
    /// (<c>backbone.conv1</c>) or a block instance's or stage's (<c>backbone.layer1</c> freezes
    /// every block of the stage). mmdetection's <c>frozen_stages=1</c> on a ResNet backbone is
    /// <c>"backbone.conv1, backbone.bn1, backbone.layer1"</c>. A path that names no layer is GHM015.
    /// </summary>
    public string? Frozen { get; set; }

    /// <summary>
    /// How trained batch norms behave in training: true (the default, mmdetection's
    /// <c>norm_eval=True</c>) uses the running statistics, never updates them, and trains the affine
    /// weight and bias (folded into the convolution). False trains every trained batch norm with the
    /// batch's statistics as PyTorch's <c>BatchNorm2d</c> in train() mode: mean and biased variance over
    /// N, H and W of the batch, running statistics updated after each training forward (momentum 0.1,
    /// unbiased variance). Frozen batch norms and inference always use the running statistics.
    /// </summary>
    public bool NormEval { get; set; } = true;
}

/// <summary>Declares a reusable block: a graph of layers used by name from networks and other blocks.</summary>
/// <param name="parameters">Parameters with optional defaults: <c>"planes, stride = 1, groups = 1"</c>.</param>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class BlockAttribute(string parameters = "") : Attribute
{
    /// <summary>The parameter list.</summary>
    public string Parameters { get; } = parameters;
}

/// <summary>An input of a block or network (4-d NCHW tensor).</summary>
/// <param name="name">The value name layers refer to.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class InputAttribute(string name) : Attribute
{
    /// <summary>The input's name.</summary>
    public string Name { get; } = name;

    /// <summary>Expected channels (int or expression); required on networks, checked against the caller on blocks.</summary>
    public object? Channels { get; set; }
}

/// <summary>An output of a block or network.</summary>
/// <param name="name">The output's name (how users of the block refer to it: <c>instance.name</c>).</param>
/// <param name="from">The value it exposes.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class OutputAttribute(string name, string from) : Attribute
{
    /// <summary>The output's name.</summary>
    public string Name { get; } = name;

    /// <summary>The value it exposes.</summary>
    public string From { get; } = from;
}

/// <summary>A named integer computed once per block instance from its parameters.</summary>
/// <param name="name">The name expressions may use.</param>
/// <param name="expression">Its value.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class LetAttribute(string name, string expression) : Attribute
{
    /// <summary>The name.</summary>
    public string Name { get; } = name;

    /// <summary>The expression.</summary>
    public string Expression { get; } = expression;
}

/// <summary>Base of the layer attributes: a name, an input and a condition.</summary>
public abstract class LayerAttribute(string? name) : Attribute
{
    /// <summary>The layer's name, also its checkpoint key inside the block (dots allowed: <c>downsample.0</c>).</summary>
    public string? Name { get; } = name;

    /// <summary>The input value; the previous layer's output when unset.</summary>
    public string? From { get; set; }

    /// <summary>Expression: the layer exists only when it is non-zero; otherwise its output is its input.</summary>
    public string? When { get; set; }
}

/// <summary>A 2-d convolution, square kernel (PyTorch <c>Conv2d</c>); weight key <c>name.weight</c>, bias <c>name.bias</c>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class ConvAttribute(string name) : LayerAttribute(name)
{
    /// <summary>Output channels (int or expression). Required.</summary>
    public object? Out { get; set; }

    /// <summary>Expected input channels; inferred from the input when unset.</summary>
    public object? In { get; set; }

    /// <summary>Kernel size (default 1).</summary>
    public object? Kernel { get; set; }

    /// <summary>Stride (default 1).</summary>
    public object? Stride { get; set; }

    /// <summary>Zero padding on every side (default 0).</summary>
    public object? Padding { get; set; }

    /// <summary>Channel groups (default 1).</summary>
    public object? Groups { get; set; }

    /// <summary>Whether the convolution has a bias.</summary>
    public bool Bias { get; set; }

    /// <summary>Apply ReLU to the output (mmcv's ConvModule with act_cfg ReLU).</summary>
    public bool Relu { get; set; }

    /// <summary>Whether its weight and bias are trained (default true); false freezes them.</summary>
    public bool Trainable { get; set; } = true;
}

/// <summary>Batch normalization over channels (eps 1e-5); keys <c>name.{weight,bias,running_mean,running_var,num_batches_tracked}</c>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class BatchNormAttribute(string name) : LayerAttribute(name)
{
    /// <summary>Whether its affine weight and bias are trained (default true); its running statistics never are.</summary>
    public bool Trainable { get; set; } = true;
}

/// <summary>ReLU.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class ReluAttribute(string? name = null) : LayerAttribute(name);

/// <summary>Max-pooling with a square window; padding counts as -infinity.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class MaxPoolAttribute(string? name = null) : LayerAttribute(name)
{
    /// <summary>Window size. Required.</summary>
    public object? Kernel { get; set; }

    /// <summary>Stride (default: the kernel size).</summary>
    public object? Stride { get; set; }

    /// <summary>Padding (default 0).</summary>
    public object? Padding { get; set; }
}

/// <summary>Nearest-neighbour upsampling of <see cref="LayerAttribute.From"/> to the exact size of another value.</summary>
/// <param name="name">The output's name.</param>
/// <param name="sizeOf">The value whose height and width the output takes.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class UpsampleAttribute(string name, string sizeOf) : LayerAttribute(name)
{
    /// <summary>The value whose size is taken.</summary>
    public string SizeOf { get; } = sizeOf;
}

/// <summary>Elementwise sum of two values of the same shape.</summary>
/// <param name="name">The output's name.</param>
/// <param name="left">First operand.</param>
/// <param name="right">Second operand.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class AddAttribute(string name, string left, string right) : LayerAttribute(name)
{
    /// <summary>First operand.</summary>
    public string Left { get; } = left;

    /// <summary>Second operand.</summary>
    public string Right { get; } = right;
}

/// <summary>A non-trained state tensor saved with the weights (e.g. GHM's <c>acc_sum</c>).</summary>
/// <param name="name">Its key inside the block.</param>
/// <param name="length">Number of float32 elements (1-d).</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class BufferAttribute(string name, int length) : Attribute
{
    /// <summary>Its key inside the block.</summary>
    public string Name { get; } = name;

    /// <summary>Number of elements.</summary>
    public int Length { get; } = length;
}

/// <summary>One instance of a block, its layers keyed under <c>name.</c>.</summary>
/// <param name="name">Instance name and key prefix.</param>
/// <param name="block">The block's class name (use <c>nameof</c>).</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class UseAttribute(string name, string block) : LayerAttribute(name)
{
    /// <summary>The block.</summary>
    public string Block { get; } = block;

    /// <summary>Arguments: <c>"name = expr, ..."</c>, evaluated in the enclosing block.</summary>
    public string? Args { get; set; }

    /// <summary>The part of the network its parameters count towards (top level only; default: the instance name).</summary>
    public string? Part { get; set; }

    /// <summary>Whether the block's parameters are trained (default true); false freezes every layer inside it.</summary>
    public bool Trainable { get; set; } = true;
}

/// <summary>
/// A stage: <see cref="Count"/> instances of a block chained one after another, keyed
/// <c>name.0</c>, <c>name.1</c>, ...; the first receives <see cref="First"/> on top of <see cref="Args"/>.
/// </summary>
/// <param name="name">Stage name and key prefix.</param>
/// <param name="block">The repeated block.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class StageAttribute(string name, string block) : LayerAttribute(name)
{
    /// <summary>The block.</summary>
    public string Block { get; } = block;

    /// <summary>Number of blocks (int or expression). Required.</summary>
    public object? Count { get; set; }

    /// <summary>Arguments for every block.</summary>
    public string? Args { get; set; }

    /// <summary>Extra arguments for the first block only (e.g. <c>"stride = 2, downsample = 1"</c>).</summary>
    public string? First { get; set; }

    /// <summary>Whether the stage's parameters are trained (default true); false freezes every block of it.</summary>
    public bool Trainable { get; set; } = true;
}

/// <summary>
/// One set of weights applied to several inputs (a detection head over the pyramid levels).
/// <see cref="LayerAttribute.From"/> lists the inputs; the application to input <c>v</c>
/// produces <c>name.v.output</c> for each block output (with <c>v</c> the input's last name segment).
/// </summary>
/// <param name="name">Instance name and key prefix.</param>
/// <param name="block">The shared block.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class SharedAttribute(string name, string block) : LayerAttribute(name)
{
    /// <summary>The block.</summary>
    public string Block { get; } = block;

    /// <summary>Arguments: <c>"name = expr, ..."</c>.</summary>
    public string? Args { get; set; }

    /// <summary>The part of the network its parameters count towards (default: the instance name).</summary>
    public string? Part { get; set; }

    /// <summary>Whether the shared weights are trained (default true); when trained, their gradients sum over every application.</summary>
    public bool Trainable { get; set; } = true;
}
