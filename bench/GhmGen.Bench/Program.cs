using System.Globalization;
using BenchmarkDotNet.Running;

namespace GhmGen.Bench;

/// <summary>
/// Entry point. <c>conv-table [repeats] [threads] [filter|-] [HxW|-] [cold]</c> prints a quick Stopwatch table of GFLOP/s per
/// R-50 convolution shape (at 800x1216, or at input HxW); <c>coco-eval-table [repeats]</c> times the COCO evaluation at val2017 size;
/// <c>side-by-side-worker ...</c> serves one framework to bench/side_by_side.py;
/// <c>train-worker ...</c> serves GhmGen's training step to bench/side_by_side_train.py;
/// <c>train-table [--size HxW] [--batch B] [--threads N] [--steps S]</c> prints the step's Stopwatch breakdown;
/// <c>repack-table [repeats]</c> times UpdateConv per shape on 1 and 2 threads;
/// <c>train-profile [...] [--top K]</c> times every backend op of the step and counts its multiply-adds (the compute bound);
/// <c>forward-profile [--size HxW] [--batch B] [--threads N] [--runs R] [--top K]</c> times every backend op of the inference forward;
/// <c>shared-table [repeats] [threads] [HxW]</c> times the head's convolutions over its five levels, shared and separate, hot and cold;
/// <c>detect-folder DIR --checkpoint FILE ...</c> times whole-folder detection against the forward passes alone;
/// anything else goes to BenchmarkDotNet's switcher
/// (e.g. <c>--filter *Ghm* --job short</c>).
/// </summary>
public static class Program
{
    /// <summary>Runs the benchmarks named on the command line.</summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "conv-table")
        {
            int repeats = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 3;
            int threads = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 0;
            string? filter = args.Length > 3 && args[3] != "-" ? args[3] : null;
            ConvTable.Print(repeats, threads, filter, args.Length > 4 && args[4] != "-" ? args[4] : null, args.Length > 5 && args[5] == "cold");
            return 0;
        }
        if (args.Length > 0 && args[0] == "coco-eval-table")
        {
            CocoEvalTable.Print(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5);
            return 0;
        }
        if (args.Length > 0 && args[0] == "side-by-side-worker")
            return SideBySide.SideBySideWorker.Run(args[1..]);
        if (args.Length > 0 && args[0] == "train-worker")
            return Training.TrainWorker.Run(args[1..]);
        if (args.Length > 0 && args[0] == "detect-folder")
            return DetectFolder.Run(args[1..]);
        if (args.Length > 0 && args[0] == "train-table")
            return Training.TrainWorker.Table(args[1..]);
        if (args.Length > 0 && args[0] == "repack-table")
            return Training.RepackTable.Run(args[1..]);
        if (args.Length > 0 && args[0] == "forward-profile")
            return ForwardProfile.Run(args[1..]);
        if (args.Length > 0 && args[0] == "shared-table")
            return SharedTable.Run(args[1..]);
        if (args.Length > 0 && args[0] == "train-profile")
            return Training.TrainProfile.Run(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
