using GhmGen.Layers;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// TrainNet's forward pass written out by hand in float64 over a copy of its parameters (batch
/// norm applied as such, not folded), for finite differences: L = sum over outputs of seed * output.
/// </summary>
internal sealed class Float64Net
{
    private readonly Dictionary<string, double[]> _p = new(StringComparer.Ordinal);

    public Float64Net(TrainNet net)
    {
        foreach (StateTensor t in net.State)
            if (t.ElementType == StateElementType.Float32)
                _p[t.Key] = t.Data.Select(v => (double)v).ToArray();
    }

    /// <summary>A parameter's values (perturb them in place).</summary>
    public double[] this[string key] => _p[key];

    /// <summary>L = sum over the outputs (declaration order) of seed[o] * output[o].</summary>
    public double Loss(T image, IReadOnlyList<double[]> seeds)
    {
        T[] outputs = Forward(image);
        double loss = 0;
        for (int o = 0; o < outputs.Length; o++)
            for (int i = 0; i < outputs[o].Data.Length; i++) loss += seeds[o][i] * outputs[o].Data[i];
        return loss;
    }

    /// <summary>The outputs cls_a, box_a, cls_b, box_b, extra.</summary>
    public T[] Forward(T image)
    {
        T stem = Conv(image, "stem.conv", 3, 1, 1).Norm(this, "stem.bn").Relu();
        T c1 = Conv(stem, "c1", 3, 1, 1).Norm(this, "c1_bn").Relu();
        T pool = c1.MaxPool(3, 2, 1);
        T b0 = Conv(pool, "stage.0.conv", 3, 2, 1).Norm(this, "stage.0.bn")
            .Add(Conv(pool, "stage.0.proj", 1, 2, 0).Norm(this, "stage.0.proj_bn")).Relu();
        T b1 = Conv(b0, "stage.1.conv", 3, 1, 1).Norm(this, "stage.1.bn").Add(b0).Relu();
        T merged = pool.Add(b1.UpsampleTo(pool.H, pool.W));
        T mix = b1.MaxPool(3, 1, 1).Relu().Add(b1).Relu();
        T extra = Conv(mix, "extra", 3, 2, 1);
        (T cls, T box) Head(T x)
        {
            T h = Conv(x, "head.conv", 3, 1, 1).Relu();
            return (Conv(h, "head.cls", 3, 1, 1), Conv(h, "head.box", 1, 1, 0));
        }
        (T clsA, T boxA) = Head(merged);
        (T clsB, T boxB) = Head(mix);
        return [clsA, boxA, clsB, boxB, extra];
    }

    /// <summary>A dense convolution with a k x k kernel (every convolution of TrainNet has groups 1).</summary>
    private T Conv(T x, string key, int k, int stride, int padding)
    {
        double[] w = _p[key + ".weight"];
        double[]? bias = _p.TryGetValue(key + ".bias", out double[]? b) ? b : null;
        int outC = w.Length / (x.C * k * k);
        int oh = (x.H + 2 * padding - k) / stride + 1, ow = (x.W + 2 * padding - k) / stride + 1;
        var y = new T(x.N, outC, oh, ow);
        for (int n = 0; n < x.N; n++)
        for (int o = 0; o < outC; o++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            double sum = bias?[o] ?? 0;
            for (int c = 0; c < x.C; c++)
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                int iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if (iy >= 0 && iy < x.H && ix >= 0 && ix < x.W)
                    sum += w[((o * x.C + c) * k + ky) * k + kx] * x[n, c, iy, ix];
            }
            y[n, o, oy, ox] = sum;
        }
        return y;
    }

    /// <summary>An NCHW float64 tensor.</summary>
    internal sealed class T(int n, int c, int h, int w)
    {
        public int N { get; } = n;
        public int C { get; } = c;
        public int H { get; } = h;
        public int W { get; } = w;
        public double[] Data { get; } = new double[n * c * h * w];

        public double this[int n, int c, int y, int x]
        {
            get => Data[((n * C + c) * H + y) * W + x];
            set => Data[((n * C + c) * H + y) * W + x] = value;
        }

        public T Norm(Float64Net net, string key)
        {
            double[] gamma = net[key + ".weight"], beta = net[key + ".bias"], mean = net[key + ".running_mean"], variance = net[key + ".running_var"];
            return Map((c, v) => (v - mean[c]) / Math.Sqrt(variance[c] + BatchNorm2d.Epsilon) * gamma[c] + beta[c]);
        }

        public T Relu() => Map((_, v) => Math.Max(v, 0));

        public T Add(T other)
        {
            var y = new T(N, C, H, W);
            for (int i = 0; i < Data.Length; i++) y.Data[i] = Data[i] + other.Data[i];
            return y;
        }

        public T MaxPool(int k, int s, int p)
        {
            int oh = (H + 2 * p - k) / s + 1, ow = (W + 2 * p - k) / s + 1;
            var y = new T(N, C, oh, ow);
            for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
            {
                double best = double.NegativeInfinity;
                for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                {
                    int iy = oy * s - p + ky, ix = ox * s - p + kx;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) best = Math.Max(best, this[n, c, iy, ix]);
                }
                y[n, c, oy, ox] = best;
            }
            return y;
        }

        /// <summary>PyTorch nearest with the backends' float32 scale: source = min(floor(dst * (float)in / out), in - 1).</summary>
        public T UpsampleTo(int oh, int ow)
        {
            var y = new T(N, C, oh, ow);
            float sy = (float)H / oh, sx = (float)W / ow;
            for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                y[n, c, oy, ox] = this[n, c, Math.Min((int)MathF.Floor(oy * sy), H - 1), Math.Min((int)MathF.Floor(ox * sx), W - 1)];
            return y;
        }

        private T Map(Func<int, double, double> f)
        {
            var y = new T(N, C, H, W);
            for (int i = 0; i < Data.Length; i++) y.Data[i] = f(i / (H * W) % C, Data[i]);
            return y;
        }
    }
}
