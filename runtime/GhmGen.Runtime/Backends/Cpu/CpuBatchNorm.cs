// The CPU backend's batch norm with batch statistics (ITrainingBackend.BatchNormTraining and its
// backward), one work item per channel, so each channel's sums run on one thread in a fixed order
// (n, then the plane in 8-float vectors widened to double, then the scalar tail): the result does
// not depend on the thread count or on scheduling.
// Forward, channel c of x [N, C, H, W], M = N*H*W:
//   mean = sum x / M, variance = sum (x - mean)^2 / M (two passes, in double),
//   y = act(x * a + b [+ residual]) with a = weight * invstd, b = bias - mean * a (float, as PyTorch's CPU kernel).
// Backward: sumDy = sum dy, dot = sum (x - mean) dy (double); dBias (+)= sumDy, dWeight (+)= dot * invstd;
//   dx = ((dy - sumDy / M) - (x - mean) * dot * invstd^2 / M) * weight * invstd (float).
// Reference test: tests/GhmGen.Runtime.Tests/Backends/BatchNormTrainingTests.cs (against a float64 naive
// implementation and finite differences).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GhmGen.Backends.Cpu;

/// <summary>Per-call state of the batch-statistics batch norm ops (one call at a time), one item per channel.</summary>
[SkipLocalsInit]
internal sealed unsafe class CpuBatchNorm : IParallelWork
{
    private bool backward, relu, accumulate;
    private float* x, y, residual, dy, dx, weight, bias, mean, variance, dWeight, dBias;
    private int batch, channels, plane;
    private double epsilon;

    /// <summary>Sets up the forward op; returns the item count (channels).</summary>
    public int PrepareForward(float* x, float* weight, float* bias, float* residual, bool relu, float* y, float* mean, float* variance,
        TensorView xView, double epsilon)
    {
        backward = false;
        this.x = x;
        this.weight = weight;
        this.bias = bias;
        this.residual = residual;
        this.relu = relu;
        this.y = y;
        this.mean = mean;
        this.variance = variance;
        this.epsilon = epsilon;
        SetShape(xView);
        return channels;
    }

    /// <summary>Sets up the backward op (<paramref name="dx"/> null: parameter gradients only); returns the item count (channels).</summary>
    public int PrepareBackward(float* x, float* dy, float* weight, float* mean, float* variance, float* dx, float* dWeight, float* dBias,
        TensorView xView, double epsilon, bool accumulate)
    {
        backward = true;
        this.x = x;
        this.dy = dy;
        this.weight = weight;
        this.mean = mean;
        this.variance = variance;
        this.dx = dx;
        this.dWeight = dWeight;
        this.dBias = dBias;
        this.epsilon = epsilon;
        this.accumulate = accumulate;
        SetShape(xView);
        return channels;
    }

    private void SetShape(TensorView view)
    {
        batch = view.N;
        channels = view.C;
        plane = checked(view.H * view.W);
    }

    /// <inheritdoc/>
    public void Execute(int item, int worker)
    {
        if (backward) Backward(item);
        else Forward(item);
    }

    private float* Plane(float* t, int n, int c) => t + ((long)n * channels + c) * plane;

    private void Forward(int c)
    {
        double count = (double)batch * plane;
        double sum = 0;
        for (int n = 0; n < batch; n++) sum += Sum(Plane(x, n, c), plane);
        double mu = sum / count;
        double squares = 0;
        for (int n = 0; n < batch; n++) squares += SquaredDeviations(Plane(x, n, c), plane, mu);
        double var = squares / count;
        double invStd = 1 / Math.Sqrt(var + epsilon);
        mean[c] = (float)mu;
        variance[c] = (float)var;
        float a = (float)(weight[c] * invStd), b = (float)(bias[c] - mu * weight[c] * invStd);
        for (int n = 0; n < batch; n++)
            Normalize(Plane(x, n, c), residual is null ? null : Plane(residual, n, c), Plane(y, n, c), plane, a, b, relu);
    }

