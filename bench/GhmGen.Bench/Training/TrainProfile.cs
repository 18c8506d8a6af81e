using System.Diagnostics;
using System.Globalization;

namespace GhmGen.Bench.Training;

/// <summary>
/// <c>train-profile [--model M] [--size HxW] [--batch B] [--threads N] [--steps S] [--top K]</c>: runs
/// <see cref="GhmGenTrainingStep"/> on a <see cref="ProfilingBackend"/>, one warm-up step unrecorded, then S
/// recorded steps, and prints (per step, averaged over the S steps):
/// <list type="bullet">
/// <item>the FMA peak (<see cref="FmaPeak"/>, per CPU-second, so that other processes on the machine do not
/// lower it) and the step's multiply-adds per convolution pass (forward, input gradient, weight gradient),
/// counted from the ops the generated session really calls;</item>
/// <item>the compute lower bound: 2 x multiply-adds / (threads x per-core peak), with direct convolution, and
/// with the 3x3 stride-1 ops that CpuBackend runs as Winograd F(4x4, 3x3) at a quarter of the multiplies;</item>
/// <item>time, GMAC and GFLOP/s (direct count) per op kind, and the K slowest rows (op x shape).</item>
/// </list>
/// The Stopwatch around each op adds a little; the step's total is printed next to the sum of the rows.
/// </summary>
internal static class TrainProfile
{
    public static int Run(string[] args)
    {
        int steps = 2, top = 25;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--steps" && i + 1 < args.Length) steps = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else if (args[i] == "--top" && i + 1 < args.Length) top = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else rest.Add(args[i]);
        }
        if (steps < 1) throw new ArgumentException("train-profile: --steps must be at least 1");
        (string model, int height, int width, int batch, int threads) = TrainWorker.ParseTableArgs("train-profile", [.. rest]);

        TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
        FmaPeak.Measure(1, 100_000_000);
        double peakPerCore = FmaPeak.Flops(100_000_000) / (Environment.CpuUsage.TotalTime - cpuStart).TotalSeconds / 1e9;
        double peak = peakPerCore * threads;

        ProfilingBackend? profiler = null;
        using var step = new GhmGenTrainingStep(model, batch, height, width, threads, cpu => profiler = new ProfilingBackend(cpu));
        step.Step();
        profiler!.Recording = true;
        var totals = new List<GhmGenTrainingStep.StepResult>();
        TimeSpan cpuSteps = Environment.CpuUsage.TotalTime;
        for (int s = 0; s < steps; s++) totals.Add(step.Step());
        double cpuMs = (Environment.CpuUsage.TotalTime - cpuSteps).TotalMilliseconds / steps;
        profiler.Recording = false;

        Console.WriteLine(FormattableString.Invariant(
            $"{model} training step, batch {batch}, {height}x{width}, {threads} threads, {steps} recorded step(s) after 1 warm-up; load average {LoadAverage()}"));
        Console.WriteLine(FormattableString.Invariant(
            $"FMA peak {peakPerCore:F1} GFLOP per CPU-second (1 thread), so {peak:F1} GFLOP/s on {threads} uncontended cores"));
        var rows = profiler.Rows.ToList();
        double Sum(Func<ProfilingBackend.Row, bool> which, Func<ProfilingBackend.Row, double> value) => rows.Where(which).Sum(value) / steps;

        string[] convOps = ["conv forward", "conv input gradient", "conv weight gradient"];
        double directMacs = 0, winogradMacs = 0;
        // Bounds in wall ms on `threads` uncontended cores; x threads for CPU ms.
        Console.WriteLine($"{"pass",-24}{"GMAC",10}{"of which Winograd",20}{"bound direct ms",17}{"bound Winograd ms",19}");
        foreach (string op in convOps)
        {
            double macs = Sum(r => r.Op == op, r => r.Macs), wino = Sum(r => r.Op == op && r.Winograd, r => r.Macs);
            directMacs += macs;
            winogradMacs += macs - wino * 0.75;
            Console.WriteLine(FormattableString.Invariant(
                $"{op,-24}{macs / 1e9,10:F1}{wino / 1e9,20:F1}{2 * macs / peak / 1e6,17:F0}{2 * (macs - 0.75 * wino) / peak / 1e6,19:F0}"));
        }
        Console.WriteLine(FormattableString.Invariant(
            $"{"all convolutions",-24}{directMacs / 1e9,10:F1}{"",20}{2 * directMacs / peak / 1e6,17:F0}{2 * winogradMacs / peak / 1e6,19:F0}"));

