using System.Diagnostics;
using System.Globalization;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Bench.Training;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Bench;

/// <summary>
/// <c>forward-profile [--model M] [--size HxW] [--batch B] [--threads N] [--runs R] [--top K] [--gap-ms G]</c>: the generated
/// inference forward pass (seeded weights and input, <c>new CpuBackend(threads) { WinogradWeightsPerCall = true }</c>
/// as side_by_side.py's ghmgen worker and <c>ghm bench</c>) on a <see cref="ProfilingBackend"/>: two warm-up
/// forwards unrecorded, then R recorded ones; prints the forward's median time (unrecorded runs, so without the
/// Stopwatch overhead), then per op kind and per op x shape (the K slowest) the wall and CPU time per forward.
/// Used to find where the time goes at small inputs (64x96, 320x320) and batches (issue 16 item 4). With
/// <c>--gap-ms</c> every forward follows an idle pause of that length (as side_by_side.py's <c>--gap-ms</c>),
/// which the times do not include.
/// </summary>
internal static class ForwardProfile
{
    public static int Run(string[] args)
    {
        int runs = 10, top = 30, gapMs = 0;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--runs" && i + 1 < args.Length) runs = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else if (args[i] == "--top" && i + 1 < args.Length) top = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else if (args[i] == "--gap-ms" && i + 1 < args.Length) gapMs = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else rest.Add(args[i]);
        }
        if (runs < 1) throw new ArgumentException("forward-profile: --runs must be at least 1");
        string[] withBatch = rest.Contains("--batch") ? [.. rest] : ["--batch", "1", .. rest];
        (string model, int height, int width, int batch, int threads) = TrainWorker.ParseTableArgs("forward-profile", withBatch);

        ModelInfo info = ModelRegistry.Get(model);
        info.OutputShapes(height, width);
        var profiler = new ProfilingBackend(new CpuBackend(threads) { WinogradWeightsPerCall = true });
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        using IPreparedNetwork prepared = info.Prepare(network, profiler);
        network = null!;
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        using IForwardSession session = prepared.CreateSession(batch, height, width);
        var input = new float[(long)batch * 3 * height * width];
        SeededWeights.FillInput(input);
        var sink = new float[session.Outputs[^1].Tensor.ElementCount];
        void Forward()
        {
            session.Forward(input);
            profiler.Download(session.Outputs[^1].Tensor, sink);
        }

        Forward();
        Forward();
        var plain = new List<double>();
        for (int r = 0; r < runs; r++)
        {
            if (gapMs > 0) Thread.Sleep(gapMs);
            long t = Stopwatch.GetTimestamp();
            Forward();
            plain.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
        profiler.Recording = true;
        TimeSpan cpu0 = Environment.CpuUsage.TotalTime;
        long wall0 = Stopwatch.GetTimestamp();
        double gapSeconds = 0;
        for (int r = 0; r < runs; r++)
        {
            if (gapMs > 0)
            {
                TimeSpan c = Environment.CpuUsage.TotalTime;
                long g = Stopwatch.GetTimestamp();
                Thread.Sleep(gapMs);
                gapSeconds += Stopwatch.GetElapsedTime(g).TotalSeconds;
                cpu0 += Environment.CpuUsage.TotalTime - c;
            }
            Forward();
        }
        wall0 += (long)(gapSeconds * Stopwatch.Frequency);
        double wallMs = Stopwatch.GetElapsedTime(wall0).TotalMilliseconds / runs;
        double cpuMs = (Environment.CpuUsage.TotalTime - cpu0).TotalMilliseconds / runs;
        profiler.Recording = false;
        plain.Sort();

        Console.WriteLine(FormattableString.Invariant(
            $"{model} forward, batch {batch}, {height}x{width}, {threads} threads, {runs} runs after 2 warm-ups; load average {LoadAverage()}"));
        Console.WriteLine(FormattableString.Invariant(
            $"unrecorded forward: median {plain[plain.Count / 2]:F2} ms, min {plain[0]:F2} ms; recorded: {wallMs:F2} ms wall, {cpuMs:F2} ms CPU per forward"));
        var rows = profiler.Rows.ToList();
        Console.WriteLine($"{"op",-24}{"calls",7}{"wall ms",10}{"CPU ms",10}{"GMAC",9}{"GFLOP/s",9}");
        foreach (var group in rows.GroupBy(r => r.Op).OrderByDescending(g => g.Sum(r => r.Seconds)))
        {
            double ms = group.Sum(r => r.Seconds) / runs * 1e3, cms = group.Sum(r => r.CpuSeconds) / runs * 1e3, macs = group.Sum(r => r.Macs) / runs;
            Console.WriteLine(FormattableString.Invariant(
                $"{group.Key,-24}{group.Sum(r => r.Calls) / runs,7}{ms,10:F2}{cms,10:F2}{macs / 1e9,9:F3}{(macs > 0 ? $"{2 * macs / (ms / 1e3) / 1e9,9:F0}" : "")}"));
        }
        Console.WriteLine($"slowest {top} op x shape by wall time (per forward; W = Winograd):");
        foreach (ProfilingBackend.Row r in rows.OrderByDescending(r => r.Seconds).Take(top))
        {
            double ms = r.Seconds / runs * 1e3;
            Console.WriteLine(FormattableString.Invariant(
                $"  {r.Op,-14} {r.Shape,-40}{(r.Winograd ? " W" : "  ")}{r.Calls / runs,4}x{ms,8:F3} ms wall{r.CpuSeconds / runs * 1e3,8:F3} ms CPU{(r.Macs > 0 ? $"{2 * r.Macs / runs / (ms / 1e3) / 1e9,7:F0} GFLOP/s" : "")}"));
        }
        return 0;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }
}
