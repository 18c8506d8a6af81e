namespace GhmGen.Layers;

/// <summary>Whether a state tensor is trained (and counted as a parameter) or is state beside it.</summary>
public enum StateKind
{
    /// <summary>A learnable weight or bias: counted in parameter totals.</summary>
    Parameter,

    /// <summary>Running statistics, step counters and loss state: saved, never counted.</summary>
    Buffer,
}

/// <summary>What a state tensor is to the layer that owns it (set by the layer types, not guessed from keys).</summary>
public enum StateRole
{
    /// <summary>A buffer declared on its own (<c>[Buffer]</c>), e.g. GHM's <c>edges</c> and <c>acc_sum</c>.</summary>
    Buffer,

    /// <summary>A convolution's weight [out, in/groups, k, k].</summary>
    ConvWeight,

    /// <summary>A convolution's bias [out].</summary>
    ConvBias,

    /// <summary>A batch norm's scale (gamma).</summary>
    BatchNormWeight,

    /// <summary>A batch norm's shift (beta).</summary>
    BatchNormBias,

    /// <summary>A batch norm's running mean.</summary>
    BatchNormRunningMean,

    /// <summary>A batch norm's running variance.</summary>
    BatchNormRunningVar,

    /// <summary>A batch norm's int64 <c>num_batches_tracked</c>.</summary>
    BatchNormBatchesTracked,
}

/// <summary>Element type of a state tensor as stored in a checkpoint.</summary>
public enum StateElementType
{
    /// <summary>32-bit float, held in <see cref="StateTensor.Data"/>.</summary>
    Float32,

    /// <summary>64-bit integer (BN <c>num_batches_tracked</c>), held in <see cref="StateTensor.Int64Data"/>.</summary>
    Int64,
}

/// <summary>
/// One named tensor of a network's state dict: its mmdetection checkpoint key, shape and values.
/// </summary>
public sealed class StateTensor
{
    /// <summary>Creates a zero-filled tensor with a fixed key and shape.</summary>
    /// <param name="key">Checkpoint key.</param>
    /// <param name="shape">Shape, outermost first.</param>
    /// <param name="kind">Parameter or buffer.</param>
    /// <param name="elementType">Float32 or Int64.</param>
    /// <param name="role">What it is to its layer (layers set it; a plain buffer is <see cref="StateRole.Buffer"/>).</param>
    public StateTensor(string key, int[] shape, StateKind kind, StateElementType elementType = StateElementType.Float32, StateRole role = StateRole.Buffer)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(shape);
        Key = key;
        Role = role;
        Shape = shape;
        Kind = kind;
        ElementType = elementType;
        long count = 1;
        foreach (int d in shape) count *= d;
        ElementCount = count;
    }

    private float[]? _data;
    private long[]? _int64Data;

    /// <summary>The checkpoint key, e.g. <c>backbone.layer1.0.conv1.weight</c>.</summary>
    public string Key { get; }

    /// <summary>The shape, outermost dimension first (PyTorch order). Empty for a scalar.</summary>
    public IReadOnlyList<int> Shape { get; }

    /// <summary>What the tensor is to the layer that owns it.</summary>
    public StateRole Role { get; }

    /// <summary>Parameter or buffer.</summary>
    public StateKind Kind { get; }

    /// <summary>Float32 or Int64.</summary>
    public StateElementType ElementType { get; }

    /// <summary>Product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <summary>
    /// Values in row-major order when <see cref="ElementType"/> is Float32, else empty. Allocated
    /// (zeroed) on first use, so a network's layout can be inspected without its weights.
    /// </summary>
    public float[] Data => _data ??= ElementType == StateElementType.Float32 ? new float[ElementCount] : [];

    /// <summary>Values when <see cref="ElementType"/> is Int64, else empty (allocated on first use).</summary>
    public long[] Int64Data => _int64Data ??= ElementType == StateElementType.Int64 ? new long[ElementCount] : [];

    /// <summary>The shape written as PyTorch prints it, e.g. <c>[64, 3, 7, 7]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Key} {ShapeText}";
}
