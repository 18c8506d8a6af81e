// Convolution as an implicit GEMM: y[n, o, oy, ox] = act(sum_k W[o, k] * X[k, p] + bias[o]
// [+ residual]), where the GEMM is [out/groups] x [N*OH*OW] per group, K = in/groups * k * k,
// and X's column p = (n, oy, ox) is gathered from the NCHW input on the fly (zero padding).
// One group of 16x16 threads computes a 32x32 output tile (2x2 per thread), stepping through K
// in slices of 16 that are staged in shared memory. Shapes: x [N, in, H, W], weight
// [out, in/groups, k, k], bias [out] (or unused), residual and y [N, out, OH, OW].
// Reference test: tests/GhmGen.Runtime.Gpu.Tests/BackendOpTests.cs (against ReferenceBackend).
using ILGPU;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>The fixed arguments of one convolution launch (passed by value to the kernel).</summary>
internal readonly struct ConvLaunch
{
    public readonly int Batch, InChannels, Height, Width, OutChannels, OutHeight, OutWidth;
    public readonly int Kernel, Stride, Padding, InPerGroup, OutPerGroup;
    public readonly int HasBias, HasResidual, Relu;

    public ConvLaunch(ConvSpec spec, int batch, int height, int width, bool hasBias, bool hasResidual, bool relu)
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
        HasBias = hasBias ? 1 : 0;
        HasResidual = hasResidual ? 1 : 0;
        Relu = relu ? 1 : 0;
    }

    /// <summary>Columns of the GEMM: N*OH*OW.</summary>
    public int Columns => Batch * OutHeight * OutWidth;

    /// <summary>Reduction length: in/groups * k * k.</summary>
    public int Depth => InPerGroup * Kernel * Kernel;
}

/// <summary>The implicit-GEMM convolution kernel and its tile sizes.</summary>
internal static class ConvKernels
{
    /// <summary>Output tile edge (out channels and columns).</summary>
    public const int Tile = 32;

    /// <summary>Threads per group along each axis (each thread computes 2x2 outputs).</summary>
    public const int Threads = 16;

    /// <summary>Slice of the reduction staged in shared memory per step.</summary>
    public const int DepthSlice = 16;

    /// <summary>
    /// Grid (ceil(columns/32), ceil(out per group/32), groups); group (16, 16, 1).
    /// weight is [out, depth] row-major (the PyTorch layout flattened).
    /// </summary>
    public static void Conv2d(
        ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> residual, ArrayView<float> y, ConvLaunch p)
    {
        var weightTile = SharedMemory.Allocate<float>(Tile * DepthSlice);  // [32 o][16 k]
        var inputTile = SharedMemory.Allocate<float>(DepthSlice * Tile);   // [16 k][32 p]

        int tx = Group.IdxX, ty = Group.IdxY, thread = ty * Threads + tx;
        int columnBase = Grid.IdxX * Tile, rowBase = Grid.IdxY * Tile, group = Grid.IdxZ;
        int depth = p.Depth, columns = p.Columns, kk = p.Kernel * p.Kernel;
        int outPlane = p.OutHeight * p.OutWidth;

        // Each thread stages the same tile column (and weight-tile row) at every K step, so
        // the column's (n, oy, ox) decomposition is done once, outside the K loop.
        int stageColumn = thread % Tile, stageRow = thread / Tile;              // input tile
        int weightColumn = thread % DepthSlice, weightRow = thread / DepthSlice;  // weight tile
        int gatherColumn = columnBase + stageColumn;
        bool columnInside = gatherColumn < columns;
        int q = gatherColumn % outPlane;
        int iy0 = q / p.OutWidth * p.Stride - p.Padding, ix0 = q % p.OutWidth * p.Stride - p.Padding;
        int xBase = (gatherColumn / outPlane * p.InChannels + group * p.InPerGroup) * p.Height * p.Width;

        float acc00 = 0f, acc01 = 0f, acc10 = 0f, acc11 = 0f;
        for (int k0 = 0; k0 < depth; k0 += DepthSlice)
        {
            // 512 values per tile, 256 threads: each stages two weights and two inputs.
            for (int half = 0; half < 2; half++)
            {
                int oLocal = rowBase + weightRow + half * (Tile / 2), k = k0 + weightColumn;
                weightTile[(weightRow + half * (Tile / 2)) * DepthSlice + weightColumn] = oLocal < p.OutPerGroup && k < depth
                    ? weight[(group * p.OutPerGroup + oLocal) * depth + k]
                    : 0f;

                int kRow = stageRow + half * (DepthSlice / 2), kIn = k0 + kRow;
                float v = 0f;
                if (columnInside && kIn < depth)
                {
                    int ci = kIn / kk, r = kIn - ci * kk, ky = r / p.Kernel, kx = r - ky * p.Kernel;
                    int iy = iy0 + ky, ix = ix0 + kx;
                    if (iy >= 0 && iy < p.Height && ix >= 0 && ix < p.Width)
                        v = x[xBase + (ci * p.Height + iy) * p.Width + ix];
                }
                inputTile[kRow * Tile + stageColumn] = v;
            }
            Group.Barrier();

            for (int s = 0; s < DepthSlice; s++)
            {
                float a0 = weightTile[ty * DepthSlice + s], a1 = weightTile[(ty + Threads) * DepthSlice + s];
                float b0 = inputTile[s * Tile + tx], b1 = inputTile[s * Tile + tx + Threads];
                acc00 += a0 * b0;
                acc01 += a0 * b1;
                acc10 += a1 * b0;
                acc11 += a1 * b1;
            }
            Group.Barrier();
        }

        Store(y, bias, residual, p, group, rowBase + ty, columnBase + tx, acc00);
        Store(y, bias, residual, p, group, rowBase + ty, columnBase + tx + Threads, acc01);
        Store(y, bias, residual, p, group, rowBase + ty + Threads, columnBase + tx, acc10);
        Store(y, bias, residual, p, group, rowBase + ty + Threads, columnBase + tx + Threads, acc11);
    }

    private static void Store(
        ArrayView<float> y, ArrayView<float> bias, ArrayView<float> residual, ConvLaunch p,
        int group, int oLocal, int column, float sum)
    {
        if (oLocal >= p.OutPerGroup || column >= p.Columns) return;
        int o = group * p.OutPerGroup + oLocal;
        int outPlane = p.OutHeight * p.OutWidth;
        int n = column / outPlane, q = column % outPlane;
        int at = (n * p.OutChannels + o) * outPlane + q;
        if (p.HasBias != 0) sum += bias[o];
        if (p.HasResidual != 0) sum += residual[at];
        y[at] = p.Relu != 0 ? ReluOf(sum) : sum;
    }

    internal static float ReluOf(float v) => v > 0f ? v : 0f;
}
