// The backward ops of ITrainingBackend on the CPU backend, under the same lock and worker pool
// as the forward ops, allocating nothing in steady state:
// - Conv2dBackwardData: stride 1 with padding <= k - 1 runs the forward convolution machinery
//   (GEMM, Winograd, small-map) on dy with transposed, flipped weights (dx += when accumulating,
//   as an in-place residual); other specs run columns-then-scatter (ConvInputGradient). The
//   backward-data weights are made from the forward panels (or the weight source) on a convolution's first
//   backward-data call and rebuilt, in row ranges on all workers (ConvRepack), when a call finds them
//   stale after an UpdateConv. Those of a convolution applied at several levels (Conv2dShared) have
//   arrays of their own; every other convolution's live in one shared scratch (transient panels,
//   PackedConvWeights), rebuilt when a call finds another convolution's there;
// - Conv2dBackwardWeights: dense 3x3 stride 1 over enough tiles as Winograd F(4x4, 3x3) (WinogradWeightGradient),
//   everything else as the pixel-reduction GEMM of ConvWeightGradient; then the finishing pass;
// - ReluBackward, MaxPool2dBackward, UpsampleNearestBackward, Zero: CpuPointwiseOps work items.
// - BatchNormTraining and its backward: CpuBatchNorm, one item per channel (thread-count independent).
// Results depend on the thread count (how the pixel sums are split) but not on scheduling.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (against ReferenceBackend).
namespace GhmGen.Backends.Cpu;

public sealed unsafe partial class CpuBackend
{
    private readonly ConvRepack repack = new();
    private readonly CpuBatchNorm batchNorm = new();
    private float[] refreshScratch = [];
    // The transient backward-data panels of every convolution that has them (PackedConvWeights.TransientPanels),
    // and whose they hold now (Transposed: the columns-then-scatter panels of Form, else Form's own panels).
    private float[] transientPanels = [];
    private (PackedConvWeights? Form, bool Transposed) transientHolder;