    private void Backward(int c)
    {
        double count = (double)batch * plane;
        float mu = mean[c];
        double invStd = 1 / Math.Sqrt(variance[c] + epsilon);
        double sumDy = 0, dot = 0;
        for (int n = 0; n < batch; n++)
        {
            (double s, double d) = SumAndDot(Plane(x, n, c), Plane(dy, n, c), plane, mu);
            sumDy += s;
            dot += d;
        }
        dBias[c] = (float)((accumulate ? dBias[c] : 0) + sumDy);
        dWeight[c] = (float)((accumulate ? dWeight[c] : 0) + dot * invStd);
        if (dx is null) return;
        float k = (float)(dot * invStd * invStd / count), meanDy = (float)(sumDy / count), scale = (float)(invStd * weight[c]);
        for (int n = 0; n < batch; n++)
            InputGradient(Plane(x, n, c), Plane(dy, n, c), Plane(dx, n, c), plane, mu, k, meanDy, scale);
    }

    private static double Sum(float* p, int length)
    {
        int i = 0;
        double sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<double> lo = Vector256<double>.Zero, hi = Vector256<double>.Zero;
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                (Vector256<double> l, Vector256<double> h) = Vector256.Widen(Vector256.Load(p + i));
                lo += l;
                hi += h;
            }
            sum = Vector256.Sum(lo + hi);
        }
        for (; i < length; i++) sum += p[i];
        return sum;
    }

    private static double SquaredDeviations(float* p, int length, double mu)
    {
        int i = 0;
        double sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<double> lo = Vector256<double>.Zero, hi = Vector256<double>.Zero, m = Vector256.Create(mu);
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                (Vector256<double> l, Vector256<double> h) = Vector256.Widen(Vector256.Load(p + i));
                l -= m;
                h -= m;
                lo += l * l;
                hi += h * h;
            }
            sum = Vector256.Sum(lo + hi);
        }
        for (; i < length; i++)
        {
            double d = p[i] - mu;
            sum += d * d;
        }
        return sum;
    }

    private static (double Sum, double Dot) SumAndDot(float* px, float* pdy, int length, float mu)
    {
        int i = 0;
        double sum = 0, dot = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<double> sLo = Vector256<double>.Zero, sHi = Vector256<double>.Zero, dLo = Vector256<double>.Zero, dHi = Vector256<double>.Zero;
            Vector256<double> m = Vector256.Create((double)mu);
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                (Vector256<double> xl, Vector256<double> xh) = Vector256.Widen(Vector256.Load(px + i));
                (Vector256<double> gl, Vector256<double> gh) = Vector256.Widen(Vector256.Load(pdy + i));
                sLo += gl;
                sHi += gh;
                dLo += (xl - m) * gl;
                dHi += (xh - m) * gh;
            }
            sum = Vector256.Sum(sLo + sHi);
            dot = Vector256.Sum(dLo + dHi);
        }
        for (; i < length; i++)
        {
            sum += pdy[i];
            dot += ((double)px[i] - mu) * pdy[i];
        }
        return (sum, dot);
    }

    private static void Normalize(float* px, float* pr, float* py, int length, float a, float b, bool relu)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b), zero = Vector256<float>.Zero;
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> v = Vector256.Load(px + i) * va + vb;
                if (pr != null) v += Vector256.Load(pr + i);
                if (relu) v = Vector256.Max(v, zero);
                v.Store(py + i);
            }
        }
        for (; i < length; i++)
        {
            float v = px[i] * a + b;
            if (pr != null) v += pr[i];
            py[i] = relu ? MathF.Max(v, 0f) : v;
        }
    }

    private static void InputGradient(float* px, float* pdy, float* pdx, int length, float mu, float k, float meanDy, float scale)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> vm = Vector256.Create(mu), vk = Vector256.Create(k), vd = Vector256.Create(meanDy), vs = Vector256.Create(scale);
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
                ((Vector256.Load(pdy + i) - vd - (Vector256.Load(px + i) - vm) * vk) * vs).Store(pdx + i);
        }
        for (; i < length; i++) pdx[i] = (pdy[i] - meanDy - (px[i] - mu) * k) * scale;
    }
}
