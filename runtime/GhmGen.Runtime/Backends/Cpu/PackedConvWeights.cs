// A convolution's weights packed once for the GEMM micro-kernel. Weight [out, in/groups, k, k] is,
// per group g, a matrix A_g[M = out/groups, K = in/groups*k*k] (row o, column (c*k + ky)*k + kx).
// It is stored as ceil(M/MR) panels of MR rows, each panel K-major: panel[k*MR + r] =
// A_g[panel*MR + r, k], rows past M zero. Bias is padded the same way (zeros when absent).
// For training, two more forms are made on the first backward-data call (CpuBackend.Training.cs):
// - stride 1 with padding p <= k - 1: the gradient with respect to the input is the forward
//   convolution of dy with the transposed, flipped weights W'[c, o, ky, kx] = W[o, c, k-1-ky,
//   k-1-kx] at padding k - 1 - p (in and out swapped, same groups), packed like any convolution
//   (a second PackedConvWeights, made with transposedFrom; its Winograd form on its first Winograd call);
// - otherwise W_g^T[K, M] in MR-row panels for the columns-then-scatter path (TransposedPanels).
// A trained convolution prepared from a weight source (IConvWeightSource) keeps no forward panels either:
// they are packed from the source into the same shared scratch when a call needs them, and every other
// form is made from the source too (in training the host weights, folded, are then the only copy).
// A convolution that is not applied at several levels (no Conv2dShared call before its first backward-data
// call) gets transient backward-data panels: they live in one scratch of the backend's, shared by every such
// convolution, and are rebuilt when a call needs them and another convolution's panels are there (in a
// training step each is used once between two UpdateConvs, so this costs what rebuilding stale panels
// costs, and R-50 keeps ~30 MB of backward-data panels instead of ~144 MB).
// Repack rewrites every form in place, without allocating. After an optimizer step CpuBackend.UpdateConv
// rewrites the forward panels (the source of every other form) and the transposed panels at once, and marks
// the Winograd forms and the backward-data panels stale; the backend rebuilds a stale form from the forward
// panels when an op next uses it, on all workers in disjoint row ranges (ConvRepack). A form the map sizes
// never select is then never transformed, and the backward-data Winograd form never allocated.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs, CpuBackwardTests.cs.
using System.Runtime.Intrinsics;

namespace GhmGen.Backends.Cpu;

/// <summary>Weights of one convolution in the CPU micro-kernel's panel layout.</summary>
internal sealed class PackedConvWeights : IPreparedConv
{
    // The forward spec whose weights this is the transposed-flipped form of (null: the forward form).
    private readonly ConvSpec? transposedFrom;

    /// <summary>Packs <paramref name="weight"/> [out, in/groups, k, k] and <paramref name="bias"/> [out] or empty.</summary>
    public PackedConvWeights(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, GemmKernel kernel, bool winograd)
        : this(spec, kernel, winograd, bias.Length > 0, null)
    {
        Repack(weight, bias);
    }

    /// <summary>
    /// A forward form that keeps no panels of its own (transient, like the backward-data forms): the backend packs
    /// them from <paramref name="source"/> into its shared scratch when a call needs them (ITrainingBackend.PrepareConv
    /// with a weight source). Its Winograd form, when stored, is made here and transformed on first use.
    /// </summary>
    public PackedConvWeights(ConvSpec spec, IConvWeightSource source, bool hasBias, GemmKernel kernel, bool winograd)
        : this(spec, kernel, winograd, hasBias, null, transientPanels: true)
    {
        WeightSource = source;
        WinogradStale = Winograd is not null;
    }

    private PackedConvWeights(ConvSpec spec, GemmKernel kernel, bool winograd, bool hasBias, ConvSpec? transposedFrom, bool lazyWinograd = false,
        bool transientPanels = false)
    {
        int panelRows = kernel.Rows;
        this.transposedFrom = transposedFrom;
        Kernel = kernel;
        Spec = spec;
        HasBias = hasBias;
        PanelRows = panelRows;
        OutPerGroup = spec.OutChannels / spec.Groups;
        Depth = spec.InChannels / spec.Groups * spec.Kernel * spec.Kernel;
        PanelsPerGroup = (OutPerGroup + panelRows - 1) / panelRows;
        int paddedRows = PanelsPerGroup * panelRows;
        GroupStride = (long)paddedRows * Depth;
        TransientPanels = transientPanels;
        PanelsStale = transientPanels;
        Panels = transientPanels ? [] : GC.AllocateArray<float>(checked((int)(GroupStride * spec.Groups)), pinned: true);
        Bias = GC.AllocateArray<float>(paddedRows * spec.Groups, pinned: true);
        WinogradApplies = winograd && WinogradWeights.Applies(spec);
        if (WinogradApplies && !lazyWinograd) Winograd = new WinogradWeights(spec, panelRows);
    }

