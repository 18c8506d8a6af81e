// The fast CPU implementation of IBackend: convolution through the packed GEMM
// (GemmConvolution + GemmMicroKernels; SharedInputConvolution for outputs of 9..512 pixels per
// image, SmallMapConvolution up to 8, WinogradConvolution for large 3x3 stride-1 ones,
// GroupedDirectConvolution for grouped stride-1 ones), and SIMD, multi-threaded max-pool, nearest
// upsample-add, add(+ReLU), ReLU and sigmoid (CpuPointwiseOps). Tensors live in HostBuffer
// (managed float arrays, pinned for the duration of each call). Work runs on a CpuWorkerPool, so
// a steady-state call allocates nothing. Ops that use the workers or their scratch hold one lock
// from start to end, so callers on several threads are served one op at a time (each op already
// uses every worker). Conv2d accepts residual == y (accumulate in place), not x overlapping y.
// The backward ops of ITrainingBackend are in CpuBackend.Training.cs.
// Reference tests: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs (every op against
// ReferenceBackend), CpuBackwardTests.cs (the backward ops), CpuBackendAllocationTests.cs.
using System.Runtime.InteropServices;

namespace GhmGen.Backends.Cpu;

/// <summary>
/// The managed SIMD, multi-threaded CPU backend (AOT-safe). Thread-safe: any number of threads
/// may call it at once (sessions of several detectors, or several sessions of one); each op runs
/// alone on all of the backend's workers, so concurrent callers share its threads op by op.
/// Ops on tensors that one caller is writing must not be issued by another at the same time.
/// After <see cref="Dispose"/> every op throws <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed unsafe partial class CpuBackend : ITrainingBackend
{
    private readonly CpuWorkerPool pool;
    private readonly GemmKernel kernel;
    private readonly float*[] scratch;
    private readonly GemmConvolution convolution;
    private readonly CpuPointwiseOps pointwise;
    private readonly bool useWinograd;
    private readonly float*[] winogradInput, winogradProducts;
    private readonly WinogradConvolution winogradConvolution;
    private readonly WinogradWeightTransform winogradWeightTransform = new();
    private float* winogradWeightScratch;
    private long winogradWeightElements;
    private readonly SmallMapConvolution smallMapConvolution = new();
    private readonly SharedInputConvolution sharedInputConvolution = new();
    private readonly ConcatenatedConvolution concatenatedConvolution = new();
    private readonly GroupedDirectConvolution groupedDirectConvolution;
    private readonly ConvWeightGradient weightGradient;
    private readonly WinogradWeightGradient winogradWeightGradient;
    private readonly ConvInputGradient inputGradient;
    private readonly float* zeroBias;
    private readonly Lock gate = new();
    private long winogradInputElements;
    private bool disposed;

    /// <summary>
    /// Creates a backend running on <paramref name="threads"/> threads (0: one per processor) with
    /// the given micro-kernel (Auto: the best this processor supports). With
    /// <paramref name="winograd"/>, dense 3x3 stride-1 convolutions on maps of at least one tile
    /// block per thread use Winograd F(4x4, 3x3) (4x fewer multiply-adds, a few times larger
    /// rounding error than the direct sum; see WinogradConvolution). The backend owns its worker
    /// threads: dispose it (after everything prepared or allocated on it) to stop them.
    /// </summary>
    /// <param name="threads">Threads an op runs on, the calling one included (so <c>threads - 1</c> background workers); 0 for <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="kernelKind">The GEMM micro-kernel: Auto picks AVX-512, AVX2 or the portable one, as the processor allows.</param>
    /// <param name="winograd">Whether large 3x3 stride-1 convolutions use Winograd F(4x4, 3x3).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is negative.</exception>
    /// <exception cref="PlatformNotSupportedException"><paramref name="kernelKind"/> names a kernel this processor cannot run.</exception>
    public CpuBackend(int threads = 0, GemmKernelKind kernelKind = GemmKernelKind.Auto, bool winograd = true)
    {
        if (threads < 0)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be 0 (all processors) or positive");
        kernel = GemmKernel.Create(kernelKind);
        pool = new CpuWorkerPool(threads == 0 ? Environment.ProcessorCount : threads);
        scratch = new float*[pool.WorkerCount];
        nuint bytes = (nuint)(GemmConvolution.ScratchElements(kernel) * sizeof(float));
        for (int i = 0; i < scratch.Length; i++) scratch[i] = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        convolution = new GemmConvolution(kernel, scratch);
        groupedDirectConvolution = new GroupedDirectConvolution(scratch, GemmConvolution.ScratchElements(kernel));
        pointwise = new CpuPointwiseOps();
        useWinograd = winograd;
        winogradInput = new float*[pool.WorkerCount];
        winogradProducts = new float*[pool.WorkerCount];
        zeroBias = (float*)NativeMemory.AlignedAlloc((nuint)(kernel.Rows * sizeof(float)), 64);
        new Span<float>(zeroBias, kernel.Rows).Clear();
        winogradConvolution = new WinogradConvolution(kernel, winogradInput, winogradProducts, zeroBias);
        weightGradient = new ConvWeightGradient(kernel, zeroBias, pool.WorkerCount);
        winogradWeightGradient = new WinogradWeightGradient(kernel, zeroBias, pool.WorkerCount);
        inputGradient = new ConvInputGradient(kernel, zeroBias, pool.WorkerCount);
    }

    /// <inheritdoc/>
    public string Name => "cpu";

    /// <summary>Threads that run ops (the caller included).</summary>
    public int ThreadCount => pool.WorkerCount;

    /// <summary>The micro-kernel in use.</summary>
    public GemmKernelKind KernelKind => kernel.Kind;

    /// <summary>
    /// Fewest 4x4 output tiles (N x tiles per image) for which a Winograd-capable convolution uses
    /// Winograd; -1 (default): a block of the narrowest NR tiles per image and a full block for every
    /// thread over the batch, below which the direct GEMM wastes fewer lanes or keeps the threads busier.
    /// Tests set 0 to force Winograd on small images.
    /// </summary>
    internal long WinogradMinimumTiles { get; set; } = -1;

    /// <summary>
    /// Fewest input channels for which a Winograd-capable convolution uses Winograd (unless
    /// <see cref="WinogradMinimumTiles"/> forces it): with fewer, the input and output transforms
    /// outweigh the 4x fewer multiply-adds (the demo detector's 3x3 32-32 on 40x48 ran at 24 GFLOP per
    /// CPU-second through Winograd; as a GEMM its training step took 65-78 ms instead of 87-93 at
    /// 160x192); R-50's and ResNeXt's 3x3s all have 64 or more.
    /// </summary>
    internal const int WinogradMinimumChannels = 64;

    /// <summary>
    /// When true, a Winograd-capable convolution keeps only its GEMM panels, and each call that
    /// runs it through Winograd first transforms them into one scratch shared by every
    /// convolution (in passes of output channels for the largest): the stored transformed form is
    /// 4x the size of the 3x3 weights (R-50 RetinaNet: ~250 MB), the per-call transform costs a
    /// few percent of the convolution. The same holds for the backward-data form of training
    /// (the transposed convolution's panels): in a training step each form is used about once
    /// between two <c>UpdateConv</c>s, so transforming per call costs about what rebuilding a stored
    /// form costs, except for convolutions applied at several levels (the shared head). False
    /// (default): the transformed forms are stored, made at <see cref="PrepareConv(ConvSpec, ReadOnlySpan{float}, ReadOnlySpan{float})"/> (forward) or on
    /// first use (backward-data) and rebuilt after an <c>UpdateConv</c> (bitwise the double-rounded
    /// transform; the per-call one rounds in float). Set it before preparing any convolution.
    /// </summary>
    public bool WinogradWeightsPerCall { get; init; }

    /// <summary>Convolution calls that took the small-map path so far (tests check that the path ran).</summary>
    internal long SmallMapCalls { get; private set; }

    /// <summary>
    /// Whether the shared-input and concatenated GEMM paths pack their input by gathers (GatheredColumns) where
    /// those apply; tests turn it off to check the packing by runs that remains for larger planes.
    /// </summary>
    internal bool GatheredPacking
    {
        get => sharedInputConvolution.Gathers;
        set => sharedInputConvolution.Gathers = concatenatedConvolution.Gathers = value;
    }

    /// <summary>Shared-input and concatenated convolution calls whose input GatheredColumns packed so far.</summary>
    internal long GatheredPackingCalls { get; private set; }

    /// <summary>
    /// Whether grouped stride-1 convolutions run GroupedDirectConvolution (no im2col packing) where it applies;
    /// tests turn it off to compare with the GEMM path.
    /// </summary>
    internal bool GroupedDirect { get; set; } = true;

    /// <summary>Convolution calls that took the grouped direct path so far (tests check that the path ran).</summary>
    internal long GroupedDirectCalls { get; private set; }

    /// <summary>Columns-then-scatter input gradients that split each group's input channels into chunks (small maps; tests).</summary>
    internal long ChunkedInputGradientCalls { get; private set; }

    /// <summary>Convolution calls that took the shared-input path (SharedInputConvolution) so far.</summary>
    internal long SharedInputCalls { get; private set; }

    /// <summary>Weight gradients computed by Winograd F(4x4, 3x3) (WinogradWeightGradient) so far (tests).</summary>
    internal long WinogradWeightGradientCalls { get; private set; }

    /// <summary>Winograd weight-gradient passes that ran in the transient panels' scratch (tests).</summary>
    internal long WinogradWeightGradientLentPasses => winogradWeightGradient.LentPasses;

    /// <summary>Passes of per-call Winograd weight transforms run so far (one or more per such convolution call).</summary>
    public long WinogradWeightPasses { get; private set; }

    /// <inheritdoc/>
    public DeviceBuffer? WrapHost(float[] values)
    {
        ThrowIfDisposed();
        return new HostBuffer(values);
    }

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long elements)
    {
        ThrowIfDisposed();
        if (elements < 0 || elements > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(elements), elements, "a CPU buffer holds 0 .. Array.MaxLength floats");
        return new HostBuffer(elements);
    }

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<float> source, TensorView destination)
    {
        ThrowIfDisposed();
        CheckLength(source.Length, destination);
        source.CopyTo(Span(destination));
    }

    /// <inheritdoc/>
    public void Download(TensorView source, Span<float> destination)
    {
        ThrowIfDisposed();
        CheckLength(destination.Length, source);
        Span(source).CopyTo(destination);
    }

    /// <inheritdoc/>
    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        ThrowIfDisposed();
        CheckSpec(spec);
        if (weight.Length != spec.WeightCount)
            throw new ArgumentException($"weight has {weight.Length} elements; {spec} needs {spec.WeightCount}", nameof(weight));
        if (bias.Length != 0 && bias.Length != spec.OutChannels)
            throw new ArgumentException($"bias has {bias.Length} elements; expected 0 or {spec.OutChannels}", nameof(bias));
        // Packing touches only the new object; the shared Winograd scratch grows under the lock.
        var packed = new PackedConvWeights(spec, weight, bias, KernelFor(spec), useWinograd && !WinogradWeightsPerCall);
        return WithScratch(packed);
    }

    /// <summary>
    /// Prepares a convolution whose forward panels, like its backward-data ones, live in the scratch shared by
    /// every such convolution and are packed from <paramref name="source"/> when a call needs them (after
    /// <see cref="MarkWeightsChanged"/>, or when another convolution's are there). Results are bitwise those of
    /// <see cref="PrepareConv(ConvSpec, ReadOnlySpan{float}, ReadOnlySpan{float})"/> with the same weights.
    /// </summary>
    /// <inheritdoc/>
    public IPreparedConv PrepareConv(ConvSpec spec, IConvWeightSource source, bool hasBias)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(source);
        CheckSpec(spec);
        return WithScratch(new PackedConvWeights(spec, source, hasBias, KernelFor(spec), useWinograd && !WinogradWeightsPerCall));
    }

    private static void CheckSpec(ConvSpec spec)
    {
        if (spec.InChannels <= 0 || spec.OutChannels <= 0 || spec.Kernel <= 0 || spec.Stride <= 0 || spec.Padding < 0 || spec.Groups <= 0
            || spec.InChannels % spec.Groups != 0 || spec.OutChannels % spec.Groups != 0)
            throw new ArgumentException($"invalid convolution {spec}", nameof(spec));
    }

    // The narrow kernel for convolutions of at most 4 outputs per group, else the full one.
    private GemmKernel KernelFor(ConvSpec spec) => spec.OutChannels / spec.Groups <= 4 ? kernel.Narrow : kernel;

    // Grows the shared Winograd scratch (under the lock) for a newly prepared convolution that may use it.
    private PackedConvWeights WithScratch(PackedConvWeights packed)
    {
        if (packed.Winograd is not null || TransformsPerCall(packed))
        {
            lock (gate)
            {
                ThrowIfDisposed();
                EnsureWinogradScratch(packed.Spec.InChannels);
                if (TransformsPerCall(packed)) EnsureWinogradWeightScratch(packed);
            }
        }
        return packed;
    }

    /// <inheritdoc/>
    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            PackedConvWeights packed = Own(conv);
            CheckConv(packed, x, y, residual);
            RunConv(packed, x, y, residual, relu);
        }
    }

    // The convolution as this backend prepared it.
    private PackedConvWeights Own(IPreparedConv conv) =>
        conv is PackedConvWeights packed && (packed.Kernel == kernel || packed.Kernel == kernel.Narrow)
            ? packed : throw new ArgumentException("the convolution was not prepared by this CPU backend", nameof(conv));

    private static void CheckConv(PackedConvWeights packed, TensorView x, TensorView y, TensorView? residual)
    {
        ConvSpec s = packed.Spec;
        int oh = s.OutputSize(x.H), ow = s.OutputSize(x.W);
        if (x.C != s.InChannels || y.C != s.OutChannels || y.H != oh || y.W != ow || y.N != x.N || oh <= 0 || ow <= 0)
            throw new ArgumentException($"conv {s}: input {x.ShapeText} does not give output {y.ShapeText}");
        if (residual is { } rv && (rv.N != y.N || rv.C != y.C || rv.H != y.H || rv.W != y.W))
            throw new ArgumentException($"conv {s}: residual {rv.ShapeText} differs from output {y.ShapeText}", nameof(residual));
        if (Overlaps(x, y))
            throw new ArgumentException($"conv {s}: output {y.ShapeText} overlaps the input {x.ShapeText}", nameof(y));
        if (residual is { } rAlias && Overlaps(rAlias, y) && rAlias.Offset != y.Offset)
            throw new ArgumentException($"conv {s}: residual overlaps the output without being the same tensor", nameof(residual));
    }

    // Whether Winograd has enough 4x4 tiles on x, and the convolution enough input channels, to pay (see WinogradMinimumTiles).
    private bool EnoughWinogradTiles(PackedConvWeights packed, TensorView x)
    {
        if (WinogradMinimumTiles < 0 && packed.Spec.InChannels < WinogradMinimumChannels) return false;
        // Default: at least one block of the narrowest NR tiles per image (tile blocks do not span images:
        // with only 48-wide blocks a batch of 8 maps of 16 tiles computed 2/3 padding, and R-50 at
        // 8 x 512x512 ran its 16x16 3x3s at ~40 GFLOP/s direct-equivalent; the AVX-512 kernel's 16-wide
        // blocks pad none, and those 3x3 512-512s now take 72-79 ms instead of 118-130 ms per batch),
        // and a full-width block for every worker over the batch (a single image needs 49 tiles on 2
        // threads: with 17, R-50 at 64x96 ran its 24-tile layer1 3x3s through Winograd, 25% slower).
        int imageMinimum = kernel.Kind == GemmKernelKind.Avx512 && kernel.Rows == 8 ? 16 : kernel.Columns;
        long minimumTiles = WinogradMinimumTiles >= 0 ? WinogradMinimumTiles : (long)kernel.Columns * (pool.WorkerCount - 1) + 1;
        long imageTiles = WinogradConvolution.TileCount(x.H, x.W), winogradTiles = x.N * imageTiles;
        return winogradTiles >= minimumTiles && (WinogradMinimumTiles >= 0 || imageTiles >= imageMinimum);
    }

    // The checked convolution, under the lock: Winograd, small-map or GEMM path.
    private void RunConv(PackedConvWeights packed, TensorView x, TensorView y, TensorView? residual, bool relu)
    {
        ConvSpec s = packed.Spec;
        int oh = s.OutputSize(x.H), ow = s.OutputSize(x.W);
        if (x.ElementCount == 0) return;
        Span<float> ys = Span(y);
        ReadOnlySpan<float> xs = Span(x);
        ReadOnlySpan<float> rs = residual is { } r ? Span(r) : default;
        bool enoughTiles = EnoughWinogradTiles(packed, x);
        if (enoughTiles && !packed.WinogradApplies && TransformsPerCall(packed))
        {
            FreshPanels(packed); // a backward-data form's panels, stale after an UpdateConv
            fixed (float* px = xs)
            fixed (float* py = ys)
            fixed (float* pr = rs)
            {
                nint xp = (nint)px, yp = (nint)py, rp = residual is null ? 0 : (nint)pr;
                int only = 0;
                RunWinogradPerCall(packed, new ReadOnlySpan<TensorView>(in x), new ReadOnlySpan<nint>(in xp), new ReadOnlySpan<nint>(in yp),
                    new ReadOnlySpan<nint>(in rp), new ReadOnlySpan<int>(in only), relu);
            }
            return;
        }
        if (packed.WinogradApplies && enoughTiles)
        {
            WinogradWeights wino = FreshWinograd(packed);
            fixed (float* px = xs)
            fixed (float* py = ys)
            fixed (float* pr = rs)
            fixed (float* pa = wino.Panels)
            fixed (float* pb = wino.Bias)
            {
                int items = winogradConvolution.Prepare(wino, x, px, py, residual is null ? null : pr, pa, pb, relu, pool.WorkerCount);
                pool.Run(winogradConvolution, items);
            }
            return;
        }
        FreshPanels(packed);
        if (SharedInputConvolution.Applies(packed, x.N, oh, ow) && ((long)x.N * oh * ow >= SharedInputConvolution.MinimumColumns || !SmallMapConvolution.Applies(packed, x.N, oh, ow)))
        {
            fixed (float* px = xs)
            fixed (float* py = ys)
            fixed (float* pr = rs)
            fixed (float* pa = packed.Panels)
            fixed (float* pb = packed.Bias)
            {
                pool.Run(sharedInputConvolution, sharedInputConvolution.Prepare(packed, x, px, py, residual is null ? null : pr, pa, pb, relu));
                if (sharedInputConvolution.Gathering) GatheredPackingCalls++;
                pool.Run(sharedInputConvolution, sharedInputConvolution.PrepareProducts(pool.WorkerCount));
                SharedInputCalls++;
            }
            return;
        }
        if (SmallMapConvolution.Applies(packed, x.N, oh, ow))
        {
            fixed (float* px = xs)
            fixed (float* py = ys)
            fixed (float* pr = rs)
            fixed (float* pa = packed.Panels)
            fixed (float* pb = packed.Bias)
            {
                pool.Run(smallMapConvolution, smallMapConvolution.Prepare(packed, x, px, py, residual is null ? null : pr, pa, pb, relu));
                pool.Run(smallMapConvolution, smallMapConvolution.PrepareProducts());
                SmallMapCalls++;
            }
            return;
        }
        if (GroupedDirect && groupedDirectConvolution.Applies(packed, x.W))
        {
            fixed (float* px = xs)
            fixed (float* py = ys)
            fixed (float* pr = rs)
            fixed (float* pa = packed.Panels)
            fixed (float* pb = packed.Bias)
                pool.Run(groupedDirectConvolution, groupedDirectConvolution.Prepare(packed, x, px, py, residual is null ? null : pr, pa, pb, relu));
            GroupedDirectCalls++;
            return;
        }
        fixed (float* px = xs)
        fixed (float* py = ys)
        fixed (float* pr = rs)
        fixed (float* pa = packed.Panels)
        fixed (float* pb = packed.Bias)
        {
            int items = convolution.Prepare(packed, x, px, py, residual is null ? null : pr, pa, pb, relu, pool.WorkerCount);
            pool.Run(convolution, items);
        }
    }

    // Winograd from the GEMM panels: per pass of output-channel panels, the weight transform into
    // the shared scratch, then the convolution of those panels' output rows for each input
    // x[which[i]] (pointers px, py and pr, already pinned; pr empty or 0: no residual): several inputs of one
    // convolution (Conv2dShared) share each transform.
    private void RunWinogradPerCall(PackedConvWeights packed, ReadOnlySpan<TensorView> x, ReadOnlySpan<nint> px, ReadOnlySpan<nint> py,
        ReadOnlySpan<nint> pr, ReadOnlySpan<int> which, bool relu)
    {
        ConvSpec s = packed.Spec;
        int mr = packed.PanelRows, panels = packed.PanelsPerGroup, chunk = WinogradConvolution.PanelsPerChunk;
        int passPanels = WinogradWeightTransform.PassPanels(panels, mr, s.InChannels, chunk);
        fixed (float* pa = packed.Panels)
        fixed (float* pb = packed.Bias)
        {
            for (int first = 0; first < panels; first += passPanels)
            {
                int count = Math.Min(passPanels, panels - first);
                pool.Run(winogradWeightTransform, winogradWeightTransform.Prepare(pa, mr, s.InChannels, first, count, winogradWeightScratch));
                WinogradWeightPasses++;
                foreach (int i in which)
                {
                    int items = winogradConvolution.Prepare(s.InChannels, s.OutChannels, first, count, x[i], (float*)px[i], (float*)py[i],
                        pr.IsEmpty ? null : (float*)pr[i], winogradWeightScratch, pb, relu, pool.WorkerCount);
                    pool.Run(winogradConvolution, items);
                }
            }
        }
    }

    // Whether this convolution runs Winograd from its GEMM panels (WinogradWeightsPerCall): dense
    // 3x3 stride 1 packed for the full kernel (the Winograd GEMMs use its MR).
    private bool TransformsPerCall(PackedConvWeights packed) =>
        useWinograd && WinogradWeightsPerCall && WinogradWeights.Applies(packed.Spec) && packed.Kernel == kernel;

    /// <inheritdoc/>
    public void MaxPool2d(TensorView x, TensorView y, int kernelSize, int stride, int padding)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            if (kernelSize <= 0 || stride <= 0 || padding < 0 || 2 * padding > kernelSize)
                throw new ArgumentException($"max-pool: invalid kernel {kernelSize}, stride {stride}, padding {padding}");
            int oh = (x.H + 2 * padding - kernelSize) / stride + 1, ow = (x.W + 2 * padding - kernelSize) / stride + 1;
            if (y.N != x.N || y.C != x.C || y.H != oh || y.W != ow)
                throw new ArgumentException($"max-pool: input {x.ShapeText} does not give output {y.ShapeText}");
            ReadOnlySpan<float> xs = Span(x);
            Span<float> ys = Span(y);
            fixed (float* px = xs)
            fixed (float* py = ys)
                pool.Run(pointwise, pointwise.PrepareMaxPool(px, py, x, y, kernelSize, stride, padding));
        }
    }

    /// <inheritdoc/>
    public void UpsampleNearestAdd(TensorView upper, TensorView lower)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            if (upper.N != lower.N || upper.C != lower.C)
                throw new ArgumentException($"upsample-add: {upper.ShapeText} and {lower.ShapeText} differ in batch or channels");
            ReadOnlySpan<float> us = Span(upper);
            Span<float> ls = Span(lower);
            fixed (float* pu = us)
            fixed (float* pl = ls)
                pool.Run(pointwise, pointwise.PrepareUpsampleAdd(pu, pl, upper, lower));
        }
    }

    /// <inheritdoc/>
    public void Add(TensorView a, TensorView b, TensorView y, bool relu)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            ReadOnlySpan<float> sa = Span(a), sb = Span(b);
            Span<float> sy = Span(y);
            if (sa.Length != sb.Length || sa.Length != sy.Length)
                throw new ArgumentException($"add: shapes {a.ShapeText}, {b.ShapeText}, {y.ShapeText} differ");
            fixed (float* pa = sa)
            fixed (float* pb = sb)
            fixed (float* py = sy)
                pool.Run(pointwise, pointwise.PrepareElementwise(relu ? PointwiseOp.AddRelu : PointwiseOp.Add, pa, pb, py, sy.Length));
        }
    }

    /// <inheritdoc/>
    public void Copy(TensorView source, TensorView destination)
    {
        ThrowIfDisposed();
        if (source.ElementCount != destination.ElementCount)
            throw new ArgumentException($"copy: shapes {source.ShapeText} and {destination.ShapeText} differ");
        Span(source).CopyTo(Span(destination));
    }

    /// <inheritdoc/>
    public void Relu(TensorView x, TensorView y)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            ReadOnlySpan<float> sx = Span(x);
            Span<float> sy = Span(y);
            if (sx.Length != sy.Length)
                throw new ArgumentException($"relu: shapes {x.ShapeText} and {y.ShapeText} differ");
            fixed (float* px = sx)
            fixed (float* py = sy)
                pool.Run(pointwise, pointwise.PrepareElementwise(PointwiseOp.Relu, px, null, py, sy.Length));
        }
    }

    /// <inheritdoc/>
    public void Sigmoid(TensorView x, TensorView y)
    {
        lock (gate)
        {
            ThrowIfDisposed();
            ReadOnlySpan<float> sx = Span(x);
            Span<float> sy = Span(y);
            if (sx.Length != sy.Length)
                throw new ArgumentException($"sigmoid: shapes {x.ShapeText} and {y.ShapeText} differ");
            fixed (float* px = sx)
            fixed (float* py = sy)
                pool.Run(pointwise, pointwise.PrepareElementwise(PointwiseOp.Sigmoid, px, null, py, sy.Length));
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
        }
        pool.Dispose();
        for (int i = 0; i < scratch.Length; i++)
        {
            NativeMemory.AlignedFree(scratch[i]);
            NativeMemory.AlignedFree(winogradInput[i]);
            NativeMemory.AlignedFree(winogradProducts[i]);
            scratch[i] = winogradInput[i] = winogradProducts[i] = null;
        }
        NativeMemory.AlignedFree(zeroBias);
        NativeMemory.AlignedFree(winogradWeightScratch);
        winogradWeightScratch = null;
        smallMapConvolution.Dispose();
        sharedInputConvolution.Dispose();
        concatenatedConvolution.Dispose();
        winogradConvolution.Dispose();
        weightGradient.Dispose();
        winogradWeightGradient.Dispose();
        inputGradient.Dispose();
    }

    // Grows the per-worker Winograd scratch for a convolution with `inChannels` inputs (at
    // prepare time, so that Conv2d never allocates).
    private void EnsureWinogradScratch(int inChannels)
    {
        long needed = WinogradConvolution.InputScratchElements(kernel, inChannels);
        if (needed <= winogradInputElements) return;
        for (int i = 0; i < winogradInput.Length; i++)
        {
            NativeMemory.AlignedFree(winogradInput[i]);
            winogradInput[i] = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
            if (winogradProducts[i] == null)
                winogradProducts[i] = (float*)NativeMemory.AlignedAlloc((nuint)(WinogradConvolution.ProductScratchElements(kernel) * sizeof(float)), 64);
        }
        winogradInputElements = needed;
    }

    // Grows the shared per-call Winograd weight scratch to one pass of `packed` (at prepare time).
    private void EnsureWinogradWeightScratch(PackedConvWeights packed)
    {
        long needed = WinogradWeightTransform.ScratchElements(packed.PanelsPerGroup, packed.PanelRows, packed.Spec.InChannels, WinogradConvolution.PanelsPerChunk);
        if (needed <= winogradWeightElements) return;
        NativeMemory.AlignedFree(winogradWeightScratch);
        winogradWeightScratch = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
        winogradWeightElements = needed;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);

    private static Span<float> Span(TensorView t) => HostBuffer.SpanOf(t, "the CPU backend");

    private static bool Overlaps(TensorView a, TensorView b) => a.Overlaps(b);

    private static void CheckLength(int length, TensorView t) => HostBuffer.CheckLength(length, t);
}
