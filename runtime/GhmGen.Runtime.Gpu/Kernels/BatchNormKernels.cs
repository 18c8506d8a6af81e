// Batch norm with the batch's statistics (ITrainingBackend.BatchNormTraining and its backward) on
// the ILGPU backend: one warp per channel, with no atomics. Its lanes stride over the channel's
// M = N*H*W values (lane l takes values l, l + warp size, ...) with double sums, then a butterfly of
// shuffle-xors gives every lane the same total (a + b == b + a, so all lanes agree bitwise), and the
// order depends on the warp size only: the same result from run to run on one device.
// BatchNormForward: mean and biased variance (two passes), then y = act(x * a + b [+ residual]) with
//   a = weight * invstd, b = bias - mean * a, written by the same warp; lane 0 stores mean and variance.
// BatchNormBackward: sumDy = sum dy, dot = sum (x - mean) dy; lane 0 writes dBias (+)= sumDy and
//   dWeight (+)= dot * invstd; then (when dx is wanted) dx = (dy - sumDy / M - (x - mean) * dot *
//   invstd^2 / M) * weight * invstd.
// Reference test: tests/GhmGen.Runtime.Gpu.Tests/BackwardOpTests.cs (against ReferenceBackend).
using ILGPU;
using ILGPU.Algorithms;

namespace GhmGen.Backends.Gpu.Kernels;

/// <summary>The fixed arguments of one batch norm launch (passed by value).</summary>
internal readonly struct BatchNormLaunch(int batch, int channels, int plane, double epsilon, bool residual, bool relu, bool inputGradient, bool accumulate)
{
    public readonly int Batch = batch, Channels = channels, Plane = plane;
    public readonly double Epsilon = epsilon;
    public readonly int Residual = residual ? 1 : 0, Relu = relu ? 1 : 0, InputGradient = inputGradient ? 1 : 0, Accumulate = accumulate ? 1 : 0;
}

/// <summary>The batch-statistics batch norm kernels of the ILGPU backend.</summary>
internal static class BatchNormKernels
{
    /// <summary>Threads per group: a multiple of every warp size.</summary>
    public const int Threads = 256;

    private static int Channel() => Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;

    // Index of the j-th value (of M) of channel c.
    private static int At(int j, int c, BatchNormLaunch p)
    {
        int n = j / p.Plane;
        return (n * p.Channels + c) * p.Plane + (j - n * p.Plane);
    }

    private static double AllLanes(double v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1)
            v += Warp.ShuffleXor(v, offset);
        return v;
    }

    /// <summary>One warp per channel: statistics, then the normalized output.</summary>
    public static void BatchNormForward(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> residual,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> variance, BatchNormLaunch p)
    {
        int c = Channel();
        if (c >= p.Channels) return;  // the whole warp
        int lane = Warp.LaneIdx, warpSize = Warp.WarpSize, m = p.Batch * p.Plane;
        double sum = 0;
        for (int j = lane; j < m; j += warpSize) sum += x[At(j, c, p)];
        double mu = AllLanes(sum) / m;
        double squares = 0;
        for (int j = lane; j < m; j += warpSize)
        {
            double d = x[At(j, c, p)] - mu;
            squares += d * d;
        }
        double var = AllLanes(squares) / m;
        double invStd = 1.0 / XMath.Sqrt(var + p.Epsilon);
        if (lane == 0)
        {
            mean[c] = (float)mu;
            variance[c] = (float)var;
        }
        float a = (float)(weight[c] * invStd), b = (float)(bias[c] - mu * weight[c] * invStd);
        for (int j = lane; j < m; j += warpSize)
        {
            int i = At(j, c, p);
            float v = x[i] * a + b;
            if (p.Residual != 0) v += residual[i];
            y[i] = p.Relu != 0 && v < 0f ? 0f : v;
        }
    }

    /// <summary>One warp per channel: the sums, the parameter gradients, then the input gradient.</summary>
    public static void BatchNormBackward(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> weight, ArrayView<float> mean,
        ArrayView<float> variance, ArrayView<float> dx, ArrayView<float> dWeight, ArrayView<float> dBias, BatchNormLaunch p)
    {
        int c = Channel();
        if (c >= p.Channels) return;
        int lane = Warp.LaneIdx, warpSize = Warp.WarpSize, m = p.Batch * p.Plane;
        float mu = mean[c];
        double invStd = 1.0 / XMath.Sqrt(variance[c] + p.Epsilon);
        double sumDy = 0, dot = 0;
        for (int j = lane; j < m; j += warpSize)
        {
            int i = At(j, c, p);
            sumDy += dy[i];
            dot += ((double)x[i] - mu) * dy[i];
        }
        sumDy = AllLanes(sumDy);
        dot = AllLanes(dot);
        if (lane == 0)
        {
            dBias[c] = (float)((p.Accumulate != 0 ? dBias[c] : 0.0) + sumDy);
            dWeight[c] = (float)((p.Accumulate != 0 ? dWeight[c] : 0.0) + dot * invStd);
        }
        if (p.InputGradient == 0) return;
        float k = (float)(dot * invStd * invStd / m), meanDy = (float)(sumDy / m), scale = (float)(invStd * weight[c]);
        for (int j = lane; j < m; j += warpSize)
        {
            int i = At(j, c, p);
            dx[i] = (dy[i] - meanDy - (x[i] - mu) * k) * scale;
        }
    }
}