    /// <inheritdoc/>
    public ConvSpec Spec { get; }

    /// <summary>The micro-kernel the panels were packed for.</summary>
    public GemmKernel Kernel { get; }

    /// <summary>Whether the convolution was prepared with a bias.</summary>
    public bool HasBias { get; }

    /// <summary>MR of the kernel the panels were packed for.</summary>
    public int PanelRows { get; }

    /// <summary>M: output channels per group.</summary>
    public int OutPerGroup { get; }

    /// <summary>K: in/groups * k * k.</summary>
    public int Depth { get; }

    /// <summary>ceil(M / MR).</summary>
    public int PanelsPerGroup { get; }

    /// <summary>Elements of <see cref="Panels"/> per group.</summary>
    public long GroupStride { get; }

    /// <summary>
    /// The packed panels (pinned): <see cref="PanelsLength"/> values; for transient panels the backend's shared
    /// scratch while they are there (<see cref="BindPanels"/>), else empty.
    /// </summary>
    public float[] Panels { get; private set; }

    /// <summary>Values of the packed panels (all groups).</summary>
    public long PanelsLength => GroupStride * Spec.Groups;

    /// <summary>
    /// Whether the panels live in the backend's shared scratch and are rebuilt when needed, rather than in an
    /// array of their own: backward-data forms not applied at several levels, and forward forms read from a
    /// <see cref="WeightSource"/>.
    /// </summary>
    public bool TransientPanels { get; }

    /// <summary>
    /// Forward form only: where the backend reads this convolution's current weights (and bias) when it packs
    /// any of its forms; null when the forward panels are its own and every other form is made from them.
    /// </summary>
    public IConvWeightSource? WeightSource { get; }

    /// <summary>Points transient <see cref="Panels"/> (or <see cref="TransposedPanels"/>) at <paramref name="scratch"/> (or nothing, when null); the caller then rebuilds them.</summary>
    public void BindPanels(float[]? scratch, bool transposed = false)
    {
        if (transposed ? !transientTransposed : !TransientPanels) throw new InvalidOperationException($"{Spec}: its backward-data panels are its own");
        long length = transposed ? TransposedLength : PanelsLength;
        if (scratch is not null && scratch.LongLength < length)
            throw new ArgumentException($"{Spec}: the scratch holds {scratch.LongLength} values; the panels need {length}", nameof(scratch));
        if (transposed) TransposedPanels = scratch ?? [];
        else Panels = scratch ?? [];
    }

    /// <summary>Bias per group, padded to whole panels (pinned).</summary>
    public float[] Bias { get; }

    /// <summary>
    /// The same weights transformed for Winograd F(4x4, 3x3), when that applies and is enabled: made with the
    /// forward form; for the backward-data form on its first Winograd call (<see cref="AllocateWinograd"/>).
    /// </summary>
    public WinogradWeights? Winograd { get; private set; }

    /// <summary>Whether Winograd F(4x4, 3x3) computes this convolution (3x3 stride-1 pad-1 dense, Winograd enabled).</summary>
    public bool WinogradApplies { get; }

    /// <summary>
    /// Whether <see cref="Winograd"/> still holds the weights from before the last UpdateConv: it is
    /// transformed again on its next use (CpuBackend), so a form that the map sizes never select costs nothing
    /// per optimizer step.
    /// </summary>
    public bool WinogradStale { get; set; }

    /// <summary>Backward-data form only: whether <see cref="Panels"/> still hold the weights from before the last UpdateConv (repacked on next use).</summary>
    public bool PanelsStale { get; set; }

    /// <summary>Whether transient <see cref="TransposedPanels"/> still hold the weights from before the last UpdateConv (or were never packed).</summary>
    public bool TransposedStale { get; set; }

    /// <summary>
    /// Whether the backend has run this convolution on several inputs in one call (Conv2dShared: the shared
    /// head): its backward-data form then keeps panels of its own, as it runs once per input.
    /// </summary>
    public bool AppliedShared { get; set; }

    /// <summary>The forward form whose input gradient this backward-data form computes; null for a forward form.</summary>
    public PackedConvWeights? Owner { get; private set; }

    /// <summary>Makes the (empty) Winograd form of a form prepared without it; <see cref="Winograd"/> if it exists.</summary>
    public WinogradWeights AllocateWinograd()
    {
        if (!WinogradApplies) throw new InvalidOperationException($"Winograd does not apply to {Spec}");
        return Winograd ??= new WinogradWeights(Spec, PanelRows);
    }

