// Entry point: `conv-table [repeats] [threads]` prints a quick Stopwatch table of GFLOP/s
// convolution shape and the estimated convolution time of one forward pass; anything else goes to
// BenchmarkDotNet (e.g. `--filter '*Conv*' --job short`).
using BenchmarkDotNet.Running;
using GhmGen.Bench;

if (args.Length > 0 && args[0] == "conv-table")
{
    int repeats = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 3;
    int threads = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 0;
    ConvTable.Print(repeats, threads, args.Length > 3 ? args[3] : null);
    return 0;
}
BenchmarkSwitcher.FromAssembly(typeof(ConvBenchmarks).Assembly).Run(args);
return 0;
