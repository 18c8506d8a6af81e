// BenchmarkDotNet suite: every distinct convolution shape of R-50 RetinaNet at 800x1216 (batch 1,
// bias + ReLU, CpuBackend on all processors), ResNeXt-32x4d's grouped 3x3 shapes, and the FMA
// peak on 1 and 2 threads. The GFLOP/s column is 2 * multiply-adds / mean time.
// Run: dotnet run -c Release --project bench/GhmGen.Bench -- --filter '*Conv*' --job short
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench;

/// <summary>One CpuBackend convolution shape.</summary>
[Config(typeof(GflopsConfig))]
public class ConvBenchmarks
{
    private CpuBackend backend = null!;
    private ConvRun run = null!;

    /// <summary>All shapes.</summary>
    public static IEnumerable<ConvShape> Shapes => ConvShape.RetinaNetR50.Concat(ConvShape.ResNeXtGrouped);

    /// <summary>The shape measured.</summary>
    [ParamsSource(nameof(Shapes))]
    public ConvShape Shape { get; set; } = null!;

    /// <summary>Prepares weights and tensors.</summary>
    [GlobalSetup]
    public void Setup()
    {
        backend = new CpuBackend();
        run = new ConvRun(backend, Shape);
    }

    /// <summary>Frees them.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        run.Dispose();
        backend.Dispose();
    }

    /// <summary>One convolution.</summary>
    [Benchmark]
    public void Conv2d() => run.Run();
}

/// <summary>Register-only FMA loops: the ceiling to compare the convolutions with.</summary>
[Config(typeof(GflopsConfig))]
public class ConvFmaPeakBenchmarks
{
    /// <summary>Iterations per thread per call.</summary>
    public const long Iterations = 20_000_000;

    /// <summary>Threads running the loop at once.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>All threads' loops.</summary>
    [Benchmark]
    public void FmaPeak() => GhmGen.Bench.FmaPeak.Run(Threads, Iterations);
}

/// <summary>Adds the GFLOP/s column.</summary>
public sealed class GflopsConfig : ManualConfig
{
    /// <summary>The config.</summary>
    public GflopsConfig()
    {
        AddColumn(new GflopsColumn());
        SummaryStyle = SummaryStyle.Default.WithMaxParameterColumnWidth(44); // whole shape names
    }
}

/// <summary>GFLOP/s = floating-point operations of one call / mean time.</summary>
public sealed class GflopsColumn : IColumn
{
    /// <inheritdoc/>
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc/>
    public string ColumnName => "GFLOP/s";

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => 0;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => "2 x multiply-adds per call / mean time, in 1e9 per second";

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0) return "-";
        double flops = 0;
        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            if (parameter.Value is ConvShape shape) flops = shape.Flops;
            else if (parameter.Value is BatchedConvShape batched) flops = batched.Flops;
            else if (parameter.Name == nameof(ConvFmaPeakBenchmarks.Threads) && parameter.Value is int threads)
                flops = threads * FmaPeak.Flops(ConvFmaPeakBenchmarks.Iterations);
        }
        return flops > 0 ? (flops / meanNs.Value).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) : "-";
    }

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
