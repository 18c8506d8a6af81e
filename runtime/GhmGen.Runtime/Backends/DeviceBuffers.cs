namespace GhmGen.Backends;

/// <summary>Allocation of several buffers as one step: all of them, or none left behind.</summary>
public static class DeviceBuffers
{
    /// <summary>
    /// Allocates one buffer per entry of <paramref name="lengths"/> on <paramref name="backend"/>.
    /// When an allocation throws (for example a device out of memory), the buffers already
    /// allocated are disposed before the exception propagates, so a generated session whose
    /// constructor fails holds no backend memory. The caller owns the returned buffers.
    /// </summary>
    /// <param name="backend">Where the buffers live.</param>
    /// <param name="lengths">Length of each buffer, in float32 elements.</param>
    /// <returns>The buffers, in the order of <paramref name="lengths"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="backend"/> is null.</exception>
    public static DeviceBuffer[] AllocateAll(IBackend backend, ReadOnlySpan<long> lengths)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var buffers = new DeviceBuffer[lengths.Length];
        int allocated = 0;
        try
        {
            for (; allocated < buffers.Length; allocated++) buffers[allocated] = backend.Allocate(lengths[allocated]);
            return buffers;
        }
        catch
        {
            for (int i = 0; i < allocated; i++) buffers[i].Dispose();
            throw;
        }
    }
}
