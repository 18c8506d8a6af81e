namespace GhmGen.Backends;

/// <summary>
/// Memory made by one backend (<see cref="IBackend.Allocate"/>: a host array, a device
/// allocation), usable only with that backend. The caller that allocated it owns it and disposes
/// it before the backend; dispose it only when no op that uses it is in flight.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>Length in float32 elements.</summary>
    public abstract long Length { get; }

    /// <inheritdoc/>
    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>An NCHW float32 tensor: a window of a <see cref="DeviceBuffer"/> with a shape.</summary>
/// <param name="Buffer">The memory it lives in.</param>
/// <param name="Offset">Start, in elements.</param>
/// <param name="N">Batch.</param>
/// <param name="C">Channels.</param>
/// <param name="H">Height.</param>
/// <param name="W">Width.</param>
public readonly record struct TensorView(DeviceBuffer Buffer, long Offset, int N, int C, int H, int W)
{
    /// <summary>N*C*H*W.</summary>
    public long ElementCount => (long)N * C * H * W;

    // Whether the two views share an element range of one buffer.
    internal bool Overlaps(TensorView other) =>
        ReferenceEquals(Buffer, other.Buffer) && Offset < other.Offset + other.ElementCount && other.Offset < Offset + ElementCount;

    /// <summary>The shape as text, e.g. <c>1x256x100x152</c>.</summary>
    public string ShapeText => $"{N}x{C}x{H}x{W}";
}

/// <summary>The fixed arguments of one 2-d convolution (PyTorch semantics, square kernels).</summary>
/// <param name="InChannels">Input channels.</param>
/// <param name="OutChannels">Output channels.</param>
/// <param name="Kernel">Kernel height and width.</param>
/// <param name="Stride">Stride in both axes.</param>
/// <param name="Padding">Zero padding on every side.</param>
/// <param name="Groups">Channel groups (1 = dense).</param>
public readonly record struct ConvSpec(int InChannels, int OutChannels, int Kernel, int Stride, int Padding, int Groups)
{
    /// <summary>Output size along one axis: floor((n + 2p - k) / s) + 1.</summary>
    public int OutputSize(int n) => (n + 2 * Padding - Kernel) / Stride + 1;

    /// <summary>Weight elements: out * in/groups * k * k.</summary>
    public long WeightCount => (long)OutChannels * (InChannels / Groups) * Kernel * Kernel;
}