    /// <summary>
    /// The input-gradient convolution (stride 1, padding &lt;= k - 1): transposed, flipped weights,
    /// made by <see cref="EnsureBackwardData"/>; null before that or for other specs.
    /// </summary>
    public PackedConvWeights? BackwardData { get; private set; }

    /// <summary>
    /// W_g^T [K, M] per group in MR-row panels (panel[(g * ceil(K/MR) + kp) * M * MR + m * MR + r] =
    /// W[g*M + m, kp*MR + r]) for the columns-then-scatter input gradient; made by
    /// <see cref="EnsureBackwardData"/> for specs that the transposed convolution does not cover.
    /// </summary>
    public float[]? TransposedPanels { get; private set; }

    /// <summary>Values of <see cref="TransposedPanels"/> (groups x ceil(K/MR) x M x MR); 0 before <see cref="EnsureBackwardData"/> or for the convolution path.</summary>
    public long TransposedLength { get; private set; }

    /// <summary>The transposed panels' MR (the backend's full kernel).</summary>
    public GemmKernel? TransposedKernel { get; private set; }

    /// <summary>Whether the input gradient is a stride-1 convolution of dy (else columns and scatter).</summary>
    public static bool BackwardDataIsConvolution(ConvSpec spec) => spec.Stride == 1 && spec.Padding <= spec.Kernel - 1;

    /// <summary>
    /// Makes the backward-data form from <paramref name="weight"/> (the same weights as the
    /// forward form) unless it exists. <paramref name="kernel"/> is the backend's full kernel.
    /// With <paramref name="transient"/> its panels get no array of their own and are not packed here
    /// (<paramref name="weight"/> is not read and may be empty): the backend binds them to its shared scratch and packs them when a call needs them.
    /// </summary>
    public void EnsureBackwardData(ReadOnlySpan<float> weight, GemmKernel kernel, bool winograd, bool transient = false)
    {
        ConvSpec s = Spec;
        if (BackwardData is not null || TransposedPanels is not null) return;
        if (BackwardDataIsConvolution(s))
        {
            var spec = new ConvSpec(s.OutChannels, s.InChannels, s.Kernel, 1, s.Kernel - 1 - s.Padding, s.Groups);
            GemmKernel convKernel = spec.OutChannels / spec.Groups <= 4 ? kernel.Narrow : kernel;
            // Its Winograd form is made on its first Winograd call (the map sizes may never select it).
            var packed = new PackedConvWeights(spec, convKernel, winograd, hasBias: false, transposedFrom: s, lazyWinograd: true, transientPanels: transient);
            if (!transient) packed.Repack(weight, []);
            packed.Owner = this;
            BackwardData = packed;
        }
        else
        {
            TransposedKernel = kernel;
            int mr = kernel.Rows, rowPanels = (Depth + mr - 1) / mr;
            TransposedLength = checked((long)s.Groups * rowPanels * mr * OutPerGroup);
            if (transient)
            {
                transientTransposed = true;
                TransposedPanels = [];
                TransposedStale = true;
                return;
            }
            TransposedPanels = GC.AllocateArray<float>(checked((int)TransposedLength), pinned: true);
            PackTransposed(weight);
        }
    }

    // Whether the TransposedPanels live in the backend's shared scratch (a forward form's flag: TransientPanels
    // belongs to the backward-data form).
    private bool transientTransposed;

    /// <summary>Whether <see cref="TransposedPanels"/> live in the backend's shared scratch (see <see cref="TransientPanels"/>).</summary>
    public bool TransientTransposedPanels => transientTransposed;

    /// <summary>
    /// Writes the weights [out, in/groups, k, k] back out of the panels (forward form only; the
    /// backend keeps no other copy, and makes the backward-data form from them on first use).
    /// </summary>
    public void UnpackWeight(Span<float> weight)
    {
        if (transposedFrom is not null) throw new InvalidOperationException("only the forward form unpacks");
        if (WeightSource is not null) throw new InvalidOperationException($"{Spec}: its weights are read from its source, not kept in panels");
        for (int g = 0; g < Spec.Groups; g++)
        for (int m = 0; m < OutPerGroup; m++)
        {
            long start = g * GroupStride + (long)(m / PanelRows) * PanelRows * Depth + m % PanelRows;
            Span<float> row = weight.Slice((g * OutPerGroup + m) * Depth, Depth);
            for (int k = 0; k < Depth; k++) row[k] = Panels[start + (long)k * PanelRows];
        }
    }

    /// <summary>Rewrites every form from new weights (same shapes), in place (CpuBackend.UpdateConv does the same on all workers, ConvRepack).</summary>
    public void Repack(ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        if (TransientPanels)
        {
            // Whatever is bound may be another convolution's: rebuilt when next used.
            PanelsStale = true;
            WinogradStale = Winograd is not null;
            return;
        }
        RepackPanelRows(weight, bias, 0, Spec.OutChannels);
        Winograd?.Repack(weight, bias, transposed: IsTransposedForm);
        BackwardData?.Repack(weight, []);
        if (transientTransposed) TransposedStale = true;
        else if (TransposedPanels is not null) PackTransposed(weight);
    }

