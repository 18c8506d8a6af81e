// The gradients of the forward kernels (ITrainingBackend), every one a gather: each thread (or
// group) owns one gradient element and sums, in a fixed order, everything that flows into it, so
// no kernel uses atomics and every result is the same from run to run.
// ConvBackwardData: one thread per dx [N, in, H, W] element; dx[n, c, iy, ix] (+)= sum over the
//   taps (ky, kx) with (iy + pad - ky) and (ix + pad - kx) multiples of the stride, and over the
//   out channels o of c's group, of dy[n, o, oy, ox] * W[o, c % (in/groups), ky, kx];
//   dy [N, out, OH, OW], weight [out, in/groups, k, k].
// ConvBackwardWeights: one warp per weight element (and per bias element after them); its lanes
//   stride over the N*OH*OW output positions, then a shuffle tree adds their partial sums.
//   dW [out, in/groups, k, k] (+)= sum dy * x (zero padding), dBias [out] (+)= sum dy;
//   x [N, in, H, W]. (The order depends on the warp size only: fixed on a given device.)
// ReluBackward: dx[i] = y[i] > 0 ? dy[i] : 0 over [count] (dx may alias dy).
// MaxPool2dBackward: one thread per dx [N*C, H, W] element; it rescans each window [N*C, OH, OW]
//   that contains it and adds that window's dy when it is the window's winner (the first valid
//   element starts as winner, then val > best || isnan(val) replaces it: PyTorch's CPU rule).
// UpsampleNearestBackward: one thread per dUpper [N*C, UH, UW] element; it sums the dLower
//   [N*C, LH, LW] cells whose nearest source is it, with the forward op's float32-scale rule
//   (NearestSource, shared with TensorKernels.UpsampleNearestAdd).
// Zero: t[i] = 0.
// Reference test: tests/GhmGen.Runtime.Gpu.Tests/BackwardOpTests.cs (against ReferenceBackend).
using ILGPU;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>The fixed arguments of one convolution-gradient launch (passed by value).</summary>
internal readonly struct ConvGradLaunch
{
    public readonly int Batch, InChannels, Height, Width, OutChannels, OutHeight, OutWidth;
    public readonly int Kernel, Stride, Padding, InPerGroup, OutPerGroup;
    public readonly int WeightCount, HasBias, Accumulate;

    public ConvGradLaunch(ConvSpec spec, int batch, int height, int width, bool hasBias, bool accumulate)
    {
        Batch = batch;
        InChannels = spec.InChannels;
        Height = height;
        Width = width;
        OutChannels = spec.OutChannels;
        OutHeight = spec.OutputSize(height);
        OutWidth = spec.OutputSize(width);
        Kernel = spec.Kernel;
        Stride = spec.Stride;
        Padding = spec.Padding;
        InPerGroup = spec.InChannels / spec.Groups;
        OutPerGroup = spec.OutChannels / spec.Groups;
        WeightCount = checked((int)spec.WeightCount);
        HasBias = hasBias ? 1 : 0;
        Accumulate = accumulate ? 1 : 0;
    }

    /// <summary>Output positions summed over by the weight gradient: N*OH*OW.</summary>
    public int Columns => Batch * OutHeight * OutWidth;
}

/// <summary>The backward kernels of the ILGPU backend.</summary>
internal static class BackwardKernels
{
    /// <summary>Threads per group of <see cref="ConvBackwardWeights"/>: a multiple of every warp size.</summary>
    public const int ReduceThreads = 256;

