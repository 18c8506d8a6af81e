// The plain-loop reference for every op of IBackend: one obvious loop per op, no SIMD, no
// threads, float accumulation in the natural order. The CPU and GPU backends are tested against
// it (tests/GhmGen.Runtime.Tests/Backends), and it against hand-computed values.
namespace GhmGen.Backends;

/// <summary>
/// The slow, obviously-correct backend that the fast ones are compared against: plain loops in
/// float32 on the calling thread, <see cref="HostBuffer"/> memory. It keeps no state, so it is
/// thread-safe under the contract of <see cref="IBackend"/>, and <see cref="Dispose"/> releases nothing.
/// </summary>
public sealed partial class ReferenceBackend : ITrainingBackend
{
    /// <inheritdoc/>
    public string Name => "reference";

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long elements) => new HostBuffer(elements);

    /// <inheritdoc/>
    public DeviceBuffer? WrapHost(float[] values) => new HostBuffer(values);

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<float> source, TensorView destination)
    {
        CheckLength(source.Length, destination);
        source.CopyTo(Span(destination));
    }

    /// <inheritdoc/>
    public void Download(TensorView source, Span<float> destination)
    {
        CheckLength(destination.Length, source);
        Span(source).CopyTo(destination);
    }

    /// <inheritdoc/>
    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        if (weight.Length != spec.WeightCount)
            throw new ArgumentException($"weight has {weight.Length} elements; {spec} needs {spec.WeightCount}", nameof(weight));
        if (bias.Length != 0 && bias.Length != spec.OutChannels)
            throw new ArgumentException($"bias has {bias.Length} elements; expected 0 or {spec.OutChannels}", nameof(bias));
        return new PreparedConv(spec, weight.ToArray(), bias.ToArray());
    }

    /// <inheritdoc/>
    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu)
    {
        var p = (PreparedConv)conv;
        ConvSpec s = p.Spec;
        int oh = s.OutputSize(x.H), ow = s.OutputSize(x.W);
        if (x.C != s.InChannels || y.C != s.OutChannels || y.H != oh || y.W != ow || y.N != x.N)
            throw new ArgumentException($"conv {s}: input {x.ShapeText} does not give output {y.ShapeText}");
        ReadOnlySpan<float> xs = Span(x);
        Span<float> ys = Span(y);
        ReadOnlySpan<float> rs = residual is { } r ? Span(r) : default;
        int inPerGroup = s.InChannels / s.Groups, outPerGroup = s.OutChannels / s.Groups, k = s.Kernel;
        for (int n = 0; n < x.N; n++)
        for (int o = 0; o < s.OutChannels; o++)
        {
            int g = o / outPerGroup;
            for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
            {
                float sum = p.Bias.Length > 0 ? p.Bias[o] : 0f;
                for (int ci = 0; ci < inPerGroup; ci++)
                {
                    int c = g * inPerGroup + ci;
                    for (int ky = 0; ky < k; ky++)
                    {
                        int iy = oy * s.Stride - s.Padding + ky;
                        if ((uint)iy >= (uint)x.H) continue;
                        for (int kx = 0; kx < k; kx++)
                        {
                            int ix = ox * s.Stride - s.Padding + kx;
                            if ((uint)ix >= (uint)x.W) continue;
                            sum += p.Weight[((o * inPerGroup + ci) * k + ky) * k + kx] * xs[((n * x.C + c) * x.H + iy) * x.W + ix];
                        }
                    }
                }
                int at = ((n * y.C + o) * oh + oy) * ow + ox;
                if (residual is not null) sum += rs[at];
                ys[at] = relu ? MathF.Max(sum, 0f) : sum;
            }
        }
    }

    /// <inheritdoc/>
    public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding)
    {
        int oh = (x.H + 2 * padding - kernel) / stride + 1, ow = (x.W + 2 * padding - kernel) / stride + 1;
        if (y.N != x.N || y.C != x.C || y.H != oh || y.W != ow)
            throw new ArgumentException($"max-pool: input {x.ShapeText} does not give output {y.ShapeText}");
        ReadOnlySpan<float> xs = Span(x);
        Span<float> ys = Span(y);
        for (int nc = 0; nc < x.N * x.C; nc++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float best = float.NegativeInfinity;
            for (int ky = 0; ky < kernel; ky++)
            for (int kx = 0; kx < kernel; kx++)
            {
                int iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if ((uint)iy < (uint)x.H && (uint)ix < (uint)x.W)
                    best = MathF.Max(best, xs[(nc * x.H + iy) * x.W + ix]);
            }
            ys[(nc * oh + oy) * ow + ox] = best;
        }
    }

    /// <inheritdoc/>
    public void UpsampleNearestAdd(TensorView upper, TensorView lower)
    {
        if (upper.N != lower.N || upper.C != lower.C)
            throw new ArgumentException($"upsample-add: {upper.ShapeText} and {lower.ShapeText} differ in batch or channels");
        ReadOnlySpan<float> us = Span(upper);
        Span<float> ls = Span(lower);
        // PyTorch's 'nearest' with an output size: scale = (float)in / out, src = min(floor(dst * scale), in - 1).
        float scaleY = (float)upper.H / lower.H, scaleX = (float)upper.W / lower.W;
        for (int nc = 0; nc < lower.N * lower.C; nc++)
        for (int y = 0; y < lower.H; y++)
        {
            int sy = Math.Min((int)MathF.Floor(y * scaleY), upper.H - 1);
            for (int x = 0; x < lower.W; x++)
            {
                int sx = Math.Min((int)MathF.Floor(x * scaleX), upper.W - 1);
                ls[(nc * lower.H + y) * lower.W + x] += us[(nc * upper.H + sy) * upper.W + sx];
            }
        }
    }

    /// <inheritdoc/>
    public void Add(TensorView a, TensorView b, TensorView y, bool relu)
    {
        ReadOnlySpan<float> sa = Span(a), sb = Span(b);
        Span<float> sy = Span(y);
        if (sa.Length != sb.Length || sa.Length != sy.Length)
            throw new ArgumentException($"add: shapes {a.ShapeText}, {b.ShapeText}, {y.ShapeText} differ");
        for (int i = 0; i < sy.Length; i++)
        {
            float v = sa[i] + sb[i];
            sy[i] = relu ? MathF.Max(v, 0f) : v;
        }
    }

    /// <inheritdoc/>
    public void Copy(TensorView source, TensorView destination)
    {
        if (source.ElementCount != destination.ElementCount)
            throw new ArgumentException($"copy: shapes {source.ShapeText} and {destination.ShapeText} differ");
        Span(source).CopyTo(Span(destination));
    }

    /// <inheritdoc/>
    public void Relu(TensorView x, TensorView y)
    {
        ReadOnlySpan<float> sx = Span(x);
        Span<float> sy = Span(y);
        for (int i = 0; i < sy.Length; i++) sy[i] = MathF.Max(sx[i], 0f);
    }

    /// <inheritdoc/>
    public void Sigmoid(TensorView x, TensorView y)
    {
        ReadOnlySpan<float> sx = Span(x);
        Span<float> sy = Span(y);
        for (int i = 0; i < sy.Length; i++) sy[i] = 1f / (1f + MathF.Exp(-sx[i]));
    }

    /// <inheritdoc/>
    public void Dispose() { }

    private static Span<float> Span(TensorView t) => HostBuffer.SpanOf(t, "this backend");

    private static void CheckLength(int length, TensorView t) => HostBuffer.CheckLength(length, t);

    private sealed class PreparedConv(ConvSpec spec, float[] weight, float[] bias) : IPreparedConv
    {
        public ConvSpec Spec { get; } = spec;
        public float[] Weight { get; } = weight;
        public float[] Bias { get; } = bias;
        public void Dispose() { }
    }
}

