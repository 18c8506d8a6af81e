using System.Diagnostics;
using System.Globalization;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench;

/// <summary>
/// <c>shared-table [repeats] [threads] [HxW]</c>: the RetinaNet head's three convolution shapes (3x3 256-256,
/// 256-720, 256-36) over the five pyramid levels of an HxW input (default 64x96), as one
/// <see cref="IBackend.Conv2dShared"/> call and as five <see cref="IBackend.Conv2d"/> calls, each with its
/// weights hot (the same call repeated) and cold (a 64 MB buffer read between repeats evicts them from L3, as
/// the rest of a forward pass does). Best of <c>repeats</c> per row; used to find where the head's time goes at
/// small inputs (issue 16 item 4).
/// </summary>
internal static class SharedTable
{
    public static int Run(string[] args)
    {
        int repeats = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 20;
        int threads = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2;
        string size = args.Length > 2 ? args[2] : "64x96";
        string[] hw = size.Split('x');
        int height = int.Parse(hw[0], CultureInfo.InvariantCulture), width = int.Parse(hw[1], CultureInfo.InvariantCulture);
        using var backend = new CpuBackend(threads) { WinogradWeightsPerCall = true };
        Console.WriteLine($"machine: {ConvTable.Machine()}; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        Console.WriteLine($"kernel {backend.KernelKind}, {backend.ThreadCount} threads; head levels of {size}:");
        var levels = new (int H, int W)[5];
        int h = height, w = width;
        for (int i = 0; i < 3; i++) { h = (h + 1) / 2; w = (w + 1) / 2; } // stem and layer1: /4, then P3 at /8
        for (int i = 0; i < 5; i++)
        {
            levels[i] = (h, w);
            h = (h + 1) / 2;
            w = (w + 1) / 2;
        }
        Console.WriteLine("  " + string.Join(", ", levels.Select(l => $"{l.H}x{l.W}")));
        float[] evict = new float[16 << 20];
        foreach (int outChannels in new[] { 256, 720, 36 })
        {
            var spec = new ConvSpec(256, outChannels, 3, 1, 1, 1);
            var random = new Random(1);
            float[] weight = new float[spec.WeightCount], bias = new float[outChannels];
            for (int i = 0; i < weight.Length; i++) weight[i] = (float)(random.NextDouble() - 0.5);
            using IPreparedConv conv = backend.PrepareConv(spec, weight, bias);
            var xs = new TensorView[5];
            var ys = new TensorView[5];
            double flops = 0;
            for (int i = 0; i < 5; i++)
            {
                (int lh, int lw) = levels[i];
                float[] input = new float[256 * lh * lw];
                for (int j = 0; j < input.Length; j++) input[j] = (float)(random.NextDouble() - 0.5);
                xs[i] = new TensorView(backend.Allocate(input.Length), 0, 1, 256, lh, lw);
                backend.Upload(input, xs[i]);
                ys[i] = new TensorView(backend.Allocate((long)outChannels * lh * lw), 0, 1, outChannels, lh, lw);
                flops += 2.0 * outChannels * 256 * 9 * lh * lw;
            }
            void Shared() => backend.Conv2dShared(conv, xs, ys, relu: true);
            void Separate()
            {
                for (int i = 0; i < 5; i++) backend.Conv2d(conv, xs[i], ys[i], null, relu: true);
            }
            foreach ((string name, Action run) in new (string, Action)[] { ("shared", Shared), ("separate", Separate) })
            {
                foreach (bool cold in new[] { false, true })
                {
                    run();
                    double best = double.MaxValue;
                    for (int r = 0; r < repeats; r++)
                    {
                        if (cold) Evict(evict);
                        long start = Stopwatch.GetTimestamp();
                        run();
                        best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
                    }
                    Console.WriteLine($"3x3 256-{outChannels,-4} {name,-8} {(cold ? "cold" : "hot"),-4} {best * 1e3,8:F3} ms {flops / best / 1e9,8:F1} GFLOP/s");
                }
            }
        }
        return 0;
    }

    // Reads (and writes) the whole buffer, pushing the weights out of the caches.
    private static void Evict(float[] buffer)
    {
        for (int i = 0; i < buffer.Length; i += 16) buffer[i] += 1;
    }
}