        double stepMs = totals.Average(r => r.TotalMs);
        Console.WriteLine(FormattableString.Invariant($"measured step {stepMs:F0} ms (CPU {cpuMs:F0} ms); phases: forward {totals.Average(r => r.ForwardMs):F0}, backward {totals.Average(r => r.BackwardMs):F0}, SGD {totals.Average(r => r.SgdMs):F0}, UpdateWeights {totals.Average(r => r.UpdateMs):F0} ms"));
        Console.WriteLine($"{"op",-24}{"calls",7}{"wall ms",10}{"CPU ms",10}{"share CPU",10}{"GMAC",9}{"GFLOP/CPU-s",13}{"% peak",8}");
        double cpuTotal = rows.Sum(r => r.CpuSeconds) / steps * 1e3;
        foreach (var group in rows.GroupBy(r => r.Op).OrderByDescending(g => g.Sum(r => r.CpuSeconds)))
        {
            double ms = group.Sum(r => r.Seconds) / steps * 1e3, cms = group.Sum(r => r.CpuSeconds) / steps * 1e3, macs = group.Sum(r => r.Macs) / steps;
            Console.WriteLine(FormattableString.Invariant(
                $"{group.Key,-24}{group.Sum(r => r.Calls) / steps,7}{ms,10:F1}{cms,10:F1}{100 * cms / cpuMs,9:F1}%{macs / 1e9,9:F2}{(macs > 0 ? $"{2 * macs / (cms / 1e3) / 1e9,13:F0}{100 * 2 * macs / (cms / 1e3) / 1e9 / peakPerCore,7:F0}%" : "")}"));
        }
        Console.WriteLine(FormattableString.Invariant($"rows total {rows.Sum(r => r.Seconds) / steps * 1e3:F0} ms wall, {cpuTotal:F0} ms CPU of the step's {stepMs:F0} ms wall, {cpuMs:F0} ms CPU (the rest: host work outside the backend: BN unfolding, SGD, refolding, loss)"));
        Console.WriteLine($"slowest {top} by CPU time (op x shape; W = Winograd):");
        foreach (ProfilingBackend.Row r in rows.OrderByDescending(r => r.CpuSeconds).Take(top))
        {
            double cms = r.CpuSeconds / steps * 1e3;
            Console.WriteLine(FormattableString.Invariant(
                $"  {r.Op,-22} {r.Shape,-40}{(r.Winograd ? " W" : "  ")}{r.Calls / steps,4}x{r.Seconds / steps * 1e3,9:F1} ms wall{cms,9:F1} ms CPU{(r.Macs > 0 ? $"{2 * r.Macs / steps / (cms / 1e3) / 1e9,8:F0} GFLOP/CPU-s" : "")}"));
        }
        PrintMemory(step, profiler);
        return 0;
    }

    // Where the resident memory goes, after the recorded steps (every form made, momentum allocated).
    private static void PrintMemory(GhmGenTrainingStep step, ProfilingBackend profiler)
    {
        const double Mb = 1048576.0;
        long panels = 0, winograd = 0, backwardPanels = 0, backwardWinograd = 0;
        foreach (var conv in profiler.PreparedConvs)
        {
            var b = profiler.Inner.PreparedBytes(conv);
            panels += b.Panels;
            winograd += b.Winograd;
            backwardPanels += b.BackwardPanels;
            backwardWinograd += b.BackwardWinograd;
        }
        long trained = 4 * step.TrainedValueCount;
        (string Name, double Bytes)[] items =
        [
            ("network state tensors (host weights, all)", 4.0 * step.NetworkStateValues),
            ("host gradients of the trained parameters", trained),
            ("SGD momentum buffers", trained),
            ("folded weight gradients on the backend (the host gradients' own arrays on the CPU)", 0),
            ("activations + activation gradients (static plan)", step.ActivationBytes),
            ("prepared: forward GEMM panels (frozen convolutions; the trained ones' biases)", panels),
            ("prepared: forward Winograd form", winograd),
            ("prepared: backward-data panels of the shared head's convolutions", backwardPanels),
            ("  transient panels, one shared scratch (trained convolutions' forward and unshared ones' backward-data)", profiler.Inner.TransientPanelBytes),
            ("prepared: backward-data Winograd form", backwardWinograd),
        ];
        double rss = RssMb("VmRSS"), peak = RssMb("VmHWM"), listed = items.Sum(i => i.Bytes) / Mb;
        GCMemoryInfo gc = GC.GetGCMemoryInfo();
        Console.WriteLine(FormattableString.Invariant(
            $"memory: RSS {rss:F0} MB, peak RSS {peak:F0} MB; GC: {GC.GetTotalMemory(false) / Mb:F0} MB allocated, {gc.TotalCommittedBytes / Mb:F0} MB committed, {gc.FragmentedBytes / Mb:F0} MB fragmented at the last collection"));
        foreach ((string name, double bytes) in items) Console.WriteLine(FormattableString.Invariant($"  {name,-60}{bytes / Mb,9:F1} MB"));
        Console.WriteLine(FormattableString.Invariant($"  {"listed",-60}{listed,9:F1} MB; the rest of the RSS ({rss - listed:F0} MB): runtime, code, native scratch, folding scratch, host copies of the maps"));
    }

    private static double RssMb(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }
}
