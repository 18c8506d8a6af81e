// ReferenceBackend's backward ops (ITrainingBackend) against float64 central finite differences
// of the forward op they differentiate. Each test writes that forward as a tiny float64 loop,
// checks it against ReferenceBackend's float32 forward (so the differences are of the op the
// network actually runs), and differentiates the scalar loss L = sum(r * output) with a seeded
// random r, so dL/d(output) = r is the dy handed to the backward op. Shapes: odd sizes, stride 1
// and 2, kernels 1/3/7, padding 0/1/3, groups 1/2/4 (dense, grouped, ResNeXt-like 2 channels per
// group), batch 2; ReLU; max-pool 3x3/2 pad 1 (and ties: the first maximum wins); nearest
// upsample with non-integer ratios; accumulate = true; Zero.
using GhmGen.Backends;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class BackwardOpTests
{
    /// <summary>One convolution case: spec, batch, input size.</summary>
    public sealed record ConvCase(int In, int Out, int Kernel, int Stride, int Padding, int Groups, int N, int H, int W)
    {
        public ConvSpec Spec => new(In, Out, Kernel, Stride, Padding, Groups);

        public override string ToString() => $"{In}->{Out} k{Kernel}s{Stride}p{Padding}g{Groups} {N}x{H}x{W}";
    }

    private static readonly ConvCase[] ConvCases =
    [
        new(3, 4, 7, 2, 3, 1, 2, 11, 9),    // stem-like 7x7/2 pad 3, odd sizes
        new(4, 6, 3, 1, 1, 1, 2, 5, 7),     // dense 3x3
        new(4, 6, 3, 2, 1, 2, 2, 7, 6),     // groups 2, stride 2
        new(8, 8, 3, 1, 1, 4, 2, 5, 5),     // groups 4, 2 channels per group (ResNeXt-like)
        new(8, 8, 3, 2, 1, 4, 2, 7, 5),     // the same, stride 2 (first block of a ResNeXt stage)
        new(6, 5, 1, 1, 0, 1, 2, 4, 5),     // 1x1
        new(6, 8, 1, 2, 0, 2, 2, 7, 5),     // 1x1 stride 2 (downsample), grouped: odd rows/columns get no gradient
        new(4, 4, 3, 2, 0, 1, 2, 8, 7),     // pad 0, stride 2: the last row/column is reached by no window
        new(4, 6, 7, 1, 3, 2, 2, 6, 5),     // 7x7 stride 1 pad 3, grouped, kernel wider than the map
    ];

    public static TheoryData<int> ConvCaseIndices()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < ConvCases.Length; i++) data.Add(i);
        return data;
    }

    // Tolerance of a reference gradient against the finite difference. The reference sums
    // float32 products in double and rounds once, so it is within half an ulp of float32
    // (2^-24 ~ 6e-8 relative) of the exact gradient, plus double-rounding terms ~1e-16 per
    // summand. The finite differences of these losses are exact up to double rounding: the
    // convolution and the upsample are linear (any step gives the exact slope; h = 0.5), and
    // max-pool and ReLU are linear on pieces that the step h never leaves (inputs are kept more
    // than h away from every kink), so their error is ~1e-16 * |L| / h < 1e-11. Hence 1.2e-7
    // relative plus 1e-9 of the largest gradient: a wrong tap, channel, group, window or source
    // index moves a gradient by a whole term (~1e-2 .. 1), many orders above this.
    private const double Relative = 1.2e-7, Absolute = 1e-9;

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void ConvBackwardDataMatchesFiniteDifferences(int caseIndex)
    {
        ConvCase c = ConvCases[caseIndex];
        ConvSpec s = c.Spec;
        var random = new Random(100 + caseIndex);
        float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
        float[] w = CpuBackendTests.RandomValues(random, (int)s.WeightCount);
        float[] bias = CpuBackendTests.RandomValues(random, c.Out);
        int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
        float[] r = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
        CheckConvForward(c, x, w, bias);

        var reference = new ReferenceBackend();
        using IPreparedConv conv = reference.PrepareConv(s, w, bias);
        TensorView dy = CpuBackendTests.Tensor(reference, r, c.N, c.Out, oh, ow);
        TensorView dx = CpuBackendTests.Tensor(reference, new float[x.Length], c.N, c.In, c.H, c.W);
        reference.Conv2dBackwardData(conv, dy, dx, accumulate: false);
        float[] got = CpuBackendTests.Read(reference, dx);

        double[] xd = ToDouble(x), wd = ToDouble(w), bd = ToDouble(bias);
        double[] expected = FiniteDifferences(xd, 0.5, () => Loss(r, Conv64(c, xd, wd, bd)));
        AssertClose(expected, got, $"{c} dx");
        if (c.Kernel == 1 && c.Stride == 2)
            for (int i = 0; i < got.Length; i++)
                if (i % c.W % 2 == 1 || i / c.W % c.H % 2 == 1) Assert.Equal(0f, got[i]); // no window reads it
    }

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void ConvBackwardWeightsMatchesFiniteDifferences(int caseIndex)
    {
        ConvCase c = ConvCases[caseIndex];
        ConvSpec s = c.Spec;
        var random = new Random(200 + caseIndex);
        float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
        float[] w = CpuBackendTests.RandomValues(random, (int)s.WeightCount);
        float[] bias = CpuBackendTests.RandomValues(random, c.Out);
        int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
        float[] r = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
        CheckConvForward(c, x, w, bias);

        var reference = new ReferenceBackend();
        TensorView xv = CpuBackendTests.Tensor(reference, x, c.N, c.In, c.H, c.W);
        TensorView dy = CpuBackendTests.Tensor(reference, r, c.N, c.Out, oh, ow);
        TensorView dw = CpuBackendTests.Tensor(reference, new float[w.Length], c.Out, c.In / c.Groups, c.Kernel, c.Kernel);
        TensorView db = CpuBackendTests.Tensor(reference, new float[c.Out], 1, c.Out, 1, 1);
        reference.Conv2dBackwardWeights(s, xv, dy, dw, db, accumulate: false);

        double[] xd = ToDouble(x), wd = ToDouble(w), bd = ToDouble(bias);
        AssertClose(FiniteDifferences(wd, 0.5, () => Loss(r, Conv64(c, xd, wd, bd))), CpuBackendTests.Read(reference, dw), $"{c} dW");
        AssertClose(FiniteDifferences(bd, 0.5, () => Loss(r, Conv64(c, xd, wd, bd))), CpuBackendTests.Read(reference, db), $"{c} dBias");

        // Without a bias view only the weight gradient is written.
        TensorView dw2 = CpuBackendTests.Tensor(reference, new float[w.Length], c.Out, c.In / c.Groups, c.Kernel, c.Kernel);
        reference.Conv2dBackwardWeights(s, xv, dy, dw2, null, accumulate: false);
        Assert.Equal(CpuBackendTests.Read(reference, dw), CpuBackendTests.Read(reference, dw2));
    }

    [Fact]
    public void ConvBackwardAccumulateAddsToExistingContents()
    {
        foreach (int caseIndex in new[] { 0, 2, 6 })
        {
            ConvCase c = ConvCases[caseIndex];
            ConvSpec s = c.Spec;
            var random = new Random(300 + caseIndex);
            float[] x = CpuBackendTests.RandomValues(random, c.N * c.In * c.H * c.W);
            float[] w = CpuBackendTests.RandomValues(random, (int)s.WeightCount);
            int oh = s.OutputSize(c.H), ow = s.OutputSize(c.W);
            float[] r = CpuBackendTests.RandomValues(random, c.N * c.Out * oh * ow);
            float[] dx0 = CpuBackendTests.RandomValues(random, x.Length), dw0 = CpuBackendTests.RandomValues(random, w.Length);
            float[] db0 = CpuBackendTests.RandomValues(random, c.Out);

            var reference = new ReferenceBackend();
            using IPreparedConv conv = reference.PrepareConv(s, w, []);
            TensorView xv = CpuBackendTests.Tensor(reference, x, c.N, c.In, c.H, c.W);
            TensorView dy = CpuBackendTests.Tensor(reference, r, c.N, c.Out, oh, ow);
            float[] Run(float[] start, Action<TensorView, bool> op, int n, int ch, int h, int wd, bool accumulate)
            {
                TensorView t = CpuBackendTests.Tensor(reference, start, n, ch, h, wd);
                op(t, accumulate);
                return CpuBackendTests.Read(reference, t);
            }
            void Data(TensorView t, bool a) => reference.Conv2dBackwardData(conv, dy, t, a);
            TensorView Scratch(int count) => CpuBackendTests.Tensor(reference, new float[count], 1, count, 1, 1);
            void Weights(TensorView t, bool a) => reference.Conv2dBackwardWeights(s, xv, dy, t, Scratch(c.Out), a);
            void Bias(TensorView t, bool a) => reference.Conv2dBackwardWeights(s, xv, dy, Scratch(w.Length), t, a);

            // The accumulated result is float32(start + exact gradient); the plain one is
            // float32(exact gradient): they differ from start + plain by at most 2^-24 of each.
            foreach ((float[] start, Action<TensorView, bool> op, int n, int ch, int h, int wd, string what) in new[]
            {
                (dx0, (Action<TensorView, bool>)Data, c.N, c.In, c.H, c.W, "dx"),
                (dw0, Weights, c.Out, c.In / c.Groups, c.Kernel, c.Kernel, "dW"),
                (db0, Bias, 1, c.Out, 1, 1, "dBias"),
            })
            {
                float[] plain = Run(new float[start.Length], op, n, ch, h, wd, accumulate: false);
                Assert.Equal(plain, Run(CpuBackendTests.RandomValues(random, start.Length), op, n, ch, h, wd, accumulate: false)); // overwrites
                float[] summed = Run(start, op, n, ch, h, wd, accumulate: true);
                for (int i = 0; i < start.Length; i++)
                {
                    double want = (double)start[i] + plain[i];
                    Assert.True(Math.Abs(summed[i] - want) <= 1.2e-7 * (Math.Abs(start[i]) + Math.Abs(plain[i])),
                        $"{c} {what}[{i}]: accumulated {summed[i]}, start + gradient {want}");
                }
            }
        }
    }

    [Theory]
    [InlineData(1, 1, 1, 37)]
    [InlineData(2, 3, 5, 7)]
    public void ReluBackwardMatchesFiniteDifferences(int n, int c, int h, int w)
    {
        var random = new Random(n * 1000 + w);
        // Inputs at least 1/64 away from the kink at 0; the step 1/256 never crosses it.
        double[] x = Enumerable.Range(0, n * c * h * w).Select(_ => (random.Next(2) * 2 - 1) * (1 / 64.0 + random.NextDouble())).ToArray();
        float[] r = CpuBackendTests.RandomValues(random, x.Length);
        float[] xf = x.Select(v => (float)v).ToArray();
        x = ToDouble(xf);
        var reference = new ReferenceBackend();
        TensorView xv = CpuBackendTests.Tensor(reference, xf, n, c, h, w), yv = CpuBackendTests.Tensor(reference, new float[x.Length], n, c, h, w);
        reference.Relu(xv, yv);
        float[] y = CpuBackendTests.Read(reference, yv);
        for (int i = 0; i < x.Length; i++) Assert.Equal(Math.Max(x[i], 0), y[i]);

        TensorView dy = CpuBackendTests.Tensor(reference, r, n, c, h, w), dx = CpuBackendTests.Tensor(reference, new float[x.Length], n, c, h, w);
        reference.ReluBackward(yv, dy, dx);
        double[] expected = FiniteDifferences(x, 1 / 256.0, () => Loss(r, x.Select(v => Math.Max(v, 0)).ToArray()));
        AssertClose(expected, CpuBackendTests.Read(reference, dx), "relu dx");

        reference.ReluBackward(yv, dy, dy); // dx may alias dy
        AssertClose(expected, CpuBackendTests.Read(reference, dy), "relu dx aliasing dy");
    }

    [Theory]
    [InlineData(2, 3, 9, 11, 3, 2, 1)]   // the stem's max-pool, odd sizes
    [InlineData(2, 2, 8, 8, 3, 2, 1)]
    [InlineData(1, 2, 7, 6, 2, 2, 0)]    // windows that do not overlap
    [InlineData(1, 2, 5, 7, 3, 1, 1)]    // stride 1: each element is in up to 9 windows
    public void MaxPoolBackwardMatchesFiniteDifferences(int n, int c, int h, int w, int kernel, int stride, int padding)
    {
        var random = new Random(h * 31 + w);
        // Distinct inputs on a grid of 1/64: no ties, and the step 1/256 never changes a winner.
        int count = n * c * h * w;
        double[] x = Enumerable.Range(0, count).OrderBy(_ => random.Next()).Select(i => (i - count / 2) / 64.0).ToArray();
        float[] xf = x.Select(v => (float)v).ToArray();
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        float[] r = CpuBackendTests.RandomValues(random, n * c * oh * ow);
        double[] Forward() => MaxPool64(x, n * c, h, w, kernel, stride, padding);

        var reference = new ReferenceBackend();
        TensorView xv = CpuBackendTests.Tensor(reference, xf, n, c, h, w), yv = CpuBackendTests.Tensor(reference, new float[r.Length], n, c, oh, ow);
        reference.MaxPool2d(xv, yv, kernel, stride, padding);
        Assert.Equal(Forward().Select(v => (float)v).ToArray(), CpuBackendTests.Read(reference, yv));

        TensorView dy = CpuBackendTests.Tensor(reference, r, n, c, oh, ow), dx = CpuBackendTests.Tensor(reference, new float[count], n, c, h, w);
        reference.MaxPool2dBackward(xv, dy, dx, kernel, stride, padding, accumulate: false);
        double[] expected = FiniteDifferences(x, 1 / 256.0, () => Loss(r, Forward()));
        float[] got = CpuBackendTests.Read(reference, dx);
        AssertClose(expected, got, "max-pool dx");

        float[] start = CpuBackendTests.RandomValues(random, count);
        TensorView dxAcc = CpuBackendTests.Tensor(reference, start, n, c, h, w);
        reference.MaxPool2dBackward(xv, dy, dxAcc, kernel, stride, padding, accumulate: true);
        AssertClose(expected.Select((g, i) => g + start[i]).ToArray(), CpuBackendTests.Read(reference, dxAcc), "max-pool dx accumulated");
    }

    [Fact]
    public void MaxPoolBackwardGivesTiesToTheFirstMaximum()
    {
        var reference = new ReferenceBackend();
        // A constant 5x5 plane, 3x3/2 pad 1 -> 3x3: every window is one tie; PyTorch's CPU kernel
        // gives each output's gradient to the first valid element in row-major window order:
        // row max(0, 2*oy - 1), column max(0, 2*ox - 1).
        TensorView x = CpuBackendTests.Tensor(reference, Enumerable.Repeat(2f, 25).ToArray(), 1, 1, 5, 5);
        float[] r = [1, 2, 4, 8, 16, 32, 64, 128, 256];
        TensorView dy = CpuBackendTests.Tensor(reference, r, 1, 1, 3, 3), dx = CpuBackendTests.Tensor(reference, new float[25], 1, 1, 5, 5);
        reference.MaxPool2dBackward(x, dy, dx, 3, 2, 1, accumulate: false);
        var expected = new float[25];
        for (int oy = 0; oy < 3; oy++)
        for (int ox = 0; ox < 3; ox++)
            expected[Math.Max(0, 2 * oy - 1) * 5 + Math.Max(0, 2 * ox - 1)] += r[oy * 3 + ox];
        Assert.Equal(expected, CpuBackendTests.Read(reference, dx));

        // 3x3 image, one 3x3 window at pad 0: the maximum 7 appears at (0, 2), (1, 1) and (2, 0);
        // the first in row-major order, (0, 2), takes the whole gradient.
        x = CpuBackendTests.Tensor(reference, [1, 0, 7, 3, 7, 0, 7, 2, 1], 1, 1, 3, 3);
        dy = CpuBackendTests.Tensor(reference, [5], 1, 1, 1, 1);
        dx = CpuBackendTests.Tensor(reference, new float[9], 1, 1, 3, 3);
        reference.MaxPool2dBackward(x, dy, dx, 3, 1, 0, accumulate: false);
        Assert.Equal([0, 0, 5, 0, 0, 0, 0, 0, 0], CpuBackendTests.Read(reference, dx));
    }

    [Theory]
    [InlineData(2, 3, 5, 5, 13, 13)]   // 5 -> 13: non-integer ratio, uneven repeats
    [InlineData(1, 2, 2, 2, 82, 82)]   // 2 -> 82, as in the forward tests
    [InlineData(2, 2, 3, 5, 7, 10)]    // rows 3 -> 7, columns exactly 2x
    [InlineData(1, 2, 6, 6, 4, 5)]     // downsampling: some sources are never read
    public void UpsampleNearestBackwardMatchesFiniteDifferences(int n, int c, int ih, int iw, int oh, int ow)
    {
        var random = new Random(ih * 100 + oh);
        float[] upper = CpuBackendTests.RandomValues(random, n * c * ih * iw), lower = CpuBackendTests.RandomValues(random, n * c * oh * ow);
        float[] r = CpuBackendTests.RandomValues(random, lower.Length);
        double[] ud = ToDouble(upper), ld = ToDouble(lower);
        double[] Forward() => UpsampleAdd64(ud, ld, n * c, ih, iw, oh, ow);

        var reference = new ReferenceBackend();
        TensorView uv = CpuBackendTests.Tensor(reference, upper, n, c, ih, iw), lv = CpuBackendTests.Tensor(reference, lower, n, c, oh, ow);
        reference.UpsampleNearestAdd(uv, lv);
        Assert.Equal(Forward().Select(v => (float)v).ToArray(), CpuBackendTests.Read(reference, lv)); // one float add: exact

        TensorView dLower = CpuBackendTests.Tensor(reference, r, n, c, oh, ow), dUpper = CpuBackendTests.Tensor(reference, new float[upper.Length], n, c, ih, iw);
        reference.UpsampleNearestBackward(dLower, dUpper, accumulate: false);
        double[] expected = FiniteDifferences(ud, 0.5, () => Loss(r, Forward()));
        AssertClose(expected, CpuBackendTests.Read(reference, dUpper), "upsample dUpper");
        if (oh < ih) Assert.Contains(0f, CpuBackendTests.Read(reference, dUpper));

        float[] start = CpuBackendTests.RandomValues(random, upper.Length);
        TensorView dUpperAcc = CpuBackendTests.Tensor(reference, start, n, c, ih, iw);
        reference.UpsampleNearestBackward(dLower, dUpperAcc, accumulate: true);
        AssertClose(expected.Select((g, i) => g + start[i]).ToArray(), CpuBackendTests.Read(reference, dUpperAcc), "upsample dUpper accumulated");
    }

    [Fact]
    public void ZeroClearsTheViewOnly()
    {
        var reference = new ReferenceBackend();
        DeviceBuffer buffer = reference.Allocate(40);
        ((HostBuffer)buffer).Array.AsSpan().Fill(3f);
        reference.Zero(new TensorView(buffer, 5, 2, 3, 2, 2));
        float[] all = ((HostBuffer)buffer).Array;
        for (int i = 0; i < all.Length; i++) Assert.Equal(i >= 5 && i < 29 ? 0f : 3f, all[i]);
    }

    // The float64 forward convolution (PyTorch cross-correlation, zero padding, groups).
    private static double[] Conv64(ConvCase c, double[] x, double[] w, double[] bias)
    {
        int oh = c.Spec.OutputSize(c.H), ow = c.Spec.OutputSize(c.W), cin = c.In / c.Groups, cout = c.Out / c.Groups, k = c.Kernel;
        var y = new double[c.N * c.Out * oh * ow];
        for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.Out; o++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            double sum = bias[o];
            for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                int iy = oy * c.Stride - c.Padding + ky, ix = ox * c.Stride - c.Padding + kx;
                if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                sum += w[((o * cin + ci) * k + ky) * k + kx] * x[((n * c.In + o / cout * cin + ci) * c.H + iy) * c.W + ix];
            }
            y[((n * c.Out + o) * oh + oy) * ow + ox] = sum;
        }
        return y;
    }

    // The float64 max-pool: padding never wins.
    private static double[] MaxPool64(double[] x, int planes, int h, int w, int kernel, int stride, int padding)
    {
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        var y = new double[planes * oh * ow];
        for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            double best = double.NegativeInfinity;
            for (int ky = 0; ky < kernel; ky++)
            for (int kx = 0; kx < kernel; kx++)
            {
                int iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w) best = Math.Max(best, x[(p * h + iy) * w + ix]);
            }
            y[(p * oh + oy) * ow + ox] = best;
        }
        return y;
    }

    // lower + nearest-upsample(upper) in float64, with PyTorch's index rule: the scale in/out is a
    // float32, source = min(floor(dst * scale), in - 1).
    private static double[] UpsampleAdd64(double[] upper, double[] lower, int planes, int ih, int iw, int oh, int ow)
    {
        float scaleY = (float)ih / oh, scaleX = (float)iw / ow;
        var y = (double[])lower.Clone();
        for (int p = 0; p < planes; p++)
        for (int dy = 0; dy < oh; dy++)
        for (int dx = 0; dx < ow; dx++)
        {
            int sy = Math.Min((int)MathF.Floor(dy * scaleY), ih - 1), sx = Math.Min((int)MathF.Floor(dx * scaleX), iw - 1);
            y[(p * oh + dy) * ow + dx] += upper[(p * ih + sy) * iw + sx];
        }
        return y;
    }

    // The float64 forward matches the reference's float32 forward to float32 rounding.
    private static void CheckConvForward(ConvCase c, float[] x, float[] w, float[] bias)
    {
        var reference = new ReferenceBackend();
        using IPreparedConv conv = reference.PrepareConv(c.Spec, w, bias);
        int oh = c.Spec.OutputSize(c.H), ow = c.Spec.OutputSize(c.W);
        TensorView xv = CpuBackendTests.Tensor(reference, x, c.N, c.In, c.H, c.W), yv = CpuBackendTests.Tensor(reference, new float[c.N * c.Out * oh * ow], c.N, c.Out, oh, ow);
        reference.Conv2d(conv, xv, yv, null, relu: false);
        float[] y = CpuBackendTests.Read(reference, yv);
        double[] y64 = Conv64(c, ToDouble(x), ToDouble(w), ToDouble(bias));
        for (int i = 0; i < y.Length; i++) Assert.True(Math.Abs(y[i] - y64[i]) < 1e-5, $"{c}: float64 forward {y64[i]}, reference {y[i]}");
    }

    // d loss / d values[i] for every i, by central differences with step h (values restored).
    private static double[] FiniteDifferences(double[] values, double h, Func<double> loss)
    {
        var gradient = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            double v = values[i];
            values[i] = v + h;
            double plus = loss();
            values[i] = v - h;
            double minus = loss();
            values[i] = v;
            gradient[i] = (plus - minus) / (2 * h);
        }
        return gradient;
    }

    private static double Loss(float[] r, double[] y)
    {
        double sum = 0;
        for (int i = 0; i < y.Length; i++) sum += r[i] * y[i];
        return sum;
    }

    private static void AssertClose(double[] expected, float[] got, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < got.Length; i++)
        {
            double tolerance = Relative * Math.Abs(expected[i]) + Absolute * scale;
            Assert.True(Math.Abs(got[i] - expected[i]) <= tolerance, $"{what}[{i}]: {got[i]}, finite difference {expected[i]} (tolerance {tolerance:g3})");
        }
    }

    private static double[] ToDouble(float[] values) => values.Select(v => (double)v).ToArray();
}
