using BenchmarkDotNet.Running;

namespace GhmGen.Bench;

/// <summary>Entry point: pick suites with BenchmarkDotNet's switcher (e.g. <c>--filter *Ghm* --job short</c>).</summary>
public static class Program
{
    /// <summary>Runs the benchmarks named on the command line.</summary>
    public static int Main(string[] args)
    {
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
