namespace GhmGen.Checkpoints;

/// <summary>Element type of a tensor stored in a PyTorch checkpoint.</summary>
public enum CheckpointDType
{
    /// <summary><c>torch.float32</c> (FloatStorage).</summary>
    Float32,

    /// <summary><c>torch.float16</c> (HalfStorage).</summary>
    Float16,

    /// <summary><c>torch.bfloat16</c> (BFloat16Storage).</summary>
    BFloat16,

    /// <summary><c>torch.float64</c> (DoubleStorage).</summary>
    Float64,

    /// <summary><c>torch.int64</c> (LongStorage).</summary>
    Int64,

    /// <summary><c>torch.int32</c> (IntStorage).</summary>
    Int32,

    /// <summary><c>torch.uint8</c> (ByteStorage).</summary>
    UInt8,

    /// <summary><c>torch.bool</c> (BoolStorage).</summary>
    Bool,
}

/// <summary>Sizes and names of <see cref="CheckpointDType"/> values as PyTorch spells them.</summary>
public static class CheckpointDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int ElementSize(this CheckpointDType dtype) => dtype switch
    {
        CheckpointDType.Float32 or CheckpointDType.Int32 => 4,
        CheckpointDType.Float16 or CheckpointDType.BFloat16 => 2,
        CheckpointDType.Float64 or CheckpointDType.Int64 => 8,
        _ => 1,
    };

    /// <summary>The PyTorch name without the <c>torch.</c> prefix, e.g. <c>float32</c>.</summary>
    public static string TorchName(this CheckpointDType dtype) => dtype switch
    {
        CheckpointDType.Float32 => "float32",
        CheckpointDType.Float16 => "float16",
        CheckpointDType.BFloat16 => "bfloat16",
        CheckpointDType.Float64 => "float64",
        CheckpointDType.Int64 => "int64",
        CheckpointDType.Int32 => "int32",
        CheckpointDType.UInt8 => "uint8",
        _ => "bool",
    };

    /// <summary>Whether values are integers (or bools) and so can be read as int64 exactly.</summary>
    public static bool IsInteger(this CheckpointDType dtype) =>
        dtype is CheckpointDType.Int64 or CheckpointDType.Int32 or CheckpointDType.UInt8 or CheckpointDType.Bool;

    /// <summary>The storage class name in a pickle, e.g. <c>FloatStorage</c>.</summary>
    internal static string StorageName(this CheckpointDType dtype) => dtype switch
    {
        CheckpointDType.Float32 => "FloatStorage",
        CheckpointDType.Float16 => "HalfStorage",
        CheckpointDType.BFloat16 => "BFloat16Storage",
        CheckpointDType.Float64 => "DoubleStorage",
        CheckpointDType.Int64 => "LongStorage",
        CheckpointDType.Int32 => "IntStorage",
        CheckpointDType.UInt8 => "ByteStorage",
        _ => "BoolStorage",
    };

    /// <summary>The dtype of a <c>torch.XStorage</c> global, or null when it is not one we accept.</summary>
    internal static CheckpointDType? FromStorageName(string name) => name switch
    {
        "FloatStorage" => CheckpointDType.Float32,
        "HalfStorage" => CheckpointDType.Float16,
        "BFloat16Storage" => CheckpointDType.BFloat16,
        "DoubleStorage" => CheckpointDType.Float64,
        "LongStorage" => CheckpointDType.Int64,
        "IntStorage" => CheckpointDType.Int32,
        "ByteStorage" => CheckpointDType.UInt8,
        "BoolStorage" => CheckpointDType.Bool,
        _ => null,
    };
}
