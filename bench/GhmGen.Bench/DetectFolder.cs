using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Bench;

/// <summary>
/// <c>detect-folder DIR --checkpoint FILE [--model M] [--threads 2] [--rounds 1] [--scale LONGxSHORT] [--segment N]</c>:
/// whole-folder detection against the forward passes alone, in one process on one backend
/// (what <c>ghm detect</c> does, without writing results). Per round, in this order:
/// <list type="bullet">
/// <item><c>forward</c>: the forward passes alone, on tensors preprocessed beforehand, one session per padded size made beforehand;</item>
/// <item><c>sequential</c>: decode, then <see cref="Detector.Detect"/>, image after image (ghm detect before the decode-ahead thread);</item>
/// <item><c>overlapped</c>: a thread decodes up to two images ahead while this one runs Detect (ghm detect now).</item>
/// </list>
/// Prints images/s of each and their ratio to <c>forward</c>, wall and process CPU time, the load average.
/// With <c>--segment N</c> it compares only <c>forward</c> and <c>overlapped</c>, on slices of N images in
/// the order forward, overlapped, overlapped, forward (ABBA): the machine's speed drifts by up to 20% over the
/// minutes a whole-folder mode takes, which a whole-folder comparison cannot tell from the effect; within a
/// slice of ~10 s the drift is small and, being about linear, cancels in ABBA. The ratio is the sum of the
/// forward times over the sum of the overlapped ones (per slice and over all); each overlapped slice also
/// pays once for its first decode, which a whole folder pays once.
/// </summary>
internal static class DetectFolder
{
    public static int Run(string[] args)
    {
        string? folder = null, checkpoint = null, model = "retinanet-ghm-r50-fpn";
        int threads = 2, rounds = 1, segment = 0;
        PreprocessOptions scale = PreprocessOptions.Default;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--checkpoint": checkpoint = args[++i]; break;
                case "--model": model = args[++i]; break;
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--segment": segment = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--scale":
                    string[] parts = args[++i].Split('x');
                    scale = new PreprocessOptions(int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture));
                    break;
                default: folder = args[i]; break;
            }
        }
        if (folder is null || checkpoint is null)
        {
            Console.Error.WriteLine("usage: detect-folder DIR --checkpoint FILE [--model M] [--threads N] [--rounds R] [--scale LONGxSHORT] [--segment N]");
            return 2;
        }
        string[] paths = [.. Directory.EnumerateFiles(folder).Where(p => p.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) || p.EndsWith(".png", StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal)];
        using var backend = new CpuBackend(threads) { WinogradWeightsPerCall = true };
        using Detector detector = Detector.Load(model, checkpoint, backend, scale);

        // The forward passes alone: the same weights prepared once more, every tensor made beforehand.
        ModelInfo info = ModelRegistry.Get(model);
        INetwork network = info.Create();
        using (TorchCheckpoint file = TorchCheckpoint.Read(checkpoint)) StateDictLoader.Load(network, file, strict: true);
        using IPreparedNetwork prepared = info.Prepare(network, backend);
        network = null!;
        var tensors = paths.Select(p => Preprocessor.Run(ImageDecoder.Decode(p), scale)).ToArray();
        var sessions = new Dictionary<(int, int), IForwardSession>();
        foreach (PreprocessedImage t in tensors)
            if (!sessions.ContainsKey((t.PaddedHeight, t.PaddedWidth))) sessions[(t.PaddedHeight, t.PaddedWidth)] = prepared.CreateSession(1, t.PaddedHeight, t.PaddedWidth);
        Console.WriteLine(FormattableString.Invariant(
            $"{model}, {paths.Length} images in {folder}, {sessions.Count} padded sizes ({string.Join(", ", sessions.Keys.Select(k => $"{k.Item1}x{k.Item2}"))}), {threads} threads, scale {scale.LongEdge}x{scale.ShortEdge}"));
        detector.Detect(ImageDecoder.Decode(paths[0])); // warm-up

        try
        {
            if (segment > 0) Segments(detector, paths, tensors, sessions, rounds, segment);
            else Rounds(detector, paths, tensors, sessions, rounds);
        }
        finally
        {
            foreach (IForwardSession s in sessions.Values) s.Dispose();
        }
        return 0;
    }

    // --segment N: forward passes against overlapped detection on slices of N images, ABBA.
    private static void Segments(Detector detector, string[] paths, PreprocessedImage[] tensors, Dictionary<(int, int), IForwardSession> sessions, int rounds, int segment)
    {
        double forwardSum = 0, overlappedSum = 0;
        var ratios = new List<double>();
        for (int r = 0; r < rounds; r++)
            for (int first = 0; first < paths.Length; first += segment)
            {
                string load = File.ReadAllText("/proc/loadavg").Split(' ')[0];
                int count = Math.Min(segment, paths.Length - first);
                PreprocessedImage[] sliceTensors = tensors[first..(first + count)];
                string[] slicePaths = paths[first..(first + count)];
                double f = Time(() => Forwards(sessions, sliceTensors)).Wall, o = Time(() => Overlapped(detector, slicePaths)).Wall;
                o += Time(() => Overlapped(detector, slicePaths)).Wall;
                f += Time(() => Forwards(sessions, sliceTensors)).Wall;
                forwardSum += f;
                overlappedSum += o;
                ratios.Add(f / o);
                Console.WriteLine(FormattableString.Invariant(
                    $"round {r + 1} images {first + 1}-{first + count} (load {load}): forward {f / 2:F2} s, overlapped {o / 2:F2} s, ratio {f / o:F3}"));
            }
        Console.WriteLine(FormattableString.Invariant(
            $"overlapped images/s = {forwardSum / overlappedSum:F3} x the forward passes' over all slices (forward {forwardSum / 2:F1} s, overlapped {overlappedSum / 2:F1} s per pass); slice ratios median {Median(ratios):F3}, min {ratios.Min():F3}, max {ratios.Max():F3}"));
    }

    // The three modes per round over the whole folder.
    private static void Rounds(Detector detector, string[] paths, PreprocessedImage[] tensors, Dictionary<(int, int), IForwardSession> sessions, int rounds)
    {
        var results = new Dictionary<string, List<(double Wall, double Cpu)>> { ["forward"] = [], ["sequential"] = [], ["overlapped"] = [] };
        for (int r = 0; r < rounds; r++)
        {
            string load = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            results["forward"].Add(Time(() => Forwards(sessions, tensors)));
            results["sequential"].Add(Time(() =>
            {
                foreach (string p in paths) detector.Detect(ImageDecoder.Decode(p));
            }));
            results["overlapped"].Add(Time(() => Overlapped(detector, paths)));
            Console.WriteLine(FormattableString.Invariant(
                $"round {r + 1} (load {load} at its start): {string.Join(", ", results.Select(kv => $"{kv.Key} {kv.Value[^1].Wall:F1} s"))}"));
        }
        double forward = Median(results["forward"].Select(x => x.Wall));
        foreach ((string name, List<(double Wall, double Cpu)> times) in results)
        {
            double wall = Median(times.Select(x => x.Wall)), cpu = Median(times.Select(x => x.Cpu));
            Console.WriteLine(FormattableString.Invariant(
                $"{name,-11} {wall,8:F2} s wall {cpu,8:F2} s CPU {paths.Length / wall,7:F3} images/s  {forward / wall,6:F3} x the forward passes' images/s"));
        }
    }

    // The forward passes alone, each image on the session of its padded size.
    private static void Forwards(Dictionary<(int, int), IForwardSession> sessions, PreprocessedImage[] tensors)
    {
        foreach (PreprocessedImage t in tensors) sessions[(t.PaddedHeight, t.PaddedWidth)].Forward(t.Tensor);
    }

    private static void Overlapped(Detector detector, string[] paths)
    {
        using var queue = new BlockingCollection<RgbImage>(boundedCapacity: 2);
        var decoder = new Thread(() =>
        {
            foreach (string p in paths) queue.Add(ImageDecoder.Decode(p));
            queue.CompleteAdding();
        }) { IsBackground = true };
        decoder.Start();
        foreach (RgbImage image in queue.GetConsumingEnumerable()) detector.Detect(image);
        decoder.Join();
    }

    private static (double Wall, double Cpu) Time(Action run)
    {
        var process = Process.GetCurrentProcess();
        process.Refresh();
        TimeSpan cpu = process.TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();
        run();
        double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
        process.Refresh();
        return (wall, (process.TotalProcessorTime - cpu).TotalSeconds);
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] v = [.. values.Order()];
        return v.Length % 2 == 1 ? v[v.Length / 2] : 0.5 * (v[v.Length / 2 - 1] + v[v.Length / 2]);
    }
}
