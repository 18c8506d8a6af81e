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
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model name (see ghm models)", Required = true };
        var size = new Option<string>("--size") { Description = "Input HxW, e.g. 800x1216", DefaultValueFactory = _ => "800x1216" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };
        var runs = new Option<int>("--runs") { Description = "Timed forward passes after one warm-up", DefaultValueFactory = _ => 5 };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        device.AcceptOnlyFromAmong(Devices.Names);
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("bench", "Time the forward pass of a model on random input (1 warm-up, then --runs timed passes)")
        {
            model, size, threads, runs, device, json,
        };
        command.SetAction(parse =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            try
            {
                return Run(parse.GetValue(model)!, parse.GetValue(size)!, parse.GetValue(threads), parse.GetValue(runs),
                    parse.GetValue(device)!, parse.GetValue(json), output);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                error.WriteLine($"ghm bench: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    /// <summary>Parses "HxW" (positive integers).</summary>
    public static (int Height, int Width) ParseSize(string text)
    {
        string[] parts = text.Split('x', 'X');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int w) || h < 1 || w < 1 || h > 8192 || w > 8192)
            throw new ArgumentException($"--size '{text}' is not HxW with sides between 1 and 8192, e.g. 800x1216");
        return (h, w);
    }

    /// <summary>
    /// Prepares the weights on the backend, then lets the network's own copy go before activation
    /// memory is planned, so the two never count together in the peak.
    /// </summary>
    internal static IPreparedNetwork PrepareAndRelease(ModelInfo info, ref INetwork network, IBackend backend)
    {
        IPreparedNetwork prepared = info.Prepare(network, backend);
        network = null!;
        GC.Collect();
        return prepared;
    }

    private static int Run(string modelName, string sizeText, int threads, int runs, string deviceName, bool json, TextWriter output)
    {
        ModelInfo info = ModelRegistry.Get(modelName);
        (int height, int width) = ParseSize(sizeText);
        if (runs < 1) throw new ArgumentException($"--runs {runs} must be at least 1");
        if (threads < 0) throw new ArgumentException($"--threads {threads} must be 0 (all cores) or more");
        info.OutputShapes(height, width); // validates the size for this model

        INetwork network = info.Create();
        SeededWeights.Fill(network);
        float[] input = new float[3L * height * width > int.MaxValue ? throw new ArgumentException("--size is too large") : 3 * height * width];
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
