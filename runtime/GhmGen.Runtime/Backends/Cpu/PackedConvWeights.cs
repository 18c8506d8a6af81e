// A convolution's weights packed once for the GEMM micro-kernel. Weight [out, in/groups, k, k] is,
// per group g, a matrix A_g[M = out/groups, K = in/groups*k*k] (row o, column (c*k + ky)*k + kx).
// It is stored as ceil(M/MR) panels of MR rows, each panel K-major: panel[k*MR + r] =
// A_g[panel*MR + r, k], rows past M zero. Bias is padded the same way (zeros when absent).
// Reference test: tests/GhmGen.Runtime.Tests/Backends/CpuBackendTests.cs.
namespace GhmGen.Backends.Cpu;

/// <summary>Weights of one convolution in the CPU micro-kernel's panel layout.</summary>
internal sealed class PackedConvWeights : IPreparedConv
{
    /// <summary>Packs <paramref name="weight"/> [out, in/groups, k, k] and <paramref name="bias"/> [out] or empty.</summary>
    public PackedConvWeights(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, GemmKernel kernel, bool winograd)
    {
        int panelRows = kernel.Rows;
        Kernel = kernel;
        if (winograd && WinogradWeights.Applies(spec)) Winograd = new WinogradWeights(spec, weight, bias, panelRows);
        Spec = spec;
        PanelRows = panelRows;
        OutPerGroup = spec.OutChannels / spec.Groups;
        Depth = spec.InChannels / spec.Groups * spec.Kernel * spec.Kernel;
        PanelsPerGroup = (OutPerGroup + panelRows - 1) / panelRows;
        int paddedRows = PanelsPerGroup * panelRows;
        GroupStride = (long)paddedRows * Depth;
        Panels = GC.AllocateArray<float>(checked((int)(GroupStride * spec.Groups)), pinned: true);
        Bias = GC.AllocateArray<float>(paddedRows * spec.Groups, pinned: true);
        for (int g = 0; g < spec.Groups; g++)
        for (int m = 0; m < OutPerGroup; m++)
        {
            int o = g * OutPerGroup + m, panel = m / panelRows, r = m % panelRows;
            ReadOnlySpan<float> row = weight.Slice(o * Depth, Depth);
            long start = g * GroupStride + (long)panel * panelRows * Depth + r;
            for (int k = 0; k < Depth; k++) Panels[start + (long)k * panelRows] = row[k];
            if (bias.Length > 0) Bias[g * paddedRows + m] = bias[o];
        }
    }

    /// <inheritdoc/>
    public ConvSpec Spec { get; }

    /// <summary>The micro-kernel the panels were packed for.</summary>
    public GemmKernel Kernel { get; }

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

    /// <summary>The packed panels (pinned).</summary>
    public float[] Panels { get; }

    /// <summary>Bias per group, padded to whole panels (pinned).</summary>
    public float[] Bias { get; }

    /// <summary>The same weights transformed for Winograd F(4x4, 3x3), when that applies and is enabled.</summary>
    public WinogradWeights? Winograd { get; }

    /// <inheritdoc/>
    public void Dispose() { }
}
