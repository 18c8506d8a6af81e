using System.Diagnostics;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench.Training;

/// <summary>
/// An <see cref="ITrainingBackend"/> that forwards every op to a <see cref="CpuBackend"/> and, while
/// <see cref="Recording"/>, adds each op's Stopwatch time and multiply-add count to a row keyed by op and
/// shape. Used by <c>train-profile</c> (<see cref="TrainProfile"/>) to split one generated training step
/// into its convolutions (forward, input gradient, weight gradient) and pointwise ops, and to count the
/// multiply-adds the step needs (the compute lower bound). The generated session sees only the interface,
/// so the step it runs is the one <see cref="GhmGenTrainingStep"/> times, op for op.
/// </summary>
internal sealed class ProfilingBackend(CpuBackend inner) : ITrainingBackend
{
    private readonly Dictionary<string, Row> _rows = new(StringComparer.Ordinal);
    private readonly List<IPreparedConv> _prepared = [];

    /// <summary>Whether calls are being added to the rows.</summary>
    public bool Recording { get; set; }

    /// <summary>The backend the ops run on.</summary>
    public CpuBackend Inner => inner;

    /// <summary>The rows recorded so far.</summary>
    public IReadOnlyCollection<Row> Rows => _rows.Values;

    /// <summary>One op kind at one shape: calls, seconds, multiply-adds (convolutions), whether CpuBackend runs it with Winograd.</summary>
    public sealed class Row(string op, string shape, bool winograd)
    {
        public string Op { get; } = op;
        public string Shape { get; } = shape;
        public bool Winograd { get; } = winograd;
        public int Calls { get; set; }
        public double Seconds { get; set; }
        public double CpuSeconds { get; set; }
        public double Macs { get; set; }
    }

    /// <summary>Forgets the rows.</summary>
    public void Clear() => _rows.Clear();

    public string Name => inner.Name;

    public DeviceBuffer Allocate(long elements) => inner.Allocate(elements);

    public DeviceBuffer? WrapHost(float[] values) => inner.WrapHost(values);

    public void Upload(ReadOnlySpan<float> source, TensorView destination)
    {
        var t = Start();
        inner.Upload(source, destination);
        Add("upload", destination.ShapeText, false, t, 0);
    }