    /// <summary>One dx element; i runs over N*in*H*W.</summary>
    public static void ConvBackwardData(Index1D i, ArrayView<float> dy, ArrayView<float> weight, ArrayView<float> dx, ConvGradLaunch p)
    {
        int plane = p.Height * p.Width;
        int nc = i / plane, q = i % plane, iy = q / p.Width, ix = q % p.Width;
        int n = nc / p.InChannels, c = nc % p.InChannels;
        int g = c / p.InPerGroup, ci = c - g * p.InPerGroup;
        int k = p.Kernel, kk = k * k, outPlane = p.OutHeight * p.OutWidth;
        int ty = iy + p.Padding, tx = ix + p.Padding;  // >= 0
        // dy and weight of out channel o = g * outPerGroup + ol are at
        // dyGroup + ol * outPlane and wGroup + ol * (inPerGroup * k * k).
        int dyGroup = (n * p.OutChannels + g * p.OutPerGroup) * outPlane;
        int wGroup = (g * p.OutPerGroup * p.InPerGroup + ci) * kk, wStride = p.InPerGroup * kk;

        float sum = 0f;
        // Taps with ty - ky a multiple of the stride, from the first one; oy falls as ky grows.
        for (int ky = ty % p.Stride; ky < k && ky <= ty; ky += p.Stride)
        {
            int oy = (ty - ky) / p.Stride;
            if (oy >= p.OutHeight) continue;
            for (int kx = tx % p.Stride; kx < k && kx <= tx; kx += p.Stride)
            {
                int ox = (tx - kx) / p.Stride;
                if (ox >= p.OutWidth) continue;
                int dyAt = dyGroup + oy * p.OutWidth + ox, wAt = wGroup + ky * k + kx;
                for (int ol = 0; ol < p.OutPerGroup; ol++)
                    sum += dy[dyAt + ol * outPlane] * weight[wAt + ol * wStride];
            }
        }
        dx[i] = p.Accumulate != 0 ? dx[i] + sum : sum;
    }

    /// <summary>
    /// Grid (ceil(elements / warps per group)); group (256) with elements = weight count +
    /// (bias ? out : 0). Warp w of group b owns gradient element e = b * warps per group + w:
    /// dWeight[e] when e &lt; weight count, else dBias[e - weight count] (unused without a bias).
    /// </summary>
    public static void ConvBackwardWeights(
        ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dWeight, ArrayView<float> dBias, ConvGradLaunch p)
    {
        int warpSize = Warp.WarpSize, lane = Warp.LaneIdx;
        int e = Grid.IdxX * (Group.DimX / warpSize) + Warp.WarpIdx;
        if (e >= p.WeightCount + (p.HasBias != 0 ? p.OutChannels : 0)) return;  // the whole warp
        int outPlane = p.OutHeight * p.OutWidth, columns = p.Columns;

        // Lane l sums output positions l, l + warp size, ...: adjacent lanes read adjacent dy and
        // (stride 1) adjacent x.
        float sum = 0f;
        if (e < p.WeightCount)
        {
            int kk = p.Kernel * p.Kernel, depth = p.InPerGroup * kk;
            int o = e / depth, r = e - o * depth, ci = r / kk, tap = r - ci * kk;
            int ky = tap / p.Kernel, kx = tap - ky * p.Kernel;
            int c = o / p.OutPerGroup * p.InPerGroup + ci;
            for (int col = lane; col < columns; col += warpSize)
            {
                int n = col / outPlane, q = col - n * outPlane, oy = q / p.OutWidth, ox = q - oy * p.OutWidth;
                int iy = oy * p.Stride - p.Padding + ky, ix = ox * p.Stride - p.Padding + kx;
                if (iy < 0 || iy >= p.Height || ix < 0 || ix >= p.Width) continue;
                sum += dy[(n * p.OutChannels + o) * outPlane + q] * x[((n * p.InChannels + c) * p.Height + iy) * p.Width + ix];
            }
        }
        else
        {
            int o = e - p.WeightCount;
            for (int col = lane; col < columns; col += warpSize)
            {
                int n = col / outPlane, q = col - n * outPlane;
                sum += dy[(n * p.OutChannels + o) * outPlane + q];
            }
        }

        // Fixed-shape shuffle tree over the lanes: the same order on every run.
        for (int offset = warpSize / 2; offset > 0; offset >>= 1)
            sum += Warp.ShuffleDown(sum, offset);
        if (lane != 0) return;
        if (e < p.WeightCount)
            dWeight[e] = p.Accumulate != 0 ? dWeight[e] + sum : sum;
        else
        {
            int o = e - p.WeightCount;
            dBias[o] = p.Accumulate != 0 ? dBias[o] + sum : sum;
        }
    }

