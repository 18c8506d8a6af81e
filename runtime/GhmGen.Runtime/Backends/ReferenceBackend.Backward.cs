// The plain-loop reference for every op of ITrainingBackend: the gradient of each forward op as
// the obvious loop over the forward op's own index space (a scatter), summed in double and
// rounded once. The CPU and GPU backward ops are tested against it, and it against float64
// finite differences (tests/GhmGen.Runtime.Tests/Backends/BackwardOpTests.cs).
namespace GhmGen.Backends;

public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        if (conv is not PreparedConv p)
            throw new ArgumentException("the convolution was not prepared by the reference backend", nameof(conv));
        if (weight.Length != p.Weight.Length || bias.Length != p.Bias.Length)
            throw new ArgumentException($"conv {p.Spec}: new weights have {weight.Length} + {bias.Length} elements; prepared with {p.Weight.Length} + {p.Bias.Length}");
        weight.CopyTo(p.Weight);
        bias.CopyTo(p.Bias);
    }

    /// <inheritdoc/>
    public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate)
    {
        if (conv is not PreparedConv p)
            throw new ArgumentException("the convolution was not prepared by the reference backend", nameof(conv));
        ConvSpec s = p.Spec;
        CheckConvShapes(s, dx, dy, "conv backward-data");
        ReadOnlySpan<float> dys = Span(dy);
        Span<float> dxs = Span(dx);
        var sum = new double[dxs.Length];
        if (accumulate) for (int i = 0; i < sum.Length; i++) sum[i] = dxs[i];
        int inPerGroup = s.InChannels / s.Groups, outPerGroup = s.OutChannels / s.Groups, k = s.Kernel;
        for (int n = 0; n < dy.N; n++)
        for (int o = 0; o < s.OutChannels; o++)
        {
            int g = o / outPerGroup;
            for (int oy = 0; oy < dy.H; oy++)
            for (int ox = 0; ox < dy.W; ox++)
            {
                double d = dys[((n * dy.C + o) * dy.H + oy) * dy.W + ox];
                for (int ci = 0; ci < inPerGroup; ci++)
                for (int ky = 0; ky < k; ky++)
                {
                    int iy = oy * s.Stride - s.Padding + ky;
                    if ((uint)iy >= (uint)dx.H) continue;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ix = ox * s.Stride - s.Padding + kx;
                        if ((uint)ix >= (uint)dx.W) continue;
                        int c = g * inPerGroup + ci;
                        sum[((n * dx.C + c) * dx.H + iy) * dx.W + ix] += d * p.Weight[((o * inPerGroup + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        for (int i = 0; i < sum.Length; i++) dxs[i] = (float)sum[i];
    }

    /// <inheritdoc/>
    public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate)
    {
        ConvSpec s = spec;
        CheckConvShapes(s, x, dy, "conv backward-weights");
        if (dWeight.ElementCount != s.WeightCount)
            throw new ArgumentException($"conv backward-weights {s}: weight gradient {dWeight.ShapeText} does not hold {s.WeightCount} elements", nameof(dWeight));
        if (dBias is { } bv && bv.ElementCount != s.OutChannels)
            throw new ArgumentException($"conv backward-weights {s}: bias gradient {bv.ShapeText} does not hold {s.OutChannels} elements", nameof(dBias));
        ReadOnlySpan<float> xs = Span(x), dys = Span(dy);
        Span<float> dws = Span(dWeight);
        var sum = new double[dws.Length];
        var biasSum = new double[s.OutChannels];
        int inPerGroup = s.InChannels / s.Groups, outPerGroup = s.OutChannels / s.Groups, k = s.Kernel;
        for (int n = 0; n < dy.N; n++)
        for (int o = 0; o < s.OutChannels; o++)
        {
            int g = o / outPerGroup;
            for (int oy = 0; oy < dy.H; oy++)
            for (int ox = 0; ox < dy.W; ox++)
            {
                double d = dys[((n * dy.C + o) * dy.H + oy) * dy.W + ox];
                biasSum[o] += d;
                for (int ci = 0; ci < inPerGroup; ci++)
                for (int ky = 0; ky < k; ky++)
                {
                    int iy = oy * s.Stride - s.Padding + ky;
                    if ((uint)iy >= (uint)x.H) continue;
                    for (int kx = 0; kx < k; kx++)
                    {
                        int ix = ox * s.Stride - s.Padding + kx;
                        if ((uint)ix >= (uint)x.W) continue;
                        int c = g * inPerGroup + ci;
                        sum[((o * inPerGroup + ci) * k + ky) * k + kx] += d * xs[((n * x.C + c) * x.H + iy) * x.W + ix];
                    }
                }
            }
        }
        for (int i = 0; i < sum.Length; i++) dws[i] = (float)(sum[i] + (accumulate ? dws[i] : 0));
        if (dBias is { } b)
        {
            Span<float> dbs = Span(b);
            for (int o = 0; o < s.OutChannels; o++) dbs[o] = (float)(biasSum[o] + (accumulate ? dbs[o] : 0));
        }
    }

    /// <inheritdoc/>
    public void ReluBackward(TensorView y, TensorView dy, TensorView dx)
    {
        ReadOnlySpan<float> ys = Span(y), dys = Span(dy);
        Span<float> dxs = Span(dx);
        if (ys.Length != dys.Length || ys.Length != dxs.Length)
            throw new ArgumentException($"relu backward: shapes {y.ShapeText}, {dy.ShapeText}, {dx.ShapeText} differ");
        for (int i = 0; i < dxs.Length; i++) dxs[i] = ys[i] > 0f ? dys[i] : 0f;
    }

    /// <inheritdoc/>
    public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate)
    {
        int oh = (x.H + 2 * padding - kernel) / stride + 1, ow = (x.W + 2 * padding - kernel) / stride + 1;
        if (dy.N != x.N || dy.C != x.C || dy.H != oh || dy.W != ow || dx.N != x.N || dx.C != x.C || dx.H != x.H || dx.W != x.W)
            throw new ArgumentException($"max-pool backward: input {x.ShapeText}, output gradient {dy.ShapeText} and input gradient {dx.ShapeText} do not fit");
        ReadOnlySpan<float> xs = Span(x), dys = Span(dy);
        Span<float> dxs = Span(dx);
        var sum = new double[dxs.Length];
        if (accumulate) for (int i = 0; i < sum.Length; i++) sum[i] = dxs[i];
        for (int nc = 0; nc < x.N * x.C; nc++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            int winner = -1;
            float best = float.NegativeInfinity;
            for (int ky = 0; ky < kernel; ky++)
            for (int kx = 0; kx < kernel; kx++)
            {
                int iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if ((uint)iy >= (uint)x.H || (uint)ix >= (uint)x.W) continue;
                int at = (nc * x.H + iy) * x.W + ix;
                // PyTorch: the first valid element starts as the winner; then val > best or isnan(val).
                if (winner < 0 || xs[at] > best || float.IsNaN(xs[at]))
                {
                    winner = at;
                    best = xs[at];
                }
            }
            if (winner >= 0) sum[winner] += dys[(nc * oh + oy) * ow + ox];
        }
        for (int i = 0; i < sum.Length; i++) dxs[i] = (float)sum[i];
    }

    /// <inheritdoc/>
    public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate)
    {
        if (dUpper.N != dLower.N || dUpper.C != dLower.C)
            throw new ArgumentException($"upsample backward: {dUpper.ShapeText} and {dLower.ShapeText} differ in batch or channels");
        ReadOnlySpan<float> ls = Span(dLower);
        Span<float> us = Span(dUpper);
        var sum = new double[us.Length];
        if (accumulate) for (int i = 0; i < sum.Length; i++) sum[i] = us[i];
        float scaleY = (float)dUpper.H / dLower.H, scaleX = (float)dUpper.W / dLower.W;
        for (int nc = 0; nc < dLower.N * dLower.C; nc++)
        for (int y = 0; y < dLower.H; y++)
        {
            int sy = Math.Min((int)MathF.Floor(y * scaleY), dUpper.H - 1);
            for (int x = 0; x < dLower.W; x++)
            {
                int sx = Math.Min((int)MathF.Floor(x * scaleX), dUpper.W - 1);
                sum[(nc * dUpper.H + sy) * dUpper.W + sx] += ls[(nc * dLower.H + y) * dLower.W + x];
            }
        }
        for (int i = 0; i < sum.Length; i++) us[i] = (float)sum[i];
    }

    /// <inheritdoc/>
    public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon)
    {
        BatchNormChecks.Forward(x, weight, bias, residual, y, mean, variance);
        ReadOnlySpan<float> xs = Span(x), ws = Span(weight), bs = Span(bias);
        ReadOnlySpan<float> rs = residual is { } r ? Span(r) : default;
        Span<float> ys = Span(y), ms = Span(mean), vs = Span(variance);
        int plane = x.H * x.W;
        double count = (double)x.N * plane;
        for (int c = 0; c < x.C; c++)
        {
            double sum = 0, squares = 0;
            for (int n = 0; n < x.N; n++)
            for (int i = 0; i < plane; i++) sum += xs[(n * x.C + c) * plane + i];
            double mu = sum / count;
            for (int n = 0; n < x.N; n++)
            for (int i = 0; i < plane; i++)
            {
                double d = xs[(n * x.C + c) * plane + i] - mu;
                squares += d * d;
            }
            double var = squares / count, invStd = 1 / Math.Sqrt(var + epsilon);
            ms[c] = (float)mu;
            vs[c] = (float)var;
            for (int n = 0; n < x.N; n++)
            for (int i = 0; i < plane; i++)
            {
                int at = (n * x.C + c) * plane + i;
                double v = ws[c] * (xs[at] - mu) * invStd + bs[c];
                if (residual is not null) v += rs[at];
                ys[at] = (float)(relu ? Math.Max(v, 0) : v);
            }
        }
    }

    /// <inheritdoc/>
    public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate)
    {
        BatchNormChecks.Backward(x, dy, weight, mean, variance, dx, dWeight, dBias);
        ReadOnlySpan<float> xs = Span(x), dys = Span(dy), ws = Span(weight), ms = Span(mean), vs = Span(variance);
        Span<float> dxs = dx is { } d ? Span(d) : default, dws = Span(dWeight), dbs = Span(dBias);
        int plane = x.H * x.W;
        double count = (double)x.N * plane;
        for (int c = 0; c < x.C; c++)
        {
            double invStd = 1 / Math.Sqrt(vs[c] + epsilon), sumDy = 0, sumDyXhat = 0;
            for (int n = 0; n < x.N; n++)
            for (int i = 0; i < plane; i++)
            {
                int at = (n * x.C + c) * plane + i;
                sumDy += dys[at];
                sumDyXhat += dys[at] * (xs[at] - ms[c]) * invStd;
            }
            dbs[c] = (float)((accumulate ? dbs[c] : 0) + sumDy);
            dws[c] = (float)((accumulate ? dws[c] : 0) + sumDyXhat);
            if (dx is null) continue;
            for (int n = 0; n < x.N; n++)
            for (int i = 0; i < plane; i++)
            {
                int at = (n * x.C + c) * plane + i;
                double xhat = (xs[at] - ms[c]) * invStd;
                dxs[at] = (float)(ws[c] * invStd * (dys[at] - sumDy / count - xhat * sumDyXhat / count));
            }
        }
    }

    /// <inheritdoc/>
    public void Zero(TensorView t) => Span(t).Clear();

    // x (or dx) is [N, in, H, W] and dy [N, out, OH, OW] of one convolution.
    private static void CheckConvShapes(ConvSpec s, TensorView x, TensorView dy, string op)
    {
        if (x.C != s.InChannels || dy.C != s.OutChannels || dy.N != x.N || dy.H != s.OutputSize(x.H) || dy.W != s.OutputSize(x.W))
            throw new ArgumentException($"{op} {s}: input {x.ShapeText} does not give output {dy.ShapeText}");
    }
}
