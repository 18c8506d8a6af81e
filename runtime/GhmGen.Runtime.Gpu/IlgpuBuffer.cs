using ILGPU;
using ILGPU.Runtime;

namespace GhmGen.Backends.Gpu;

/// <summary>Float32 memory on an ILGPU accelerator (CUDA device or ILGPU's CPU accelerator).</summary>
public sealed class IlgpuBuffer : DeviceBuffer
{
    internal IlgpuBuffer(MemoryBuffer1D<float, Stride1D.Dense> memory) => Memory = memory;

    /// <summary>The ILGPU allocation.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense> Memory { get; }

    /// <inheritdoc/>
    public override long Length => Memory.Length;

    /// <inheritdoc/>
    public override void Dispose()
    {
        Memory.Dispose();
        base.Dispose();
    }
}