    /// <summary>dx = y &gt; 0 ? dy : 0.</summary>
    public static void ReluBackward(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[i] = y[i] > 0f ? dy[i] : 0f;

    /// <summary>One dx element of a max-pool; i runs over N*C*H*W.</summary>
    public static void MaxPool2dBackward(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, PoolLaunch p, int accumulate)
    {
        int plane = p.Height * p.Width;
        int nc = i / plane, q = i % plane, iy = q / p.Width, ix = q % p.Width;
        int xBase = nc * plane;
        // Windows oy with oy*stride - pad <= iy <= oy*stride - pad + kernel - 1.
        int ty = iy + p.Padding, tx = ix + p.Padding;
        int oyLast = XMin(ty / p.Stride, p.OutHeight - 1), oxLast = XMin(tx / p.Stride, p.OutWidth - 1);
        int oyFirst = ty < p.Kernel ? 0 : (ty - p.Kernel) / p.Stride + 1;
        int oxFirst = tx < p.Kernel ? 0 : (tx - p.Kernel) / p.Stride + 1;

        float sum = 0f;
        for (int oy = oyFirst; oy <= oyLast; oy++)
        for (int ox = oxFirst; ox <= oxLast; ox++)
        {
            int winner = -1;
            float best = 0f;
            for (int ky = 0; ky < p.Kernel; ky++)
            {
                int wy = oy * p.Stride - p.Padding + ky;
                if (wy < 0 || wy >= p.Height) continue;
                for (int kx = 0; kx < p.Kernel; kx++)
                {
                    int wx = ox * p.Stride - p.Padding + kx;
                    if (wx < 0 || wx >= p.Width) continue;
                    int at = wy * p.Width + wx;
                    float v = x[xBase + at];
                    if (winner < 0 || v > best || float.IsNaN(v))
                    {
                        winner = at;
                        best = v;
                    }
                }
            }
            if (winner == q) sum += dy[(nc * p.OutHeight + oy) * p.OutWidth + ox];
        }
        dx[i] = accumulate != 0 ? dx[i] + sum : sum;
    }

    /// <summary>One dUpper element; i runs over N*C*UH*UW.</summary>
    public static void UpsampleNearestBackward(Index1D i, ArrayView<float> dLower, ArrayView<float> dUpper, UpsampleLaunch p, int accumulate)
    {
        int plane = p.UpperHeight * p.UpperWidth;
        int nc = i / plane, q = i % plane, sy = q / p.UpperWidth, sx = q % p.UpperWidth;
        float scaleY = (float)p.UpperHeight / p.LowerHeight, scaleX = (float)p.UpperWidth / p.LowerWidth;
        int yFirst = FirstMappedTo(sy, scaleY, p.UpperHeight, p.LowerHeight);
        int xFirst = FirstMappedTo(sx, scaleX, p.UpperWidth, p.LowerWidth);
        int lowerBase = nc * p.LowerHeight * p.LowerWidth;

        float sum = 0f;
        // The source index never falls as the destination grows, so the cells mapping to
        // (sy, sx) are one run of rows times one run of columns.
        for (int y = yFirst; y < p.LowerHeight && TensorKernels.NearestSource(y, scaleY, p.UpperHeight) == sy; y++)
        for (int x = xFirst; x < p.LowerWidth && TensorKernels.NearestSource(x, scaleX, p.UpperWidth) == sx; x++)
            sum += dLower[lowerBase + y * p.LowerWidth + x];
        dUpper[i] = accumulate != 0 ? dUpper[i] + sum : sum;
    }

    /// <summary>t = 0.</summary>
    public static void Zero(Index1D i, ArrayView<float> t) => t[i] = 0f;

    // The smallest destination index whose nearest source is >= source (inSize when none):
    // start from the exact-arithmetic answer ceil(source * outSize / inSize), then step until the
    // float32 rule agrees.
    private static int FirstMappedTo(int source, float scale, int inSize, int outSize)
    {
        int d = XMin((source * outSize + inSize - 1) / inSize, outSize);
        while (d > 0 && TensorKernels.NearestSource(d - 1, scale, inSize) >= source) d--;
        while (d < outSize && TensorKernels.NearestSource(d, scale, inSize) < source) d++;
        return d;
    }

    private static int XMin(int a, int b) => a < b ? a : b;
}