    /// <inheritdoc/>
    public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            PackedConvWeights packed = Prepared(conv);
            ConvSpec s = packed.Spec;
            if (packed.WeightSource is not null)
                throw new ArgumentException($"conv {s} reads its weights from its source: call MarkWeightsChanged after changing them", nameof(conv));
            if (weight.Length != s.WeightCount)
                throw new ArgumentException($"conv {s}: new weight has {weight.Length} elements; it needs {s.WeightCount}", nameof(weight));
            if (bias.Length != (packed.HasBias ? s.OutChannels : 0))
                throw new ArgumentException($"conv {s}: new bias has {bias.Length} elements; it was prepared with {(packed.HasBias ? s.OutChannels : 0)}", nameof(bias));
            // The forward panels (every other form's source) and the transposed panels now, in row ranges on all
            // workers; the Winograd forms and the backward-data panels when an op next uses them (FreshWinograd,
            // FreshPanels): bitwise what the single-threaded Repack writes.
            fixed (float* pw = weight)
            fixed (float* pb = bias)
                pool.Run(repack, repack.PrepareUpdate(packed, pw, weight.Length, pb, bias.Length));
            packed.WinogradStale = packed.Winograd is not null;
            if (packed.BackwardData is { } backward)
            {
                backward.PanelsStale = true;
                backward.WinogradStale = backward.Winograd is not null;
            }
            if (packed.TransientTransposedPanels) packed.TransposedStale = true;
        }
    }

    /// <inheritdoc/>
    public bool MarkWeightsChanged(IPreparedConv conv)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            PackedConvWeights packed = Prepared(conv);
            if (packed.WeightSource is null) return false;
            // Every form is packed from the source again on its next use.
            packed.PanelsStale = true;
            packed.WinogradStale = packed.Winograd is not null;
            if (packed.BackwardData is { } backward)
            {
                backward.PanelsStale = true;
                backward.WinogradStale = backward.Winograd is not null;
            }
            if (packed.TransposedPanels is not null) packed.TransposedStale = true;
            return true;
        }
    }

    // The current weights of the forward form `forward` and (when it has one) its bias, in the refresh scratch:
    // read from its source, or unpacked from its panels (the bias then empty: the panels' padded one is used).
    // Under the lock.
    private Span<float> CurrentWeights(PackedConvWeights forward, out Span<float> bias)
    {
        int n = checked((int)forward.Spec.WeightCount), outChannels = forward.Spec.OutChannels;
        if (refreshScratch.Length < n + outChannels) refreshScratch = GC.AllocateUninitializedArray<float>(n + outChannels, pinned: true);
        Span<float> weight = refreshScratch.AsSpan(0, n);
        if (forward.WeightSource is not { } source)
        {
            forward.UnpackWeight(weight);
            bias = default;
            return weight;
        }
        bias = forward.HasBias ? refreshScratch.AsSpan(n, outChannels) : default;
        source.ReadWeights(weight, bias);
        return weight;
    }

    // The Winograd form of `form` with its current weights: made on first use (backward-data form), transformed
    // again after an UpdateConv. Under the lock.
    private WinogradWeights FreshWinograd(PackedConvWeights form)
    {
        if (form.Winograd is null)
        {
            form.AllocateWinograd();
            EnsureWinogradScratch(form.Spec.InChannels);
            form.WinogradStale = true;
        }
        if (form.WinogradStale)
        {
            Refresh(form, winograd: true);
            form.WinogradStale = false;
        }
        return form.Winograd!;
    }

    // The GEMM panels of `form` with its current weights (only a backward-data form's can be stale, or be
    // transient and not in the shared scratch now). Under the lock.
    private void FreshPanels(PackedConvWeights form)
    {
        if (form.TransientPanels)
        {
            if (transientHolder == (form, false) && !form.PanelsStale) return;
            BindTransient(form, transposed: false);
        }
        else if (!form.PanelsStale) return;
        Refresh(form, winograd: false);
        form.PanelsStale = false;
    }

    // The columns-then-scatter panels of `packed` with its current weights, in the shared scratch when transient. Under the lock.
    private void FreshTransposedPanels(PackedConvWeights packed)
    {
        if (packed.TransientTransposedPanels)
        {
            if (transientHolder == (packed, true) && !packed.TransposedStale) return;
            BindTransient(packed, transposed: true);
        }
        else if (!packed.TransposedStale) return; // own panels: UpdateConv rewrote them (stale only when read from a source)
        Span<float> weight = CurrentWeights(packed, out _);
        fixed (float* pw = weight)
            pool.Run(repack, repack.PrepareTransposed(packed, pw, weight.Length));
        packed.TransposedStale = false;
    }

    // Moves the shared scratch from its holder (left with no panels, so that only one form refers to it) to `form`.
    private void BindTransient(PackedConvWeights form, bool transposed)
    {
        ReleaseTransient();
        long length = transposed ? form.TransposedLength : form.PanelsLength;
        if (transientPanels.LongLength < length) transientPanels = GC.AllocateUninitializedArray<float>(checked((int)length), pinned: true);
        form.BindPanels(transientPanels, transposed);
        transientHolder = (form, transposed);
    }

    // Leaves the shared scratch with no holder (the holder's panels are stale, rebuilt on its next use).
    private void ReleaseTransient()
    {
        if (transientHolder.Form is { } previous)
        {
            previous.BindPanels(null, transientHolder.Transposed);
            if (transientHolder.Transposed) previous.TransposedStale = true;
            else previous.PanelsStale = true;
        }
        transientHolder = default;
    }

    /// <summary>
    /// Bytes of the scratch that the transient backward-data panels share (convolutions not applied at several
    /// levels: see <see cref="PreparedBytes"/>, which counts them as 0). For memory accounting.
    /// </summary>
    public long TransientPanelBytes
    {
        get
        {
            lock (gate) return 4L * transientPanels.LongLength;
        }
    }

    // Rebuilds one form from the forward panels (unpacked into the backend's refresh scratch), on all workers.
    private void Refresh(PackedConvWeights form, bool winograd)
    {
        PackedConvWeights source = form.Owner ?? form;
        Span<float> weight = CurrentWeights(source, out Span<float> sourceBias);
        // Unpacked from panels (only a Winograd form then: dense, groups 1), the forward panels' padded bias starts
        // with the bias itself; a backward-data form has none.
        ReadOnlySpan<float> bias = form.IsTransposedForm || !source.HasBias ? default
            : source.WeightSource is not null ? sourceBias : source.Bias.AsSpan(0, source.Spec.OutChannels);
        fixed (float* pw = weight)
        fixed (float* pb = bias)
            pool.Run(repack, repack.PrepareRefresh(form, winograd, pw, weight.Length, pb, bias.Length));
    }

    /// <summary>
    /// Bytes of host memory that <paramref name="conv"/> (prepared by this backend) holds, per form: the
    /// forward GEMM panels and bias, the forward Winograd form, and the backward-data forms once the first
    /// backward-data call made them (the transposed convolution's panels and Winograd form, or the
    /// transposed panels of the columns-then-scatter path). For memory accounting (bench train-profile).
    /// </summary>
    public (long Panels, long Winograd, long BackwardPanels, long BackwardWinograd) PreparedBytes(IPreparedConv conv)
    {
        PackedConvWeights packed = Prepared(conv);
        static long Form(PackedConvWeights p) => 4L * ((p.TransientPanels ? 0 : p.Panels.LongLength) + p.Bias.LongLength);
        static long Wino(PackedConvWeights p) => p.Winograd is { } w ? 4L * (w.Panels.LongLength + w.Bias.LongLength) : 0;
        long backwardPanels = packed.BackwardData is { } b ? Form(b) : packed.TransientTransposedPanels ? 0 : 4L * (packed.TransposedPanels?.LongLength ?? 0);
        return (Form(packed), Wino(packed), backwardPanels, packed.BackwardData is { } bw ? Wino(bw) : 0);
    }

    /// <inheritdoc/>
    public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            PackedConvWeights packed = Prepared(conv);
            ConvSpec s = packed.Spec;
            CheckConvShapes(s, dx, dy, "conv backward-data");
            if (Overlaps(dx, dy))
                throw new ArgumentException($"conv backward-data {s}: input gradient {dx.ShapeText} overlaps the output gradient {dy.ShapeText}", nameof(dx));
            EnsureBackwardData(packed);
            if (packed.BackwardData is { } transposed)
            {
                // dx (+)= conv(dy, W') at padding k - 1 - p: the forward paths, dx as an in-place residual.
                RunConv(transposed, dy, dx, accumulate ? dx : null, relu: false);
                return;
            }
            if (dx.ElementCount == 0) return;
            if (dy.ElementCount == 0)
            {
                if (!accumulate) ZeroUnlocked(dx);
                return;
            }
            FreshTransposedPanels(packed);
            fixed (float* pdy = Span(dy))
            fixed (float* pdx = Span(dx))
            fixed (float* pa = packed.TransposedPanels)
            {
                int phases = inputGradient.Prepare(packed, dy, dx, pdy, pdx, pa, accumulate, pool.WorkerCount);
                if (inputGradient.Chunks > 1) ChunkedInputGradientCalls++;
                if (!accumulate && !inputGradient.ZeroesInBands) ZeroUnlocked(dx);
                for (int phase = 0; phase < phases; phase++)
                    pool.Run(inputGradient, inputGradient.PreparePhase(phase));
            }
        }
    }

    /// <inheritdoc/>
    public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            if (spec.InChannels <= 0 || spec.OutChannels <= 0 || spec.Kernel <= 0 || spec.Stride <= 0 || spec.Padding < 0 || spec.Groups <= 0
                || spec.InChannels % spec.Groups != 0 || spec.OutChannels % spec.Groups != 0)
                throw new ArgumentException($"invalid convolution {spec}", nameof(spec));
            CheckConvShapes(spec, x, dy, "conv backward-weights");
            if (dWeight.ElementCount != spec.WeightCount)
                throw new ArgumentException($"conv backward-weights {spec}: weight gradient {dWeight.ShapeText} does not hold {spec.WeightCount} elements", nameof(dWeight));
            if (dBias is { } bv && bv.ElementCount != spec.OutChannels)
                throw new ArgumentException($"conv backward-weights {spec}: bias gradient {bv.ShapeText} does not hold {spec.OutChannels} elements", nameof(dBias));
            if (Overlaps(dWeight, x) || Overlaps(dWeight, dy) || (dBias is { } b && (Overlaps(b, x) || Overlaps(b, dy) || Overlaps(b, dWeight))))
                throw new ArgumentException($"conv backward-weights {spec}: a gradient overlaps an input");
            ReadOnlySpan<float> bs = dBias is { } bias ? Span(bias) : default;
            fixed (float* px = Span(x))
            fixed (float* pdy = Span(dy))
            fixed (float* pdw = Span(dWeight))
            fixed (float* pdb = bs)
            {
                if (WinogradWeightGradientApplies(spec, x, dy))
                {
                    // The transient panels' scratch is free during a weight gradient (which reads no weights): it lends
                    // its memory to the pass's dU and output-gradient panels, holding no convolution's panels after.
                    ReleaseTransient();
                    fixed (float* lent = transientPanels)
                        winogradWeightGradient.Run(pool, spec, x, px, pdy, pdw, dBias is null ? null : pdb, accumulate, lent, transientPanels.LongLength);
                    WinogradWeightGradientCalls++;
                    return;
                }
                int items = weightGradient.Prepare(spec, x, px, pdy, pdw, dBias is null ? null : pdb, accumulate, pool.WorkerCount);
                pool.Run(weightGradient, items);
                if (weightGradient.NeedsFinish) pool.Run(weightGradient, weightGradient.PrepareFinish());
            }
        }
    }

    // Whether the weight gradient runs as Winograd F(4x4, 3x3) (WinogradWeightGradient): with Winograd on, a dense
    // 3x3 stride-1 convolution over at least WinogradWeightGradient.MinimumTilesFor(spec) 4x4 tiles (WinogradMinimumTiles,
    // when set, instead).
    private bool WinogradWeightGradientApplies(ConvSpec spec, TensorView x, TensorView dy) =>
        useWinograd && WinogradWeightGradient.Applies(spec, x, dy.ElementCount, kernel)
        && WinogradWeightGradient.TileCount(x) >= (WinogradMinimumTiles >= 0 ? WinogradMinimumTiles : WinogradWeightGradient.MinimumTilesFor(spec));

    /// <inheritdoc/>
    public void ReluBackward(TensorView y, TensorView dy, TensorView dx)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            ReadOnlySpan<float> ys = Span(y), dys = Span(dy);
            Span<float> dxs = Span(dx);
            if (ys.Length != dys.Length || ys.Length != dxs.Length)
                throw new ArgumentException($"relu backward: shapes {y.ShapeText}, {dy.ShapeText}, {dx.ShapeText} differ");
            if (Overlaps(dx, dy) && dx.Offset != dy.Offset)
                throw new ArgumentException("relu backward: the input gradient overlaps the output gradient without being the same tensor", nameof(dx));
            fixed (float* py = ys)
            fixed (float* pdy = dys)
            fixed (float* pdx = dxs)
                pool.Run(pointwise, pointwise.PrepareElementwise(PointwiseOp.ReluBackward, py, pdy, pdx, dxs.Length));
        }
    }

    /// <inheritdoc/>
    public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernelSize, int stride, int padding, bool accumulate)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            if (kernelSize <= 0 || stride <= 0 || padding < 0 || 2 * padding > kernelSize)
                throw new ArgumentException($"max-pool backward: invalid kernel {kernelSize}, stride {stride}, padding {padding}");
            int oh = (x.H + 2 * padding - kernelSize) / stride + 1, ow = (x.W + 2 * padding - kernelSize) / stride + 1;
            if (dy.N != x.N || dy.C != x.C || dy.H != oh || dy.W != ow || dx.N != x.N || dx.C != x.C || dx.H != x.H || dx.W != x.W)
                throw new ArgumentException($"max-pool backward: input {x.ShapeText}, output gradient {dy.ShapeText} and input gradient {dx.ShapeText} do not fit");
            if (Overlaps(dx, x) || Overlaps(dx, dy))
                throw new ArgumentException("max-pool backward: the input gradient overlaps the input or the output gradient", nameof(dx));
            fixed (float* px = Span(x))
            fixed (float* pdy = Span(dy))
            fixed (float* pdx = Span(dx))
                pool.Run(pointwise, pointwise.PrepareMaxPoolBackward(px, pdy, pdx, x, dy, kernelSize, stride, padding, accumulate));
        }
    }

    /// <inheritdoc/>
    public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            if (dUpper.N != dLower.N || dUpper.C != dLower.C)
                throw new ArgumentException($"upsample backward: {dUpper.ShapeText} and {dLower.ShapeText} differ in batch or channels");
            if (Overlaps(dLower, dUpper))
                throw new ArgumentException("upsample backward: the gradients overlap", nameof(dUpper));
            fixed (float* pl = Span(dLower))
            fixed (float* pu = Span(dUpper))
                pool.Run(pointwise, pointwise.PrepareUpsampleBackward(pl, pu, dLower, dUpper, accumulate));
        }
    }

    /// <inheritdoc/>
    public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            BatchNormChecks.Forward(x, weight, bias, residual, y, mean, variance);
            if (x.ElementCount == 0) return;
            ReadOnlySpan<float> rs = residual is { } r ? Span(r) : default;
            fixed (float* px = Span(x))
            fixed (float* pw = Span(weight))
            fixed (float* pb = Span(bias))
            fixed (float* pr = rs)
            fixed (float* py = Span(y))
            fixed (float* pm = Span(mean))
            fixed (float* pv = Span(variance))
                pool.Run(batchNorm, batchNorm.PrepareForward(px, pw, pb, pr, relu, py, pm, pv, x, epsilon));
        }
    }

    /// <inheritdoc/>
    public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            BatchNormChecks.Backward(x, dy, weight, mean, variance, dx, dWeight, dBias);
            if (x.C == 0) return;
            Span<float> dxs = dx is { } d ? Span(d) : default;
            fixed (float* px = Span(x))
            fixed (float* pdy = Span(dy))
            fixed (float* pw = Span(weight))
            fixed (float* pm = Span(mean))
            fixed (float* pv = Span(variance))
            fixed (float* pdx = dxs)
            fixed (float* pdw = Span(dWeight))
            fixed (float* pdb = Span(dBias))
                pool.Run(batchNorm, batchNorm.PrepareBackward(px, pdy, pw, pm, pv, pdx, pdw, pdb, x, epsilon, accumulate));
        }
    }

    /// <inheritdoc/>
    public void Zero(TensorView t)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            ZeroUnlocked(t);
        }
    }

    private void ZeroUnlocked(TensorView t)
    {
        Span<float> ts = Span(t);
        fixed (float* pt = ts)
            pool.Run(pointwise, pointwise.PrepareElementwise(PointwiseOp.Zero, null, null, pt, ts.Length));
    }

    private PackedConvWeights Prepared(IPreparedConv conv) =>
        conv is PackedConvWeights packed && (packed.Kernel == kernel || packed.Kernel == kernel.Narrow)
            ? packed
            : throw new ArgumentException("the convolution was not prepared by this CPU backend", nameof(conv));

    // The backward-data weights of `packed`, made from its current weights on first use (the only
    // allocation of the backward ops after their first call, besides the backward-data Winograd form
    // and its scratch on the first Winograd call, FreshWinograd).
    private void EnsureBackwardData(PackedConvWeights packed)
    {
        if (packed.BackwardData is not null || packed.TransposedPanels is not null) return;
        // A convolution applied at several levels (the shared head) runs backward-data once per level between two
        // UpdateConvs, so it keeps panels of its own; any other gets transient ones in the shared scratch, packed
        // when a call first needs them.
        bool transient = !packed.AppliedShared;
        // Panels of its own are packed now from the forward weights, in the reused refresh scratch: no weight-sized
        // garbage per convolution (60 of them in R-50's first step would otherwise sit in the large-object heap
        // until a full collection).
        Span<float> weight = transient ? default : CurrentWeights(packed, out _);
        // With WinogradWeightsPerCall the backward-data form keeps only its panels too, and each Winograd call
        // transforms them into the shared scratch, as the forward form does.
        packed.EnsureBackwardData(weight, kernel, useWinograd && !WinogradWeightsPerCall, transient);
        if (packed.BackwardData is { } form && (form.WinogradApplies || TransformsPerCall(form)))
        {
            EnsureWinogradScratch(form.Spec.InChannels);
            if (TransformsPerCall(form)) EnsureWinogradWeightScratch(form);
        }
    }

    // x (or dx) is [N, in, H, W] and dy [N, out, OH, OW] of one convolution.
    private static void CheckConvShapes(ConvSpec s, TensorView x, TensorView dy, string op)
    {
        int oh = s.OutputSize(x.H), ow = s.OutputSize(x.W);
        if (x.C != s.InChannels || dy.C != s.OutChannels || dy.N != x.N || dy.H != oh || dy.W != ow || oh <= 0 || ow <= 0)
            throw new ArgumentException($"{op} {s}: input {x.ShapeText} does not give output {dy.ShapeText}");
    }
}