/// <summary>A managed float array as backend memory (reference and CPU backends).</summary>
public sealed class HostBuffer : DeviceBuffer
{
    /// <summary>A zeroed buffer of <paramref name="elements"/> floats.</summary>
    public HostBuffer(long elements) => Array = new float[checked((int)elements)];

    /// <summary>A buffer over <paramref name="values"/> itself (no copy): what a backend writes there is in the array.</summary>
    public HostBuffer(float[] values) => Array = values ?? throw new ArgumentNullException(nameof(values));

    /// <summary>The values.</summary>
    public float[] Array { get; }

    /// <inheritdoc/>
    public override long Length => Array.Length;

    /// <summary>The values of <paramref name="t"/>, which must live in a <see cref="HostBuffer"/> and fit inside it: a backend's tensor read or written in place.</summary>
    public static Memory<float> MemoryOf(TensorView t)
    {
        SpanOf(t, "host memory");
        return ((HostBuffer)t.Buffer).Array.AsMemory((int)t.Offset, (int)t.ElementCount);
    }

    /// <summary>The values of <paramref name="t"/>, which must live in a HostBuffer of <paramref name="owner"/>'s and fit inside it.</summary>
    internal static Span<float> SpanOf(TensorView t, string owner)
    {
        if (t.Buffer is not HostBuffer h)
            throw new ArgumentException($"tensor {t.ShapeText} does not live in host memory of {owner}");
        if (t.N < 0 || t.C < 0 || t.H < 0 || t.W < 0)
            throw new ArgumentException($"tensor {t.ShapeText} has a negative dimension");
        if (t.Offset < 0 || t.Offset + t.ElementCount > h.Length)
            throw new ArgumentException($"tensor {t.ShapeText} at offset {t.Offset} overruns its buffer of {h.Length} elements");
        return h.Array.AsSpan((int)t.Offset, checked((int)t.ElementCount));
    }

    /// <summary>Throws unless <paramref name="length"/> values fill <paramref name="t"/> exactly.</summary>
    internal static void CheckLength(int length, TensorView t)
    {
        if (length != t.ElementCount)
            throw new ArgumentException($"{length} values do not fit tensor {t.ShapeText} ({t.ElementCount} elements)");
    }
}