    /// <summary>Whether this is the backward-data form (transposed, flipped weights of the forward convolution).</summary>
    public bool IsTransposedForm => transposedFrom is not null;

    /// <summary>
    /// Rewrites the GEMM panels (and padded bias) of output channels <paramref name="first"/> ..
    /// <paramref name="end"/> - 1 from <paramref name="weight"/>, the forward convolution's weights
    /// (transposed and flipped here for the backward-data form); the other forms are untouched.
    /// </summary>
    public void RepackPanelRows(ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int first, int end)
    {
        ConvSpec s = Spec;
        int kk = s.Kernel * s.Kernel, depthChannels = Depth / kk;
        int paddedRows = PanelsPerGroup * PanelRows;
        for (int o = first; o < end; o++)
        {
            int g = o / OutPerGroup, m = o % OutPerGroup, panel = m / PanelRows, r = m % PanelRows;
            long start = g * GroupStride + (long)panel * PanelRows * Depth + r;
            if (transposedFrom is null)
            {
                ReadOnlySpan<float> row = weight.Slice(o * Depth, Depth);
                for (int k = 0; k < Depth; k++) Panels[start + (long)k * PanelRows] = row[k];
            }
            else
            {
                // Row o = g*Cg + m of W' reads W[g*M' + c, m, flipped tap] (M' = original out/groups = depthChannels).
                for (int c = 0; c < depthChannels; c++)
                {
                    int source = ((g * depthChannels + c) * OutPerGroup + m) * kk + kk - 1;
                    for (int tap = 0; tap < kk; tap++) Panels[start + (long)(c * kk + tap) * PanelRows] = weight[source - tap];
                }
            }
            if (bias.Length > 0) Bias[g * paddedRows + m] = bias[o];
        }
    }

    /// <summary>
    /// Rewrites transposed panels <paramref name="first"/> .. <paramref name="end"/> - 1 of <see cref="TransposedPanels"/>
    /// (when this form has them; over the groups: panel g * row panels + kp) from <paramref name="weight"/>, so that
    /// disjoint ranges can be packed on several threads at once (ConvRepack); the values are the same copies as a
    /// whole repack's.
    /// </summary>
    public void RepackTransposedPanels(ReadOnlySpan<float> weight, int first, int end)
    {
        if (TransposedPanels is null || TransposedPanels.LongLength < TransposedLength) return;
        if (first < 0 || end > TransposedPanelCount || first > end)
            throw new ArgumentOutOfRangeException(nameof(first), $"transposed panels {first} .. {end} are not within 0 .. {TransposedPanelCount}");
        if (weight.Length < Spec.WeightCount)
            throw new ArgumentException($"{Spec}: weight has {weight.Length} elements; it needs {Spec.WeightCount}", nameof(weight));
        PackTransposed(weight, first, end);
    }

    /// <summary>Transposed (columns-then-scatter) panels over all groups: groups x ceil(depth / MR) (0 when this form has none).</summary>
    public int TransposedPanelCount => TransposedKernel is { } k ? Spec.Groups * ((Depth + k.Rows - 1) / k.Rows) : 0;

    private void PackTransposed(ReadOnlySpan<float> weight) => PackTransposed(weight, 0, TransposedPanelCount);

    // Panel q = g * rowPanels + kp holds W_g^T rows kp * MR .. + MR - 1 (column rows k of the group, zero past
    // the depth) for every output channel o: panels[q * M * MR + o * MR + r] = W[g * M + o, k].
    private unsafe void PackTransposed(ReadOnlySpan<float> weight, int first, int end)
    {
        float[] panels = TransposedPanels!;
        int mr = TransposedKernel!.Rows, m = OutPerGroup, rowPanels = (Depth + mr - 1) / mr;
        fixed (float* pw = weight)
        fixed (float* pp = panels)
        {
            for (int q = first; q < end; q++)
            {
                int g = q / rowPanels, k0 = q % rowPanels * mr, valid = Math.Min(mr, Depth - k0);
                float* dst = pp + (long)q * m * mr;
                float* src = pw + (long)g * m * Depth + k0;
                for (int o = 0; o < m; o++, dst += mr, src += Depth)
                {
                    if (valid == 8 && mr == 8)
                        Vector256.Store(Vector256.Load(src), dst);
                    else
                    {
                        int r = 0;
                        for (; r < valid; r++) dst[r] = src[r];
                        for (; r < mr; r++) dst[r] = 0f;
                    }
                }
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose() { }
}
