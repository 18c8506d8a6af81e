// Repacking as parallel work: a form of a prepared convolution (the forward GEMM panels, its
// Winograd form, the backward-data convolution's panels and Winograd form) is cut into ranges of
// whole panels of output rows, one work item each, so that all workers transform at once (the
// transposed panels of the columns-then-scatter input gradient in ranges of whole panels too).
// UpdateConv rewrites the forward and (unless transient) transposed panels; the other forms are rebuilt when next used (CpuBackend). Each item
// writes only its own rows with the same arithmetic as PackedConvWeights.Repack, so the result is
// bitwise that of the single-threaded repack, whatever the thread count or scheduling.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (UpdateConv cases).
namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one UpdateConv, run as parallel work items.</summary>
internal sealed unsafe class ConvRepack : IParallelWork
{
    // Rows per item: a multiple of every kernel's MR (8, 4, 6) near 48, so a 256-channel form is ~6 items.
    private const int RowsPerItem = 48;

    // Transposed panels per item (MR x out-per-group floats each: 8 KB for 256 outputs).
    private const int TransposedPanelsPerItem = 64;

    private enum Part { Panels, Winograd, Transposed }

    private readonly record struct Segment(PackedConvWeights Form, Part Part, int First, int End);

    private readonly List<Segment> segments = [];
    private float* weight, bias;
    private int weightLength, biasLength;

    /// <summary>
    /// UpdateConv's part: the forward panels of <paramref name="packed"/> (the source of every other form) and
    /// its transposed panels; returns the number of work items. The caller marks the other forms stale.
    /// </summary>
    public int PrepareUpdate(PackedConvWeights packed, float* weight, int weightLength, float* bias, int biasLength)
    {
        Set(weight, weightLength, bias, biasLength);
        AddRows(packed, Part.Panels, packed.PanelRows);
        if (packed.TransposedPanels is not null && !packed.TransientTransposedPanels) AddTransposed(packed);
        return segments.Count;
    }

    /// <summary>The transposed panels of <paramref name="packed"/> (columns-then-scatter input gradient) from <paramref name="weight"/>.</summary>
    public int PrepareTransposed(PackedConvWeights packed, float* weight, int weightLength)
    {
        Set(weight, weightLength, null, 0);
        AddTransposed(packed);
        return segments.Count;
    }

    /// <summary>
    /// One stale form rebuilt from the forward weights <paramref name="weight"/> (and the forward bias, for the
    /// forward Winograd form): <paramref name="form"/>'s Winograd form, or its panels (backward-data form).
    /// </summary>
    public int PrepareRefresh(PackedConvWeights form, bool winograd, float* weight, int weightLength, float* bias, int biasLength)
    {
        Set(weight, weightLength, bias, biasLength);
        if (winograd) AddRows(form, Part.Winograd, form.Winograd!.PanelRows);
        else AddRows(form, Part.Panels, form.PanelRows);
        return segments.Count;
    }

    /// <summary>Every form of <paramref name="packed"/> (as PackedConvWeights.Repack), as work items.</summary>
    public int Prepare(PackedConvWeights packed, float* weight, int weightLength, float* bias, int biasLength)
    {
        Set(weight, weightLength, bias, biasLength);
        AddForm(packed);
        if (packed.BackwardData is { } backward) AddForm(backward);
        if (packed.TransposedPanels is not null) AddTransposed(packed);
        return segments.Count;
    }

    private void Set(float* weight, int weightLength, float* bias, int biasLength)
    {
        this.weight = weight;
        this.bias = bias;
        this.weightLength = weightLength;
        this.biasLength = biasLength;
        segments.Clear();
    }

    private void AddForm(PackedConvWeights form)
    {
        AddRows(form, Part.Panels, form.PanelRows);
        if (form.Winograd is { } wino) AddRows(form, Part.Winograd, wino.PanelRows);
    }

    private void AddTransposed(PackedConvWeights packed)
    {
        int count = packed.TransposedPanelCount;
        for (int first = 0; first < count; first += TransposedPanelsPerItem)
            segments.Add(new Segment(packed, Part.Transposed, first, Math.Min(count, first + TransposedPanelsPerItem)));
    }

    private void AddRows(PackedConvWeights form, Part part, int panelRows)
    {
        int rows = form.Spec.OutChannels;
        int step = panelRows * Math.Max(1, RowsPerItem / panelRows);
        for (int first = 0; first < rows; first += step) segments.Add(new Segment(form, part, first, Math.Min(rows, first + step)));
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        Segment s = segments[item];
        var w = new ReadOnlySpan<float>(weight, weightLength);
        // The backward-data form has no bias of its own (its Repack is given none).
        ReadOnlySpan<float> b = s.Form.IsTransposedForm ? default : new ReadOnlySpan<float>(bias, biasLength);
        switch (s.Part)
        {
            case Part.Panels:
                s.Form.RepackPanelRows(w, b, s.First, s.End);
                break;
            case Part.Winograd:
                s.Form.Winograd!.RepackRows(w, b, s.Form.IsTransposedForm, s.First, s.End);
                break;
            default:
                s.Form.RepackTransposedPanels(w, s.First, s.End);
                break;
        }
    }
}
