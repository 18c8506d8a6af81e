// The batch-statistics batch norm ops (ITrainingBackend.BatchNormTraining and its backward) of the
// CPU and reference backends against an independent float64 implementation written here: the
// forward's mean, biased variance and output (with residual and ReLU), and the backward against
// central finite differences of that float64 forward (d loss / d x, weight and bias for
// loss = sum dy * y). Odd shapes: batch 1 and 2, channel counts that are not a multiple of the
// SIMD width, planes with a scalar tail, 1x1 planes. Also: the CPU result is bitwise the same for 1, 2
// and 3 threads (one work item per channel), accumulate, a missing dx, dx = dy, and the argument checks.
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

public sealed class BatchNormTrainingTests
{
    private const double Epsilon = 1e-5;

    // N, C, H, W
    public static TheoryData<int, int, int, int> Shapes { get; } = new()
    {
        { 1, 3, 5, 7 },    // batch 1, 35-value planes: 4 vectors and a tail of 3
        { 2, 11, 4, 9 },   // 11 channels
        { 2, 13, 1, 1 },   // 1x1 planes: M = 2, scalar only
        { 1, 1, 3, 3 },    // one channel, 9 values
        { 2, 9, 8, 8 },    // whole vectors only
        { 2, 5, 17, 3 },
    };

    public static TheoryData<string> Backends { get; } = new() { "cpu", "reference" };

    private static ITrainingBackend Make(string name, int threads = 2) => name == "cpu" ? new CpuBackend(threads) : new ReferenceBackend();

    /// <summary>Random values with a per-channel offset and scale, so the statistics are not trivial.</summary>
    private static float[] Input(Random random, int n, int c, int plane)
    {
        var x = new float[n * c * plane];
        for (int i = 0; i < x.Length; i++)
        {
            int channel = i / plane % c;
            x[i] = (float)((random.NextDouble() * 2 - 1) * (0.5 + channel % 4) + 0.3 * channel - 1);
        }
        return x;
    }

    private static float[] Random(Random random, int length, double low = -1, double high = 1)
    {
        var v = new float[length];
        for (int i = 0; i < length; i++) v[i] = (float)(low + (high - low) * random.NextDouble());
        return v;
    }

    /// <summary>The float64 batch norm: mean, biased variance and y (with residual and ReLU).</summary>
    private static (double[] Mean, double[] Var, double[] Y) Naive(double[] x, double[] w, double[] b, double[]? r, bool relu, int n, int c, int plane)
    {
        var mean = new double[c];
        var var = new double[c];
        var y = new double[x.Length];
        int m = n * plane;
        for (int ch = 0; ch < c; ch++)
        {
            double s = 0;
            for (int k = 0; k < n; k++)
            for (int i = 0; i < plane; i++) s += x[(k * c + ch) * plane + i];
            mean[ch] = s / m;
            double q = 0;
            for (int k = 0; k < n; k++)
            for (int i = 0; i < plane; i++) q += Math.Pow(x[(k * c + ch) * plane + i] - mean[ch], 2);
            var[ch] = q / m;
            for (int k = 0; k < n; k++)
            for (int i = 0; i < plane; i++)
            {
                int at = (k * c + ch) * plane + i;
                double v = w[ch] * (x[at] - mean[ch]) / Math.Sqrt(var[ch] + Epsilon) + b[ch];
                if (r is not null) v += r[at];
                y[at] = relu ? Math.Max(v, 0) : v;
            }
        }
        return (mean, var, y);
    }

    private static double[] D(float[] v) => v.Select(f => (double)f).ToArray();

    private static TensorView Put(ITrainingBackend backend, List<DeviceBuffer> owned, float[] values, int n, int c, int h, int w, int offset = 3)
    {
        DeviceBuffer buffer = backend.Allocate(values.Length + offset + 2);
        owned.Add(buffer);
        var view = new TensorView(buffer, offset, n, c, h, w);
        backend.Upload(values, view);
        return view;
    }

    private static float[] Get(ITrainingBackend backend, TensorView view)
    {
        var v = new float[view.ElementCount];
        backend.Download(view, v);
        return v;
    }

