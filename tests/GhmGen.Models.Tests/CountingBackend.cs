using GhmGen.Backends;

namespace GhmGen.Models.Tests;

/// <summary>
/// A backend that runs every op on another one and counts what is alive on it: prepared
/// convolutions and buffers made and not yet disposed. It can be told to fail the n-th
/// preparation or allocation, as a device out of memory would. Thread-safe as the inner backend is.
/// </summary>
internal sealed class CountingBackend(IBackend inner) : IBackend
{
    private int _prepared, _allocated, _livePrepared, _liveBuffers;

    /// <summary>The 1-based preparation that throws, or 0 for none.</summary>
    public int FailPreparation { get; set; }

    /// <summary>The 1-based allocation that throws, or 0 for none.</summary>
    public int FailAllocation { get; set; }

    public int Prepared => Volatile.Read(ref _prepared);
    public int Allocated => Volatile.Read(ref _allocated);
    public int LivePrepared => Volatile.Read(ref _livePrepared);
    public int LiveBuffers => Volatile.Read(ref _liveBuffers);

    public string Name => "counting " + inner.Name;

    public DeviceBuffer Allocate(long elements)
    {
        if (Interlocked.Increment(ref _allocated) == FailAllocation) throw new InsufficientMemoryException("injected allocation failure");
        var buffer = new Buffer(this, inner.Allocate(elements));
        Interlocked.Increment(ref _liveBuffers);
        return buffer;
    }

    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        if (Interlocked.Increment(ref _prepared) == FailPreparation) throw new InsufficientMemoryException("injected preparation failure");
        var conv = new Conv(this, inner.PrepareConv(spec, weight, bias));
        Interlocked.Increment(ref _livePrepared);
        return conv;
    }

    public void Upload(ReadOnlySpan<float> source, TensorView destination) => inner.Upload(source, U(destination));
    public void Download(TensorView source, Span<float> destination) => inner.Download(U(source), destination);
    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu) =>
        inner.Conv2d(((Conv)conv).Inner, U(x), U(y), residual is { } r ? U(r) : null, relu);
    public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding) => inner.MaxPool2d(U(x), U(y), kernel, stride, padding);
    public void UpsampleNearestAdd(TensorView upper, TensorView lower) => inner.UpsampleNearestAdd(U(upper), U(lower));
    public void Add(TensorView a, TensorView b, TensorView y, bool relu) => inner.Add(U(a), U(b), U(y), relu);
    public void Copy(TensorView source, TensorView destination) => inner.Copy(U(source), U(destination));
    public void Relu(TensorView x, TensorView y) => inner.Relu(U(x), U(y));
    public void Sigmoid(TensorView x, TensorView y) => inner.Sigmoid(U(x), U(y));

    /// <summary>Does not dispose the inner backend (the test owns it).</summary>
    public void Dispose() { }

    private static TensorView U(TensorView view) => view with { Buffer = ((Buffer)view.Buffer).Inner };

    private sealed class Buffer(CountingBackend owner, DeviceBuffer inner) : DeviceBuffer
    {
        private int _disposed;
        public DeviceBuffer Inner => inner;
        public override long Length => inner.Length;

        public override void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            inner.Dispose();
            Interlocked.Decrement(ref owner._liveBuffers);
            base.Dispose();
        }
    }

    private sealed class Conv(CountingBackend owner, IPreparedConv inner) : IPreparedConv
    {
        private int _disposed;
        public IPreparedConv Inner => inner;
        public ConvSpec Spec => inner.Spec;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            inner.Dispose();
            Interlocked.Decrement(ref owner._livePrepared);
        }
    }
}
