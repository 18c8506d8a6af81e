using System.Diagnostics;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench.Training;

/// <summary>
/// <c>repack-table [repeats=5]</c>: times <see cref="CpuBackend.UpdateConv"/> (what UpdateWeights runs per trained
/// convolution after every optimizer step) for R-50 RetinaNet shapes, with the backward-data forms made (as in
/// training), on 1 and 2 threads: best wall time and the CPU time of that repeat, and the bytes written.
/// </summary>
internal static class RepackTable
{
    public static int Run(string[] args)
    {
        int repeats = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 5;
        (string Name, ConvSpec Spec, int H, int W)[] shapes =
        [
            ("head 3x3 256-256", new ConvSpec(256, 256, 3, 1, 1, 1), 64, 80),
            ("cls 3x3 256-720", new ConvSpec(256, 720, 3, 1, 1, 1), 64, 80),
            ("L4 3x3 512-512", new ConvSpec(512, 512, 3, 1, 1, 1), 16, 20),
            ("L3 1x1 1024-256", new ConvSpec(1024, 256, 1, 1, 0, 1), 32, 40),
            ("L4 1x1 512-2048", new ConvSpec(512, 2048, 1, 1, 0, 1), 16, 20),
            ("P6 3x3/2 2048-256", new ConvSpec(2048, 256, 3, 2, 1, 1), 16, 20),
        ];
        Console.WriteLine($"UpdateConv (all forms: forward panels, Winograd, backward-data panels and Winograd / transposed panels); load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        foreach (int threads in new[] { 1, 2 })
        {
            using var cpu = new CpuBackend(threads);
            foreach (var (name, s, h, w) in shapes)
            {
                var random = new Random(1);
                float[] weight = new float[s.WeightCount], bias = new float[s.OutChannels];
                for (int i = 0; i < weight.Length; i++) weight[i] = (float)(random.NextDouble() - 0.5);
                using IPreparedConv conv = cpu.PrepareConv(s, weight, bias);
                int oh = s.OutputSize(h), ow = s.OutputSize(w);
                var dy = new TensorView(cpu.Allocate(2L * s.OutChannels * oh * ow), 0, 2, s.OutChannels, oh, ow);
                var dx = new TensorView(cpu.Allocate(2L * s.InChannels * h * w), 0, 2, s.InChannels, h, w);
                cpu.Conv2dBackwardData(conv, dy, dx, accumulate: false); // makes the backward-data forms
                cpu.UpdateConv(conv, weight, bias);
                double best = double.MaxValue, bestCpu = 0;
                for (int r = 0; r < repeats; r++)
                {
                    TimeSpan c0 = Environment.CpuUsage.TotalTime;
                    long t0 = Stopwatch.GetTimestamp();
                    cpu.UpdateConv(conv, weight, bias);
                    double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    if (ms < best) (best, bestCpu) = (ms, (Environment.CpuUsage.TotalTime - c0).TotalMilliseconds);
                }
                Console.WriteLine(FormattableString.Invariant($"{threads} thread(s)  {name,-20} {s.WeightCount,9:N0} weights {best,8:F2} ms wall {bestCpu,8:F2} ms CPU"));
            }
        }
        return 0;
    }
}