    private static void Close(double expected, double actual, double tolerance, string what)
    {
        if (!(Math.Abs(expected - actual) <= tolerance))
            Assert.Fail($"{what}: expected {expected:R}, got {actual:R} (tolerance {tolerance:G3})");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardMatchesFloat64(int n, int c, int h, int w)
    {
        foreach (string name in new[] { "cpu", "reference" })
        foreach ((bool residual, bool relu) in new[] { (false, false), (true, true), (false, true) })
        {
            var random = new Random(n * 1000 + c * 100 + h * 10 + w);
            int plane = h * w;
            float[] x = Input(random, n, c, plane), weight = Random(random, c, 0.5, 1.5), bias = Random(random, c);
            float[]? r = residual ? Random(random, x.Length) : null;
            (double[] mean, double[] var, double[] y) = Naive(D(x), D(weight), D(bias), r is null ? null : D(r), relu, n, c, plane);

            using ITrainingBackend b = Make(name);
            var owned = new List<DeviceBuffer>();
            TensorView xv = Put(b, owned, x, n, c, h, w), wv = Put(b, owned, weight, 1, c, 1, 1), bv = Put(b, owned, bias, 1, c, 1, 1);
            TensorView? rv = r is null ? null : Put(b, owned, r, n, c, h, w);
            TensorView yv = Put(b, owned, new float[x.Length], n, c, h, w), mv = Put(b, owned, new float[c], 1, c, 1, 1), vv = Put(b, owned, new float[c], 1, c, 1, 1);
            b.BatchNormTraining(xv, wv, bv, rv, relu, yv, mv, vv, Epsilon);
            float[] gotY = Get(b, yv), gotMean = Get(b, mv), gotVar = Get(b, vv);
            // Sums in double rounded once to float: half an ulp of the value, plus a little.
            for (int ch = 0; ch < c; ch++)
            {
                Close(mean[ch], gotMean[ch], 1e-6 * (1 + Math.Abs(mean[ch])), $"{name} mean[{ch}]");
                Close(var[ch], gotVar[ch], 1e-6 * var[ch], $"{name} variance[{ch}]");
            }
            // y = x * a + b in float (a, b rounded): a few ulps of |x * a| and |b|.
            for (int i = 0; i < y.Length; i++)
                Close(y[i], gotY[i], 2e-6 * (1 + Math.Abs(y[i]) + 4 * Math.Abs(x[i] * weight[i / plane % c])), $"{name} residual {residual} relu {relu} y[{i}]");
            foreach (DeviceBuffer buffer in owned) buffer.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardMatchesFiniteDifferences(int n, int c, int h, int w)
    {
        var random = new Random(n * 7919 + c * 31 + h * 7 + w);
        int plane = h * w;
        float[] x = Input(random, n, c, plane), weight = Random(random, c, 0.5, 1.5), bias = Random(random, c), dy = Random(random, x.Length);
        double[] xd = D(x), wd = D(weight), bd = D(bias), dyd = D(dy);
        double Loss(double[] xs, double[] ws, double[] bs)
        {
            double[] y = Naive(xs, ws, bs, null, false, n, c, plane).Y;
            double s = 0;
            for (int i = 0; i < y.Length; i++) s += dyd[i] * y[i];
            return s;
        }
        double Numeric(double[] v, int i)
        {
            const double step = 1e-5;
            double keep = v[i];
            v[i] = keep + step;
            double up = Loss(xd, wd, bd);
            v[i] = keep - step;
            double down = Loss(xd, wd, bd);
            v[i] = keep;
            return (up - down) / (2 * step);
        }
        double[] dxExpected = Enumerable.Range(0, x.Length).Select(i => Numeric(xd, i)).ToArray();
        double[] dwExpected = Enumerable.Range(0, c).Select(i => Numeric(wd, i)).ToArray();
        double[] dbExpected = Enumerable.Range(0, c).Select(i => Numeric(bd, i)).ToArray();
        double scale = Math.Max(1, dxExpected.Max(Math.Abs));

        foreach (string name in new[] { "cpu", "reference" })
        {
            using ITrainingBackend b = Make(name);
            var owned = new List<DeviceBuffer>();
            TensorView xv = Put(b, owned, x, n, c, h, w), wv = Put(b, owned, weight, 1, c, 1, 1), bv = Put(b, owned, bias, 1, c, 1, 1);
            TensorView yv = Put(b, owned, new float[x.Length], n, c, h, w), mv = Put(b, owned, new float[c], 1, c, 1, 1), vv = Put(b, owned, new float[c], 1, c, 1, 1);
            b.BatchNormTraining(xv, wv, bv, null, false, yv, mv, vv, Epsilon);
            TensorView dyv = Put(b, owned, dy, n, c, h, w), dxv = Put(b, owned, Random(random, x.Length), n, c, h, w);
            TensorView dwv = Put(b, owned, Random(random, c), 1, c, 1, 1), dbv = Put(b, owned, Random(random, c), 1, c, 1, 1);
            b.BatchNormTrainingBackward(xv, dyv, wv, mv, vv, Epsilon, dxv, dwv, dbv, accumulate: false);
            float[] dx = Get(b, dxv), dw = Get(b, dwv), db = Get(b, dbv);
            // Finite differences of a float64 forward (step 1e-5: truncation ~1e-10, rounding ~1e-10 * M);
            // the op works on float inputs and rounds its results: 1e-5 relative to the gradient scale.
            for (int i = 0; i < dx.Length; i++) Close(dxExpected[i], dx[i], 2e-5 * scale, $"{name} dx[{i}]");
            for (int i = 0; i < c; i++)
            {
                Close(dwExpected[i], dw[i], 2e-5 * (1 + Math.Abs(dwExpected[i])), $"{name} dWeight[{i}]");
                Close(dbExpected[i], db[i], 2e-5 * (1 + Math.Abs(dbExpected[i])), $"{name} dBias[{i}]");
            }

            // Accumulate adds to the parameter gradients; no dx leaves its buffer alone.
            b.BatchNormTrainingBackward(xv, dyv, wv, mv, vv, Epsilon, null, dwv, dbv, accumulate: true);
            float[] dw2 = Get(b, dwv), db2 = Get(b, dbv);
            for (int i = 0; i < c; i++)
            {
                Close(2.0 * dw[i], dw2[i], 1e-6 * (1 + Math.Abs(dw[i])), $"{name} accumulated dWeight[{i}]");
                Close(2.0 * db[i], db2[i], 1e-6 * (1 + Math.Abs(db[i])), $"{name} accumulated dBias[{i}]");
            }
            Assert.Equal(dx, Get(b, dxv));

            // dx may be dy itself.
            b.BatchNormTrainingBackward(xv, dyv, wv, mv, vv, Epsilon, dyv, dwv, dbv, accumulate: false);
            float[] inPlace = Get(b, dyv);
            for (int i = 0; i < dx.Length; i++) Close(dx[i], inPlace[i], 0, $"{name} in-place dx[{i}]");
            foreach (DeviceBuffer buffer in owned) buffer.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CpuIsBitwiseIndependentOfTheThreadCount(int n, int c, int h, int w)
    {
        var random = new Random(c * 13 + w);
        int plane = h * w;
        float[] x = Input(random, n, c, plane), weight = Random(random, c, 0.5, 1.5), bias = Random(random, c), r = Random(random, x.Length), dy = Random(random, x.Length);
        float[][] Run(int threads)
        {
            using var b = new CpuBackend(threads);
            var owned = new List<DeviceBuffer>();
            TensorView xv = Put(b, owned, x, n, c, h, w), wv = Put(b, owned, weight, 1, c, 1, 1), bv = Put(b, owned, bias, 1, c, 1, 1), rv = Put(b, owned, r, n, c, h, w);
            TensorView yv = Put(b, owned, new float[x.Length], n, c, h, w), mv = Put(b, owned, new float[c], 1, c, 1, 1), vv = Put(b, owned, new float[c], 1, c, 1, 1);
            b.BatchNormTraining(xv, wv, bv, rv, true, yv, mv, vv, Epsilon);
            TensorView dyv = Put(b, owned, dy, n, c, h, w), dxv = Put(b, owned, new float[x.Length], n, c, h, w);
            TensorView dwv = Put(b, owned, new float[c], 1, c, 1, 1), dbv = Put(b, owned, new float[c], 1, c, 1, 1);
            b.BatchNormTrainingBackward(xv, dyv, wv, mv, vv, Epsilon, dxv, dwv, dbv, accumulate: false);
            float[][] result = [Get(b, yv), Get(b, mv), Get(b, vv), Get(b, dxv), Get(b, dwv), Get(b, dbv)];
            foreach (DeviceBuffer buffer in owned) buffer.Dispose();
            return result;
        }
        float[][] one = Run(1);
        foreach (int threads in new[] { 2, 3 })
        {
            float[][] other = Run(threads);
            for (int t = 0; t < one.Length; t++)
                Assert.True(one[t].AsSpan().SequenceEqual(other[t]), $"output {t} differs between 1 and {threads} threads");
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void RejectsBadOperands(string name)
    {
        using ITrainingBackend b = Make(name);
        using DeviceBuffer buffer = b.Allocate(1000);
        var x = new TensorView(buffer, 0, 2, 3, 2, 2);
        var y = new TensorView(buffer, 24, 2, 3, 2, 2);
        TensorView C(int at) => new(buffer, at, 1, 3, 1, 1);
        // A single value per channel (PyTorch: "Expected more than 1 value per channel when training").
        var single = new TensorView(buffer, 0, 1, 3, 1, 1);
        Assert.Throws<ArgumentException>(() => b.BatchNormTraining(single, C(100), C(103), null, false, new TensorView(buffer, 50, 1, 3, 1, 1), C(106), C(109), Epsilon));
        // The output on the input, a wrong channel count, overlapping statistics.
        Assert.Throws<ArgumentException>(() => b.BatchNormTraining(x, C(100), C(103), null, false, new TensorView(buffer, 12, 2, 3, 2, 2), C(106), C(109), Epsilon));
        Assert.Throws<ArgumentException>(() => b.BatchNormTraining(x, new TensorView(buffer, 100, 1, 2, 1, 1), C(103), null, false, y, C(106), C(109), Epsilon));
        Assert.Throws<ArgumentException>(() => b.BatchNormTraining(x, C(100), C(103), null, false, y, C(106), C(107), Epsilon));
        // dx partly over dy, dx over x.
        var dy = new TensorView(buffer, 200, 2, 3, 2, 2);
        Assert.Throws<ArgumentException>(() => b.BatchNormTrainingBackward(x, dy, C(100), C(106), C(109), Epsilon, new TensorView(buffer, 201, 2, 3, 2, 2), C(300), C(303), false));
        Assert.Throws<ArgumentException>(() => b.BatchNormTrainingBackward(x, dy, C(100), C(106), C(109), Epsilon, x, C(300), C(303), false));
    }
}
