using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using GhmGen.Backends;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm bench</c>: times the forward pass of a model on random input.</summary>
internal static class BenchCommand
{
    /// <summary>Largest accepted <c>--runs</c>.</summary>
    public const int MaxRuns = 100_000;

    public static Command Create()
    {
        Option<string> model = CommonOptions.Model();
        var size = new Option<string>("--size") { Description = "Input HxW, e.g. 800x1216", DefaultValueFactory = _ => "800x1216" };
        size.Validators.Add(result =>
        {
            string? text = result.GetValueOrDefault<string>();
            if (text is not null && !TryParseSize(text, out _)) result.AddError(SizeError(text));
        });
        Option<int> threads = CommonOptions.Threads();
        Option<int> runs = CommonOptions.Int("--runs", "Timed forward passes after one warm-up", defaultValue: 5, min: 1, max: MaxRuns);
        Option<string> device = CommonOptions.Device();
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("bench", "Time the forward pass of a model on random input (1 warm-up, then --runs timed passes)")
        {
            model, size, threads, runs, device, json,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, ParseSize(parse.GetValue(size)!), parse.GetValue(threads), parse.GetValue(runs),
            parse.GetValue(device)!, parse.GetValue(json), parse.InvocationConfiguration.Output));
        return command;
    }

    /// <summary>Parses "HxW" (sides between 1 and 8192); throws <see cref="UsageException"/> otherwise.</summary>
    public static (int Height, int Width) ParseSize(string text) =>
        TryParseSize(text, out var size) ? size : throw new UsageException(SizeError(text));

    private static bool TryParseSize(string text, out (int Height, int Width) size)
    {
        string[] parts = text.Split('x', 'X');
        size = default;
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int w) || h < 1 || w < 1 || h > 8192 || w > 8192)
            return false;
        size = (h, w);
        return true;
    }

    private static string SizeError(string text) => $"--size '{text}' is not HxW with sides between 1 and 8192, e.g. 800x1216";

    /// <summary>
    /// Prepares the weights on the backend, then lets the network's own copy go before activation
    /// memory is planned, so the two never count together in the peak. The collection is the
    /// decommitting kind: a plain one keeps the freed ~150 MB committed, and the activations then
    /// come on top of it.
    /// </summary>
    internal static IPreparedNetwork PrepareAndRelease(ModelInfo info, ref INetwork network, IBackend backend)
    {
        IPreparedNetwork prepared = info.Prepare(network, backend);
        network = null!;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return prepared;
    }

    private static int Run(string modelName, (int Height, int Width) size, int threads, int runs, string deviceName, bool json, TextWriter output)
    {
        ModelInfo info = ModelRegistry.Get(modelName);
        (int height, int width) = size;
        try
        {
            info.OutputShapes(height, width);
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new UsageException($"--size {height}x{width} is too small for {info.Name}: a feature map shrinks to nothing");
        }

        INetwork network = info.Create();
        SeededWeights.Fill(network);
        float[] input = new float[3 * height * width]; // at most 3 * 8192 * 8192 < 2^31
        var random = new Random(1);
        for (int i = 0; i < input.Length; i++) input[i] = (float)(random.NextDouble() * 4 - 2);

        using IBackend backend = Devices.Create(deviceName, threads);
        using IPreparedNetwork prepared = PrepareAndRelease(info, ref network, backend);
        using IForwardSession session = prepared.CreateSession(1, height, width);
        // Reading the smallest output back waits for a GPU to finish; on the CPU it costs microseconds.
        TensorView last = session.Outputs[^1].Tensor;
        float[] sink = new float[last.ElementCount];
        session.Forward(input); // warm-up
        backend.Download(last, sink);
        var times = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            long start = Stopwatch.GetTimestamp();
            session.Forward(input);
            backend.Download(last, sink);
            times[r] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        double median = runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
        double peakRssMb = Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);
        int effectiveThreads = threads == 0 ? Environment.ProcessorCount : threads;

        if (json)
        {
            using var stream = new MemoryStream();
            using (var writer = new Utf8JsonWriter(stream))
            {
                writer.WriteStartObject();
                writer.WriteString("model", info.Name);
                writer.WriteString("size", $"{height}x{width}");
                writer.WriteString("device", backend.Name);
                writer.WriteNumber("threads", effectiveThreads);
                writer.WriteNumber("median_ms", Math.Round(median, 2));
                writer.WriteNumber("peak_rss_mb", Math.Round(peakRssMb, 1));
                writer.WriteEndObject();
            }
            output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
        }
        else
        {
            double gmacs = info.MultiplyAccumulates(height, width) / 1e9;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{info.Name} {height}x{width} on {backend.Name}, {effectiveThreads} threads: median {median:F1} ms over {runs} runs " +
                $"(min {times[0]:F1}, max {times[^1]:F1}); {2 * gmacs / (median / 1000):F0} GFLOP/s of convolution; peak RSS {peakRssMb:F0} MB"));
        }
        return 0;
    }
}
