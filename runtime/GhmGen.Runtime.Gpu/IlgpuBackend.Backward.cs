// The ITrainingBackend ops of the ILGPU backend: argument checks (the same as ReferenceBackend's),
// then one launch of a kernel in Kernels/BackwardKernels.cs, queued under the backend's lock like
// every forward op. The kernels are compiled on the first backward call (or batch-statistics
// batch norm, Kernels/BatchNormKernels.cs).
using GhmGen.Backends.Gpu.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GhmGen.Backends.Gpu;

public sealed partial class IlgpuBackend
{
    // Compiled on first use, so an inference-only backend never builds them. Read under _gate.
    private BackwardLaunchers? _backwardKernels;

    private BackwardLaunchers Backward => _backwardKernels ??= new BackwardLaunchers(Accelerator);

    /// <inheritdoc/>
    public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        lock (_gate)
        {
            PreparedConv p = Prepared(conv);
            long biasLength = p.Bias?.Length ?? 0;
            if (weight.Length != p.Weight.Length || bias.Length != biasLength)
                throw new ArgumentException($"conv {p.Spec}: new weights have {weight.Length} + {bias.Length} elements; prepared with {p.Weight.Length} + {biasLength}");
            // Queued on the default stream after every op that reads the old weights.
            ((ArrayView<float>)p.Weight.View).CopyFromCPU(weight);
            if (p.Bias is { } b) ((ArrayView<float>)b.View).CopyFromCPU(bias);
        }
    }

    /// <inheritdoc/>
    public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate)
    {
        lock (_gate)
        {
            PreparedConv p = Prepared(conv);
            CheckConvShapes(p.Spec, dx, dy, "conv backward-data");
            if (dx.ElementCount == 0) return;
            Backward.ConvData(Elements(dx), View(dy), p.Weight.View, View(dx),
                new ConvGradLaunch(p.Spec, dx.N, dx.H, dx.W, hasBias: false, accumulate));
        }
    }

    /// <inheritdoc/>
    public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate)
    {
        lock (_gate)
        {
            CheckSpec(spec);
            CheckConvShapes(spec, x, dy, "conv backward-weights");
            if (dWeight.ElementCount != spec.WeightCount)
                throw new ArgumentException($"conv backward-weights {spec}: weight gradient {dWeight.ShapeText} does not hold {spec.WeightCount} elements", nameof(dWeight));
            if (dBias is { } bv && bv.ElementCount != spec.OutChannels)
                throw new ArgumentException($"conv backward-weights {spec}: bias gradient {bv.ShapeText} does not hold {spec.OutChannels} elements", nameof(dBias));
            if (spec.WeightCount + spec.OutChannels > int.MaxValue)
                throw new ArgumentException($"conv backward-weights {spec}: more than 2^31 gradient elements (one warp each)", nameof(spec));
            if (dy.ElementCount == 0)
            {
                // An empty batch contributes nothing.
                if (!accumulate) ZeroUnlocked(dWeight);
                if (!accumulate && dBias is { } empty) ZeroUnlocked(empty);
                return;
            }
            var launch = new ConvGradLaunch(spec, x.N, x.H, x.W, dBias is not null, accumulate);
            int elements = launch.WeightCount + (dBias is not null ? spec.OutChannels : 0);
            int warpsPerGroup = BackwardKernels.ReduceThreads / Accelerator.WarpSize;
            Backward.ConvWeights(new KernelConfig(new Index1D(Blocks(elements, warpsPerGroup)), new Index1D(BackwardKernels.ReduceThreads)),
                View(x), View(dy), View(dWeight), dBias is { } b ? View(b) : _unused.View, launch);
        }
    }

    /// <inheritdoc/>
    public void ReluBackward(TensorView y, TensorView dy, TensorView dx)
    {
        lock (_gate)
        {
            if (y.ElementCount != dy.ElementCount || y.ElementCount != dx.ElementCount)
                throw new ArgumentException($"relu backward: shapes {y.ShapeText}, {dy.ShapeText}, {dx.ShapeText} differ");
            if (dx.ElementCount == 0) return;
            Backward.Relu(Elements(dx), View(y), View(dy), View(dx));
        }
    }

    /// <inheritdoc/>
    public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate)
    {
        lock (_gate)
        {
            if (kernel <= 0 || stride <= 0 || padding < 0 || padding * 2 > kernel)
                throw new ArgumentException($"max-pool backward: kernel {kernel}, stride {stride}, padding {padding} are not a valid window");
            int oh = (x.H + 2 * padding - kernel) / stride + 1, ow = (x.W + 2 * padding - kernel) / stride + 1;
            if (dy.N != x.N || dy.C != x.C || dy.H != oh || dy.W != ow || dx.N != x.N || dx.C != x.C || dx.H != x.H || dx.W != x.W)
                throw new ArgumentException($"max-pool backward: input {x.ShapeText}, output gradient {dy.ShapeText} and input gradient {dx.ShapeText} do not fit");
            if (dx.ElementCount == 0) return;
            Backward.MaxPool(Elements(dx), View(x), View(dy), View(dx),
                new PoolLaunch(x.H, x.W, oh, ow, kernel, stride, padding), accumulate ? 1 : 0);
        }
    }

    /// <inheritdoc/>
    public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate)
    {
        lock (_gate)
        {
            if (dUpper.N != dLower.N || dUpper.C != dLower.C)
                throw new ArgumentException($"upsample backward: {dUpper.ShapeText} and {dLower.ShapeText} differ in batch or channels");
            if (dUpper.ElementCount == 0) return;
            if (dLower.ElementCount == 0)
            {
                if (!accumulate) ZeroUnlocked(dUpper);
                return;
            }
            Backward.Upsample(Elements(dUpper), View(dLower), View(dUpper),
                new UpsampleLaunch(dUpper.H, dUpper.W, dLower.H, dLower.W), accumulate ? 1 : 0);
        }
    }

    /// <inheritdoc/>
    public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon)
    {
        lock (_gate)
        {
            BatchNormChecks.Forward(x, weight, bias, residual, y, mean, variance);
            if (x.ElementCount == 0) return;
            var launch = new BatchNormLaunch(x.N, x.C, checked(x.H * x.W), epsilon, residual is not null, relu, inputGradient: false, accumulate: false);
            Backward.BatchNormForward(ChannelWarps(x.C), View(x), View(weight), View(bias), residual is { } r ? View(r) : _unused.View,
                View(y), View(mean), View(variance), launch);
        }
    }

    /// <inheritdoc/>
    public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate)
    {
        lock (_gate)
        {
            BatchNormChecks.Backward(x, dy, weight, mean, variance, dx, dWeight, dBias);
            if (x.C == 0) return;
            var launch = new BatchNormLaunch(x.N, x.C, checked(x.H * x.W), epsilon, residual: false, relu: false, dx is not null, accumulate);
            Backward.BatchNormBackward(ChannelWarps(x.C), View(x), View(dy), View(weight), View(mean), View(variance),
                dx is { } d ? View(d) : _unused.View, View(dWeight), View(dBias), launch);
        }
    }

    // One warp per channel, BatchNormKernels.Threads threads per group.
    private KernelConfig ChannelWarps(int channels) =>
        new(new Index1D(Blocks(channels, BatchNormKernels.Threads / Accelerator.WarpSize)), new Index1D(BatchNormKernels.Threads));

    /// <inheritdoc/>
    public void Zero(TensorView t)
    {
        lock (_gate) ZeroUnlocked(t);
    }

    private void ZeroUnlocked(TensorView t)
    {
        if (t.ElementCount == 0) return;
        Backward.Zero(Elements(t), View(t));
    }

    private static PreparedConv Prepared(IPreparedConv conv) =>
        conv as PreparedConv ?? throw new ArgumentException($"conv {conv.Spec} was not prepared by this ILGPU backend", nameof(conv));

    // x (or dx) is [N, in, H, W] and dy [N, out, OH, OW] of one convolution.
    private static void CheckConvShapes(ConvSpec s, TensorView x, TensorView dy, string op)
    {
        if (x.C != s.InChannels || dy.C != s.OutChannels || dy.N != x.N || dy.H != s.OutputSize(x.H) || dy.W != s.OutputSize(x.W))
            throw new ArgumentException($"{op} {s}: input {x.ShapeText} does not give output {dy.ShapeText}");
    }

    /// <summary>The backward kernels, loaded once per accelerator.</summary>
    private sealed class BackwardLaunchers(Accelerator accelerator)
    {
        public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch> ConvData { get; } =
            accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch>(BackwardKernels.ConvBackwardData);

        public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch> ConvWeights { get; } =
            accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvGradLaunch>(BackwardKernels.ConvBackwardWeights);

        public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> Relu { get; } =
            accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernels.ReluBackward);

        public Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolLaunch, int> MaxPool { get; } =
            accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, PoolLaunch, int>(BackwardKernels.MaxPool2dBackward);

        public Action<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch, int> Upsample { get; } =
            accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch, int>(BackwardKernels.UpsampleNearestBackward);

        public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch> BatchNormForward { get; } =
            accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch>(BatchNormKernels.BatchNormForward);

        public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch> BatchNormBackward { get; } =
            accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormLaunch>(BatchNormKernels.BatchNormBackward);

        public Action<Index1D, ArrayView<float>> Zero { get; } =
            accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>>(BackwardKernels.Zero);
    }
}
