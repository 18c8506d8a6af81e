namespace GhmGen.Backends;

/// <summary>
/// Weights of one convolution, converted once into a backend's preferred layout. Made by
/// <see cref="IBackend.PrepareConv"/> and owned by the caller, who disposes it before the backend;
/// read-only once made, so calls on several threads may share it.
/// </summary>
public interface IPreparedConv : IDisposable
{
    /// <summary>The convolution's arguments.</summary>
    ConvSpec Spec { get; }
}

/// <summary>
/// The op interface that generated <c>Forward</c> code calls. One implementation per device
/// (CPU SIMD, ILGPU); all agree with <c>ReferenceBackend</c>, the plain-loop reference.
/// Tensors are float32 NCHW views of buffers made by the same backend (<see cref="Allocate"/>);
/// the caller owns the buffers and prepared convolutions it makes and disposes them before the
/// backend. Threading contract of the implementations here: any number of threads may call one
/// backend at once, as long as no two calls write the same tensor or one writes a tensor another
/// reads; disposing it while a call is in flight is not allowed.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short name for messages, e.g. <c>cpu</c>.</summary>
    string Name { get; }

    /// <summary>Allocates <paramref name="elements"/> float32 elements (contents undefined).</summary>
    DeviceBuffer Allocate(long elements);

    /// <summary>Copies host values into a tensor.</summary>
    void Upload(ReadOnlySpan<float> source, TensorView destination);

    /// <summary>Copies a tensor's values to the host.</summary>
    void Download(TensorView source, Span<float> destination);

    /// <summary>
    /// Prepares a convolution. <paramref name="weight"/> is [out, in/groups, k, k];
    /// <paramref name="bias"/> is [out] or empty (no bias). Frozen batch norm is folded into
    /// both by the caller (see <c>BatchNormFolding</c>).
    /// </summary>
    IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias);

    /// <summary>
    /// y = act(conv(x) + bias [+ residual]). x is [N, in, H, W]; y and residual are
    /// [N, out, OH, OW]. ReLU is applied after the residual add when <paramref name="relu"/>.
    /// </summary>
    void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu);

    /// <summary>
    /// y[i] = act(conv(x[i]) + bias) for every i: one prepared convolution applied to several inputs
    /// of any sizes, such as a shared head's pyramid levels; the same as a <see cref="Conv2d"/> call
    /// per pair without residual, which is what this default does. A backend may run the pairs
    /// together (the CPU backend packs the small ones into one product, so their weights are read
    /// once, and transforms a Winograd-sized convolution's weights once for all of its large ones).
    /// No y may overlap any x or another y.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> and <paramref name="y"/> differ in length, or a pair is invalid for <see cref="Conv2d"/>.</exception>
    void Conv2dShared(IPreparedConv conv, ReadOnlySpan<TensorView> x, ReadOnlySpan<TensorView> y, bool relu)
    {
        if (x.Length != y.Length)
            throw new ArgumentException($"{x.Length} inputs but {y.Length} outputs", nameof(y));
        for (int i = 0; i < x.Length; i++) Conv2d(conv, x[i], y[i], null, relu);
    }

    /// <summary>Max-pool with a square window; padding counts as -infinity (PyTorch).</summary>
    void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding);

    /// <summary>
    /// lower += nearest-upsample(upper) to lower's exact size (PyTorch 'nearest': with
    /// scale = (float)in / out in float32, source index = min(floor(dst * scale), in - 1)).
    /// Both have the same N and C.
    /// </summary>
    void UpsampleNearestAdd(TensorView upper, TensorView lower);

    /// <summary>y = act(a + b), elementwise, same shapes (y may alias a or b).</summary>
    void Add(TensorView a, TensorView b, TensorView y, bool relu);

    /// <summary>destination = source, same shapes.</summary>
    void Copy(TensorView source, TensorView destination);

    /// <summary>y = max(x, 0), elementwise (y may alias x).</summary>
    void Relu(TensorView x, TensorView y);

    /// <summary>y = 1 / (1 + exp(-x)), elementwise (y may alias x).</summary>
    void Sigmoid(TensorView x, TensorView y);
}
