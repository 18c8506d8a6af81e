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
    /// A buffer of this backend's over <paramref name="values"/> itself, when its tensors live in host
    /// memory (the CPU and reference backends): what an op writes there is in the array, with no copy, and
    /// the caller keeps owning the array (disposing the buffer frees nothing). Null (the default) when the
    /// backend cannot work in host arrays (a GPU).
    /// </summary>
    DeviceBuffer? WrapHost(float[] values) => null;

    /// <summary>
    /// Replaces the weights of a convolution this backend prepared (after an optimizer step), in
    /// place and without allocating. <paramref name="weight"/> is [out, in/groups, k, k];
    /// <paramref name="bias"/> is [out], or empty when the convolution was prepared without one.
    /// </summary>
    void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias);

    /// <summary>
    /// Prepares a trained convolution that keeps no copy of its weights between uses: the backend reads them
    /// from <paramref name="source"/> whenever it packs them (its first use, and the first use after each
    /// <see cref="MarkWeightsChanged"/>), into scratch that its convolutions share. Null (the default) when
    /// the backend keeps a copy of its own: then prepare it with <see cref="IBackend.PrepareConv"/> and
    /// replace its weights with <see cref="UpdateConv(IPreparedConv, ReadOnlySpan{float}, ReadOnlySpan{float})"/>.
    /// The CPU backend does this, at the cost of packing each such convolution once per use (about what
    /// an optimizer step's repacking costs when each is used once per step) for the memory of one packed
    /// copy of the network.
    /// </summary>
    /// <param name="spec">The convolution's arguments.</param>
    /// <param name="source">Reads the current weights (and the bias, with <paramref name="hasBias"/>).</param>
    /// <param name="hasBias">Whether the convolution has a bias ([out] values from the source).</param>
    IPreparedConv? PrepareConv(ConvSpec spec, IConvWeightSource source, bool hasBias) => null;

    /// <summary>
    /// Tells the backend that the weights of <paramref name="conv"/> changed in its source (after an optimizer
    /// step): true when <paramref name="conv"/> was prepared from an <see cref="IConvWeightSource"/> and will be
    /// read again on its next use; false (the default, and for a convolution prepared with its weights) when
    /// the caller must hand over the new weights with <see cref="UpdateConv(IPreparedConv, ReadOnlySpan{float}, ReadOnlySpan{float})"/>.
    /// </summary>
    bool MarkWeightsChanged(IPreparedConv conv) => false;

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

    /// <summary>
    /// Batch norm with the batch's statistics (PyTorch's <c>BatchNorm2d</c> in train() mode), then an
    /// optional residual add and ReLU: per channel c, mean[c] and the biased variance[c] over the N, H
    /// and W of <paramref name="x"/> [N, C, H, W], then y = act(weight[c] * (x - mean[c]) /
    /// sqrt(variance[c] + <paramref name="epsilon"/>) + bias[c] [+ residual]). Writes
    /// <paramref name="mean"/> and <paramref name="variance"/> (C elements each), which
    /// <see cref="BatchNormTrainingBackward"/> reads and from which the caller updates the running
    /// statistics. <paramref name="weight"/> and <paramref name="bias"/> hold C elements;
    /// <paramref name="residual"/> and <paramref name="y"/> have x's shape and do not overlap x.
    /// Each channel's sums run in a fixed order: the result does not depend on the thread count.
    /// </summary>
    void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon);

    /// <summary>
    /// The gradient of <see cref="BatchNormTraining"/> before its residual add and ReLU (apply their
    /// gradients to <paramref name="dy"/> first), with the mean and variance terms: with x̂ = (x - mean)
    /// * invstd, invstd = 1 / sqrt(variance + <paramref name="epsilon"/>) and M = N*H*W per channel,
    /// dBias (+)= sum dy, dWeight (+)= sum dy * x̂, and dx = weight * invstd * (dy - sum dy / M - x̂ *
    /// sum(dy * x̂) / M) (overwritten; skipped when <paramref name="dx"/> is null). <paramref name="mean"/>
    /// and <paramref name="variance"/> are what the forward op wrote for this <paramref name="x"/>.
    /// <paramref name="dx"/> may be <paramref name="dy"/> itself, but no other overlap.
    /// </summary>
    void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate);

    /// <summary>Sets every element of <paramref name="t"/> to zero.</summary>
    void Zero(TensorView t);
}
