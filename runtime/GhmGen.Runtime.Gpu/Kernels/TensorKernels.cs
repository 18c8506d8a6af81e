// Element-wise and pooling kernels, one thread per output element (implicitly grouped):
// Relu/Sigmoid: y[i] = f(x[i]); Add: y[i] = act(a[i] + b[i]) (all [count]);
// MaxPool2d: x [N*C, H, W] -> y [N*C, OH, OW], padding = -infinity;
// UpsampleNearestAdd: lower [N*C, LH, LW] += upper[N*C, sy, sx] with PyTorch's nearest index
// src = min(floor(dst * (float)in / out), in - 1).
// Reference test: tests/GhmGen.Runtime.Gpu.Tests/BackendOpTests.cs (against ReferenceBackend).
using ILGPU;
using ILGPU.Algorithms;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>Arguments of one max-pool launch.</summary>
internal readonly record struct PoolLaunch(int Height, int Width, int OutHeight, int OutWidth, int Kernel, int Stride, int Padding);

/// <summary>Arguments of one upsample-add launch.</summary>
internal readonly record struct UpsampleLaunch(int UpperHeight, int UpperWidth, int LowerHeight, int LowerWidth);

/// <summary>Element-wise, pooling and upsampling kernels.</summary>
internal static class TensorKernels
{
    /// <summary>y = max(x, 0).</summary>
    public static void Relu(Index1D i, ArrayView<float> x, ArrayView<float> y) =>
        y[i] = ConvKernels.ReluOf(x[i]);

    /// <summary>y = 1 / (1 + exp(-x)).</summary>
    public static void Sigmoid(Index1D i, ArrayView<float> x, ArrayView<float> y) =>
        y[i] = 1f / (1f + XMath.Exp(-x[i]));

    /// <summary>y = a + b, then ReLU when relu != 0.</summary>
    public static void Add(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, int relu)
    {
        float v = a[i] + b[i];
        y[i] = relu != 0 ? ConvKernels.ReluOf(v) : v;
    }

    /// <summary>One output element of a max-pool; i runs over N*C*OH*OW.</summary>
    public static void MaxPool2d(Index1D i, ArrayView<float> x, ArrayView<float> y, PoolLaunch p)
    {
        int plane = p.OutHeight * p.OutWidth;
        int nc = i / plane, q = i % plane, oy = q / p.OutWidth, ox = q % p.OutWidth;
        float best = float.NegativeInfinity;
        for (int ky = 0; ky < p.Kernel; ky++)
        {
            int iy = oy * p.Stride - p.Padding + ky;
            if (iy < 0 || iy >= p.Height) continue;
            for (int kx = 0; kx < p.Kernel; kx++)
            {
                int ix = ox * p.Stride - p.Padding + kx;
                if (ix < 0 || ix >= p.Width) continue;
                best = XMath.Max(best, x[(nc * p.Height + iy) * p.Width + ix]);
            }
        }
        y[i] = best;
    }

    /// <summary>One element of lower; i runs over N*C*LH*LW.</summary>
    public static void UpsampleNearestAdd(Index1D i, ArrayView<float> upper, ArrayView<float> lower, UpsampleLaunch p)
    {
        int plane = p.LowerHeight * p.LowerWidth;
        int nc = i / plane, q = i % plane, ly = q / p.LowerWidth, lx = q % p.LowerWidth;
        int sy = NearestSource(ly, (float)p.UpperHeight / p.LowerHeight, p.UpperHeight);
        int sx = NearestSource(lx, (float)p.UpperWidth / p.LowerWidth, p.UpperWidth);
        lower[i] += upper[(nc * p.UpperHeight + sy) * p.UpperWidth + sx];
    }

    /// <summary>
    /// PyTorch 'nearest': scale = (float)in / out in float32, src = min(floor(dst * scale), in - 1).
    /// Shared by the forward op and its gradient (BackwardKernels.UpsampleNearestBackward).
    /// </summary>
    public static int NearestSource(int destination, float scale, int inSize) =>
        XMath.Min((int)XMath.Floor(destination * scale), inSize - 1);
}
