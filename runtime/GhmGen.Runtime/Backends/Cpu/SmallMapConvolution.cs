// Convolution over tiny maps: at most 8 output pixels over the whole batch, one group, 8-row
// weight panels (the AVX-512 kernel's layout). A GEMV-like pass reads each packed weight panel once
// and keeps one 8-row accumulator per output pixel, where the GEMM's 48-column tile would compute
// mostly padding (P6/P7 of the head at every input size, and every level at tiny inputs).
// Shapes: x [N, C, H, W] -> y [N, O, OH, OW], N*OH*OW <= 8; bias, residual and ReLU fused.
// Reference test: tests/GhmGen.Runtime.Tests/Backends/SmallMapConvolutionTests.cs.
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using GhmGen.Backends;

namespace GhmGen.Backends.Cpu;

/// <summary>Convolutions whose whole output has at most <see cref="MaxColumns"/> pixels.</summary>
internal sealed unsafe class SmallMapConvolution : IParallelWork, IDisposable
{
    /// <summary>Most output pixels (over the batch) this path takes.</summary>
    public const int MaxColumns = 8;

    private const int Rows = 8;
    private float* columns;     // im2col: [depth, MaxColumns], unused columns zero
    private long capacity;
    private PackedConvWeights conv = null!;
    private float* panels, bias, y, residual;
    private bool relu;
    private int count, pixels, depth, outChannels;

    /// <summary>Whether a convolution of this shape takes this path.</summary>
    public static bool Applies(PackedConvWeights conv, int batch, int outHeight, int outWidth) =>
        conv.Spec.Groups == 1 && conv.PanelRows == Rows && (long)batch * outHeight * outWidth <= MaxColumns && Avx.IsSupported;

    /// <summary>Gathers the input columns; returns the work items (weight panels).</summary>
    public int Prepare(PackedConvWeights conv, TensorView xView, float* x, float* y, float* residual, float* panels, float* bias, bool relu)
    {
        ConvSpec s = conv.Spec;
        int k = s.Kernel, oh = s.OutputSize(xView.H), ow = s.OutputSize(xView.W);
        this.conv = conv;
        this.panels = panels;
        this.bias = bias;
        this.y = y;
        this.residual = residual;
        this.relu = relu;
        pixels = oh * ow;
        count = xView.N * pixels;
        depth = conv.Depth;
        outChannels = s.OutChannels;
        long needed = (long)depth * MaxColumns;
        if (needed > capacity)
        {
            NativeMemory.AlignedFree(columns);
            columns = (float*)NativeMemory.AlignedAlloc((nuint)(needed * sizeof(float)), 64);
            capacity = needed;
        }
        for (int d = 0; d < depth; d++)
        {
            int ci = d / (k * k), ky = d / k % k, kx = d % k;
            float* row = columns + (long)d * MaxColumns;
            for (int c = 0; c < MaxColumns; c++)
            {
                float v = 0f;
                if (c < count)
                {
                    int n = c / pixels, p = c % pixels;
                    int iy = p / ow * s.Stride - s.Padding + ky, ix = p % ow * s.Stride - s.Padding + kx;
                    if ((uint)iy < (uint)xView.H && (uint)ix < (uint)xView.W)
                        v = x[(((long)n * s.InChannels + ci) * xView.H + iy) * xView.W + ix];
                }
                row[c] = v;
            }
        }
        return conv.PanelsPerGroup;
    }

    /// <inheritdoc/>
    public void Execute(int panel, int worker)
    {
        float* w = panels + (long)panel * Rows * depth;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < depth; d++)
        {
            Vector256<float> wv = Avx.LoadVector256(w + (long)d * Rows);
            float* col = columns + (long)d * MaxColumns;
            a0 = MultiplyAdd(wv, col[0], a0);
            a1 = MultiplyAdd(wv, col[1], a1);
            a2 = MultiplyAdd(wv, col[2], a2);
            a3 = MultiplyAdd(wv, col[3], a3);
            a4 = MultiplyAdd(wv, col[4], a4);
            a5 = MultiplyAdd(wv, col[5], a5);
            a6 = MultiplyAdd(wv, col[6], a6);
            a7 = MultiplyAdd(wv, col[7], a7);
        }
        Vector256<float>* acc = stackalloc Vector256<float>[MaxColumns];
        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
        int firstRow = panel * Rows, rows = Math.Min(Rows, outChannels - firstRow);
        for (int c = 0; c < count; c++)
        {
            int n = c / pixels, p = c % pixels;
            float* values = (float*)(acc + c);
            for (int r = 0; r < rows; r++)
            {
                int o = firstRow + r;
                long at = ((long)n * outChannels + o) * pixels + p;
                float v = values[r] + bias[o];
                if (residual != null) v += residual[at];
                y[at] = relu ? MathF.Max(v, 0f) : v;
            }
        }
    }

    private static Vector256<float> MultiplyAdd(Vector256<float> w, float x, Vector256<float> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(w, Vector256.Create(x), acc) : Avx.Add(Avx.Multiply(w, Vector256.Create(x)), acc);

    /// <summary>Frees the column buffer.</summary>
    public void Dispose()
    {
        NativeMemory.AlignedFree(columns);
        columns = null;
        capacity = 0;
    }
}
