// A quick measurement without BenchmarkDotNet: each R-50 shape run `repeats` times after one
// warm-up, best time kept; prints GFLOP/s per shape, the FMA peak, and the sum over one forward
// pass (time x count) for the convolutions alone.
using System.Diagnostics;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench;

/// <summary>Prints GFLOP/s per convolution shape with a plain stopwatch.</summary>
public static class ConvTable
{
    // Max-pool after the stem, an FPN upsample-add, a bottleneck add+ReLU, the sigmoid of P3's
    // class map: time and GB/s of tensor traffic (read + write). The inputs hold random post-ReLU-like
    // values (half zeros): on all-zero tensors the max-pool's branches were always predicted, and it
    // timed 7 ms here against ~26 ms inside a forward pass.
    private static void PrintPointwise(IBackend backend, int repeats)
    {
        var random = new Random(2);
        TensorView New(int c, int h, int w)
        {
            var t = new TensorView(backend.Allocate((long)c * h * w), 0, 1, c, h, w);
            float[] values = new float[t.ElementCount];
            for (int i = 0; i < values.Length; i++) values[i] = MathF.Max(0f, (float)(random.NextDouble() - 0.5));
            backend.Upload(values, t);
            return t;
        }
        TensorView stem = New(64, 400, 608), pooled = New(64, 200, 304);
        TensorView upper = New(256, 50, 76), lower = New(256, 100, 152);
        TensorView a = New(256, 200, 304), b = New(256, 200, 304);
        TensorView logits = New(720, 100, 152);
        (string Name, Action Run, double Bytes)[] ops =
        [
            ("max-pool 3x3/2 64x400x608", () => backend.MaxPool2d(stem, pooled, 3, 2, 1), 4.0 * (stem.ElementCount + pooled.ElementCount)),
            ("upsample-add 256x50x76 -> 100x152", () => backend.UpsampleNearestAdd(upper, lower), 4.0 * (upper.ElementCount + 2 * lower.ElementCount)),
            ("add+relu 256x200x304", () => backend.Add(a, b, a, relu: true), 4.0 * 3 * a.ElementCount),
            ("sigmoid 720x100x152", () => backend.Sigmoid(logits, logits), 4.0 * 2 * logits.ElementCount),
        ];
        foreach (var (name, run, bytes) in ops)
        {
            run();
            double best = double.MaxValue;
            for (int i = 0; i < repeats; i++)
            {
                long start = Stopwatch.GetTimestamp();
                run();
                best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            Console.WriteLine($"{name,-44} {best * 1e3,9:F2} ms {bytes / best / 1e9,8:F1} GB/s");
        }
    }

    /// <summary>The processor as /proc/cpuinfo names it (model name, family, model, stepping) and the logical CPUs.</summary>
    internal static string Machine()
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.Length == 0) break; // the first processor only
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0) fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
            }
        }
        catch (IOException)
        {
        }
        string Field(string name) => fields.TryGetValue(name, out string? v) ? v : "?";
        return $"{Field("model name")} (family {Field("cpu family")}, model {Field("model")}, stepping {Field("stepping")}), {Environment.ProcessorCount} logical CPUs";
    }

    /// <summary>
    /// Measures every shape (or those whose name contains <paramref name="filter"/>); with <paramref name="size"/>
    /// (HxW), R-50's shapes at that input size (<see cref="ConvShape.RetinaNetR50At"/>) instead of 800x1216.
    /// </summary>
    public static void Print(int repeats, int threads, string? filter, string? size = null, bool cold = false)
    {
        // Cold: a 64 MB buffer read (not written: dirty lines would be written back during the call) before each timed call pushes the weights out of the caches, as
        // the rest of a forward pass does at small inputs (where layer3/4 stream ~80 MB of weights from memory).
        float[]? evict = cold ? new float[16 << 20] : null;
        if (evict is not null) Array.Fill(evict, 1f);
        float evictSum = 0;
        ConvShape[] shapes = ConvShape.RetinaNetR50.Concat(ConvShape.ResNeXtGrouped).ToArray();
        if (size is not null)
        {
            string[] parts = size.Split('x');
            shapes = ConvShape.RetinaNetR50At(int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture),
                int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
        }
        // Inference's backend: the Winograd weights made per call (their transform is in the times).
        using var backend = new CpuBackend(threads) { WinogradWeightsPerCall = true };
        Console.WriteLine($"machine: {Machine()}; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        Console.WriteLine($"kernel {backend.KernelKind}, {backend.ThreadCount} threads, Winograd weights per call{(cold ? ", weights evicted before each call" : "")}");
        // The machine is shared: besides wall-clock GFLOP/s, print GFLOP per second of CPU time that
        // this process actually got (all threads summed, so a per-core rate), which contention
        // distorts much less.
        foreach (int t in new[] { 1, backend.ThreadCount }.Distinct())
        {
            TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            double wall = FmaPeak.Measure(t, 200_000_000);
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;
            Console.WriteLine($"FMA peak, {t} thread(s): {wall:F1} GFLOP/s wall, {t * FmaPeak.Flops(200_000_000) / cpu / 1e9:F1} GFLOP per CPU-second");
        }
        double total = 0, totalFlops = 0, totalCpu = 0;
        foreach (ConvShape shape in shapes)
        {
            if (filter is not null && !shape.Name.Contains(filter, StringComparison.Ordinal)) continue;
            using var run = new ConvRun(backend, shape);
            run.Run();
            double best = double.MaxValue, bestCpu = double.MaxValue;
            for (int i = 0; i < repeats; i++)
            {
                if (evict is not null)
                    for (int e = 0; e < evict.Length; e += 16) evictSum += evict[e];
                TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
                long start = Stopwatch.GetTimestamp();
                run.Run();
                best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
                bestCpu = Math.Min(bestCpu, (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds);
            }
            Console.WriteLine($"{shape.Name,-40} x{shape.Count,-3} {best * 1e3,9:F2} ms {shape.Flops / best / 1e9,8:F1} GFLOP/s wall {shape.Flops / bestCpu / 1e9,8:F1} per CPU-s");
            if (!shape.Name.StartsWith('X'))
            {
                total += best * shape.Count;
                totalCpu += bestCpu * shape.Count;
                totalFlops += shape.Flops * shape.Count;
            }
        }
        if (evictSum < 0) Console.WriteLine(evictSum); // keeps the reads
        if (size is null) PrintPointwise(backend, repeats);
        Console.WriteLine($"R-50 RetinaNet convolutions{(size is null ? "" : $" at {size}")}, one forward: {total * 1e3:F0} ms wall ({totalFlops / total / 1e9:F1} GFLOP/s average), "
            + $"{totalCpu * 1e3:F0} ms CPU time = {totalCpu / backend.ThreadCount * 1e3:F0} ms on {backend.ThreadCount} uncontended cores");
    }
}

/// <summary>One prepared convolution with its input and output tensors.</summary>
public sealed class ConvRun : IDisposable
{
    private readonly IBackend backend;
    private readonly IPreparedConv conv;
    private readonly TensorView x, y;

    /// <summary>Prepares <paramref name="shape"/> with random weights and input.</summary>
    public ConvRun(IBackend backend, ConvShape shape)
    {
        this.backend = backend;
        var random = new Random(1);
        ConvSpec spec = shape.Spec;
        float[] w = new float[spec.WeightCount], b = new float[shape.Out], input = new float[shape.In * shape.H * shape.W];
        foreach (float[] a in new[] { w, b, input })
            for (int i = 0; i < a.Length; i++) a[i] = (float)(random.NextDouble() - 0.5);
        conv = backend.PrepareConv(spec, w, b);
        x = new TensorView(backend.Allocate(input.Length), 0, 1, shape.In, shape.H, shape.W);
        backend.Upload(input, x);
        int oh = spec.OutputSize(shape.H), ow = spec.OutputSize(shape.W);
        y = new TensorView(backend.Allocate((long)shape.Out * oh * ow), 0, 1, shape.Out, oh, ow);
    }

    /// <summary>One convolution with bias and ReLU.</summary>
    public void Run() => backend.Conv2d(conv, x, y, null, relu: true);

    /// <inheritdoc/>
    public void Dispose() => conv.Dispose();
}