    public void Download(TensorView source, Span<float> destination)
    {
        var t = Start();
        inner.Download(source, destination);
        Add("download", source.ShapeText, false, t, 0);
    }

    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        IPreparedConv conv = inner.PrepareConv(spec, weight, bias);
        _prepared.Add(conv);
        return conv;
    }

    public IPreparedConv PrepareConv(ConvSpec spec, IConvWeightSource source, bool hasBias)
    {
        IPreparedConv conv = inner.PrepareConv(spec, source, hasBias);
        _prepared.Add(conv);
        return conv;
    }

    public bool MarkWeightsChanged(IPreparedConv conv) => inner.MarkWeightsChanged(conv);

    /// <summary>Every convolution prepared through this backend.</summary>
    public IReadOnlyList<IPreparedConv> PreparedConvs => _prepared;

    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu)
    {
        var t = Start();
        inner.Conv2d(conv, x, y, residual, relu);
        Add("conv forward", ConvText(conv.Spec, x, y), UsesWinograd(conv.Spec, x), t, Macs(conv.Spec, y));
    }

    public void Conv2dShared(IPreparedConv conv, ReadOnlySpan<TensorView> x, ReadOnlySpan<TensorView> y, bool relu)
    {
        var t = Start();
        inner.Conv2dShared(conv, x, y, relu);
        double macs = 0;
        foreach (TensorView output in y) macs += Macs(conv.Spec, output);
        string shapes = x.Length == 0 ? "" : $"{ConvText(conv.Spec, x[0], y[0])} +{x.Length - 1} more";
        Add("conv forward shared", shapes, x.Length > 0 && UsesWinograd(conv.Spec, x[0]), t, macs);
    }

    public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate)
    {
        var t = Start();
        inner.Conv2dBackwardData(conv, dy, dx, accumulate);
        ConvSpec s = conv.Spec;
        // The stride-1 input gradient is a convolution of dy (same size as dx here) with the transposed weights.
        bool winograd = PackedBackwardIsConvolution(s) && UsesWinograd(s with { InChannels = s.OutChannels, OutChannels = s.InChannels }, dy);
        Add("conv input gradient", ConvText(s, dx, dy), winograd, t, Macs(s, dy));
    }

    public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate)
    {
        var t = Start();
        inner.Conv2dBackwardWeights(spec, x, dy, dWeight, dBias, accumulate);
        Add("conv weight gradient", ConvText(spec, x, dy), UsesWinogradWeights(spec, x), t, Macs(spec, dy));
    }

    public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        var t = Start();
        inner.UpdateConv(conv, weight, bias);
        Add("UpdateConv", ConvText(conv.Spec), false, t, 0);
    }

    public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding) => Time("max-pool", x, () => inner.MaxPool2d(x, y, kernel, stride, padding));

    public void UpsampleNearestAdd(TensorView upper, TensorView lower) => Time("upsample-add", lower, () => inner.UpsampleNearestAdd(upper, lower));

    public void Add(TensorView a, TensorView b, TensorView y, bool relu) => Time(relu ? "add+relu" : "add", y, () => inner.Add(a, b, y, relu));

    public void Copy(TensorView source, TensorView destination) => Time("copy", source, () => inner.Copy(source, destination));

    public void Relu(TensorView x, TensorView y) => Time("relu", x, () => inner.Relu(x, y));

    public void Sigmoid(TensorView x, TensorView y) => Time("sigmoid", x, () => inner.Sigmoid(x, y));

    public void ReluBackward(TensorView y, TensorView dy, TensorView dx) => Time("relu backward", y, () => inner.ReluBackward(y, dy, dx));

    public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate) =>
        Time("max-pool backward", x, () => inner.MaxPool2dBackward(x, dy, dx, kernel, stride, padding, accumulate));

    public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate) =>
        Time("upsample backward", dLower, () => inner.UpsampleNearestBackward(dLower, dUpper, accumulate));

    public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon) =>
        Time("batch norm (batch statistics)", x, () => inner.BatchNormTraining(x, weight, bias, residual, relu, y, mean, variance, epsilon));

    public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate) =>
        Time("batch norm backward", x, () => inner.BatchNormTrainingBackward(x, dy, weight, mean, variance, epsilon, dx, dWeight, dBias, accumulate));

    public void Zero(TensorView t) => Time("zero", t, () => inner.Zero(t));

    public void Dispose() => inner.Dispose();

    /// <summary>Multiply-adds of a convolution (and of each of its two gradients) with output <paramref name="y"/>.</summary>
    public static double Macs(ConvSpec s, TensorView y) => (double)y.N * s.OutChannels * y.H * y.W * (s.InChannels / s.Groups) * s.Kernel * s.Kernel;

    // CpuBackend's rule (RunConv): a dense 3x3 stride-1 convolution uses Winograd F(4x4, 3x3) when the batch
    // has at least one block of NR = 48 tiles per worker beyond the first (NR * (workers - 1) + 1) and each
    // image at least NR.
    private bool UsesWinograd(ConvSpec s, TensorView x)
    {
        if (s is not { Kernel: 3, Stride: 1, Groups: 1 } || s.Padding > 1) return false;
        long imageTiles = (long)((x.H + 3) / 4) * ((x.W + 3) / 4);
        const int nr = 48;
        return x.N * imageTiles >= (long)nr * (inner.ThreadCount - 1) + 1 && imageTiles >= nr;
    }

    // CpuBackend's rule for weight gradients (WinogradWeightGradient): dense 3x3 stride 1 pad 1 over at least 64 4x4 tiles
    // of the batch, on the AVX-512 kernel.
    private static bool UsesWinogradWeights(ConvSpec s, TensorView x) =>
        s is { Kernel: 3, Stride: 1, Padding: 1, Groups: 1 } && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
        && x.N * (long)((x.H + 3) / 4) * ((x.W + 3) / 4) >= 64;

    private static bool PackedBackwardIsConvolution(ConvSpec s) => s.Stride == 1 && s.Padding <= s.Kernel - 1;

    private static string ConvText(ConvSpec s) =>
        $"{s.Kernel}x{s.Kernel}{(s.Stride > 1 ? $"/{s.Stride}" : "")}{(s.Groups > 1 ? $" g{s.Groups}" : "")} {s.InChannels}-{s.OutChannels}";

    private static string ConvText(ConvSpec s, TensorView x, TensorView y) =>
        $"{s.Kernel}x{s.Kernel}{(s.Stride > 1 ? $"/{s.Stride}" : "")}{(s.Groups > 1 ? $" g{s.Groups}" : "")} {s.InChannels}-{s.OutChannels} {x.H}x{x.W}->{y.H}x{y.W} n{x.N}";

    // Process CPU time (all threads) as well as wall time: on a shared machine the CPU time an op needed
    // is much less disturbed by other processes than its wall time.
    private (long Wall, TimeSpan Cpu) Start() => Recording ? (Stopwatch.GetTimestamp(), Environment.CpuUsage.TotalTime) : default;

    private void Time(string op, TensorView t, Action run)
    {
        var start = Start();
        run();
        Add(op, t.ShapeText, false, start, 0);
    }

    private void Add(string op, string shape, bool winograd, (long Wall, TimeSpan Cpu) start, double macs)
    {
        if (!Recording) return;
        double seconds = Stopwatch.GetElapsedTime(start.Wall).TotalSeconds;
        double cpu = (Environment.CpuUsage.TotalTime - start.Cpu).TotalSeconds;
        string key = op + "|" + shape;
        if (!_rows.TryGetValue(key, out Row? row)) _rows[key] = row = new Row(op, shape, winograd);
        row.Calls++;
        row.Seconds += seconds;
        row.CpuSeconds += cpu;
        row.Macs += macs;
    }
}
