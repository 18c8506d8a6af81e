using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// A network's weights prepared on one backend (batch norm folded, packed for the kernels): made
/// once, shared by the sessions of every input size (generated per network as <c>Prepared</c>).
/// Read-only once made: sessions on several threads may use it at once. It owns the prepared
/// convolutions (not the backend); dispose it after every session made from it.
/// </summary>
public interface IPreparedNetwork : IDisposable
{
    /// <summary>The backend the weights live on.</summary>
    IBackend Backend { get; }

    /// <summary>Plans activation memory for <paramref name="batch"/> x C x <paramref name="height"/> x <paramref name="width"/> inputs.</summary>
    IForwardSession CreateSession(int batch, int height, int width);

    /// <summary>Elements of each activation buffer a session for this batch and input size needs.</summary>
    long[] ActivationBufferSizes(int batch, int height, int width);

    /// <summary>
    /// A session over activation buffers the caller owns and disposes: one per entry of
    /// <see cref="ActivationBufferSizes"/>, each at least that long, allocated on <see cref="Backend"/>.
    /// Buffers sized for the largest input serve sessions of every smaller one (one at a time).
    /// </summary>
    IForwardSession CreateSession(int batch, int height, int width, IReadOnlyList<DeviceBuffer> buffers);
}

/// <summary>
/// A network prepared on one backend for one input size (generated per network as <c>Session</c>):
/// it owns its activation buffers, and its weights when it was made with them. Not thread-safe:
/// one caller at a time, since the outputs live in its buffers until the next forward pass.
/// </summary>
public interface IForwardSession : IDisposable
{
    /// <summary>Batch size.</summary>
    int Batch { get; }

    /// <summary>Input height.</summary>
    int Height { get; }

    /// <summary>Input width.</summary>
    int Width { get; }

    /// <summary>The input tensor, N x C x H x W.</summary>
    TensorView Input { get; }

    /// <summary>Every output by name, in declaration order; valid after <see cref="Forward"/>.</summary>
    IReadOnlyList<(string Name, TensorView Tensor)> Outputs { get; }

    /// <summary>Runs the network on <paramref name="input"/> (N x C x H x W, row-major).</summary>
    void Forward(ReadOnlySpan<float> input);
}
