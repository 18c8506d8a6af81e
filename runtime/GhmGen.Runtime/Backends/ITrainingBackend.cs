namespace GhmGen.Backends;

/// <summary>
/// The gradients of the forward ops of <see cref="IBackend"/>, which the generated
/// <c>Backward</c> calls. Same tensor layout (NCHW views of the backend's buffers) and threading
/// contract as the forward ops. Every op that writes a gradient either overwrites its destination
/// or, with <c>accumulate</c>, adds to it: a value read by several layers (a block input read by a
/// convolution and the identity path, a shared head applied to five levels) sums its gradients
/// in place, without a temporary. Reference: <see cref="ReferenceBackend"/>, checked against
/// float64 finite differences in tests/GhmGen.Runtime.Tests/Backends/BackwardOpTests.cs.
/// </summary>
public interface ITrainingBackend : IBackend
{
    /// <summary>
    /// Replaces the weights of a convolution this backend prepared (after an optimizer step), in
    /// place and without allocating. <paramref name="weight"/> is [out, in/groups, k, k];
    /// <paramref name="bias"/> is [out], or empty when the convolution was prepared without one.
    /// </summary>
    void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias);

    /// <summary>
    /// The gradient of <see cref="IBackend.Conv2d"/> with respect to its input: dx (+)= the
    /// transposed convolution of <paramref name="dy"/> with the prepared weights.
    /// <paramref name="dy"/> is [N, out, OH, OW], the gradient of the convolution's output before
    /// any residual add or ReLU; <paramref name="dx"/> is [N, in, H, W] with OH = spec.OutputSize(H)
    /// (input rows and columns that no window reaches get zero, or are left as they are when accumulating).
    /// </summary>
    void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate);

    /// <summary>
    /// The gradients of <see cref="IBackend.Conv2d"/> with respect to its weights and bias, summed
    /// over the batch: dWeight[o, c, ky, kx] (+)= sum over n, oy, ox of dy[n, o, oy, ox] *
    /// x[n, g*in/groups + c, oy*stride - pad + ky, ox*stride - pad + kx] (zero outside x), and
    /// dBias[o] (+)= sum over n, oy, ox of dy[n, o, oy, ox].
    /// <paramref name="x"/> is the forward input [N, in, H, W]; <paramref name="dy"/> [N, out, OH, OW];
    /// <paramref name="dWeight"/> a view of out x (in/groups) x k x k elements (e.g. N = out,
    /// C = in/groups, H = W = k); <paramref name="dBias"/> a view of out elements, or null.
    /// </summary>
    void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate);

    /// <summary>
    /// The gradient through a ReLU from its output: dx = y &gt; 0 ? dy : 0, elementwise
    /// (PyTorch's threshold_backward on the result). <paramref name="dx"/> may alias <paramref name="dy"/>.
    /// </summary>
    void ReluBackward(TensorView y, TensorView dy, TensorView dx);

    /// <summary>
    /// The gradient of <see cref="IBackend.MaxPool2d"/>: each dy element goes (+)= to the input
    /// element that won its window, the first maximum in row-major window order (PyTorch's CPU
    /// rule; padding never wins). <paramref name="x"/> is the forward input, same shape as
    /// <paramref name="dx"/>; <paramref name="dy"/> has the pooled shape.
    /// </summary>
    void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate);

    /// <summary>
    /// The gradient of <see cref="IBackend.UpsampleNearestAdd"/> with respect to <c>upper</c>:
    /// dUpper[n, c, sy, sx] (+)= the sum of dLower over every lower cell whose nearest source is
    /// (sy, sx), with the same float32-scale index rule as the forward op. (With respect to
    /// <c>lower</c> the gradient is dLower itself.)
    /// </summary>
    void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate);

    /// <summary>Sets every element of <paramref name="t"/> to zero.</summary>
    void Zero(TensorView t);
}
