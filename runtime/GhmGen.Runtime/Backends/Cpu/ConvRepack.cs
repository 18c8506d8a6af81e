// UpdateConv's repacking as parallel work: every form of a prepared convolution (the forward GEMM
// panels, its Winograd form, the backward-data convolution's panels and Winograd form, the
// transposed panels of the columns-then-scatter input gradient) is cut into ranges of whole
// panels of output rows, one work item each, so that all workers transform at once. Each item
// writes only its own rows with the same arithmetic as PackedConvWeights.Repack, so the result is
// bitwise that of the single-threaded repack, whatever the thread count or scheduling.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackwardTests.cs (UpdateConv cases).
namespace GhmGen.Backends.Cpu;

/// <summary>The per-call state of one UpdateConv, run as parallel work items.</summary>
internal sealed unsafe class ConvRepack : IParallelWork
{
    // Rows per item: a multiple of every kernel's MR (8, 4, 6) near 48, so a 256-channel form is ~6 items.
    private const int RowsPerItem = 48;

    private enum Part { Panels, Winograd, Transposed }

    private readonly record struct Segment(PackedConvWeights Form, Part Part, int First, int End);

    private readonly List<Segment> segments = [];
    private float* weight, bias;
    private int weightLength, biasLength;

    /// <summary>Cuts the forms of <paramref name="packed"/> into work items; returns their number.</summary>
    public int Prepare(PackedConvWeights packed, float* weight, int weightLength, float* bias, int biasLength)
    {
        this.weight = weight;
        this.bias = bias;
        this.weightLength = weightLength;
        this.biasLength = biasLength;
        segments.Clear();
        AddForm(packed);
        if (packed.BackwardData is { } backward) AddForm(backward);
        if (packed.TransposedPanels is not null) segments.Add(new Segment(packed, Part.Transposed, 0, 0));
        return segments.Count;
    }

    private void AddForm(PackedConvWeights form)
    {
        int rows = form.Spec.OutChannels;
        int step = form.PanelRows * Math.Max(1, RowsPerItem / form.PanelRows);
        for (int first = 0; first < rows; first += step) segments.Add(new Segment(form, Part.Panels, first, Math.Min(rows, first + step)));
        if (form.Winograd is { } wino)
        {
            int wstep = wino.PanelRows * Math.Max(1, RowsPerItem / wino.PanelRows);
            for (int first = 0; first < rows; first += wstep) segments.Add(new Segment(form, Part.Winograd, first, Math.Min(rows, first + wstep)));
        }
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
                s.Form.RepackTransposedPanels(w);
                break;
        }
    }
}
