// BenchmarkDotNet suite: R-50 RetinaNet-GHM training on the CPU backend at batch 2, 512x640, 2 threads,
// seeded weights (stem and layer1 frozen, BN folded = eval mode) and the seeded output gradients G of
// bench/side_by_side_train.py: forward alone (the training session's, which keeps what backward reads),
// forward + backward (G uploaded as the output gradients; no optimiser step, so every iteration sees the
// same weights), and the whole step of side_by_side_train.py (+ download of the maps and the loss, torch's
// SGD, UpdateWeights). One job: 1 launch, 1 warm-up, 5 iterations of one invocation each (a step takes
// seconds), MemoryDiagnoser for the managed allocation per call.
// Run: dotnet run -c Release --project bench/GhmGen.Bench -- --filter '*TrainingStepBenchmarks*'
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using GhmGen.Bench.Training;

namespace GhmGen.Bench;

/// <summary>One job with few iterations for a multi-second benchmark.</summary>
public sealed class TrainingStepConfig : ManualConfig
{
    /// <summary>The config.</summary>
    public TrainingStepConfig()
    {
        AddJob(Job.Default
            .WithStrategy(RunStrategy.Monitoring)
            .WithLaunchCount(1)
            .WithWarmupCount(1)
            .WithIterationCount(5)
            .WithInvocationCount(1)
            .WithUnrollFactor(1)
            .WithId("train"));
        SummaryStyle = BenchmarkDotNet.Reports.SummaryStyle.Default.WithMaxParameterColumnWidth(24); // the whole model name
    }
}

/// <summary>Forward, forward + backward, and the full training step of R-50 at batch 2, 512x640, 2 threads.</summary>
[Config(typeof(TrainingStepConfig))]
[MemoryDiagnoser]
public class TrainingStepBenchmarks
{
    private GhmGenTrainingStep step = null!;

    /// <summary>The detector.</summary>
    [Params("retinanet-ghm-r50-fpn")]
    public string Model { get; set; } = "";

    /// <summary>Builds, seeds and prepares the training session.</summary>
    [GlobalSetup]
    public void Setup() => step = new GhmGenTrainingStep(Model, batch: 2, height: 512, width: 640, threads: 2);

    /// <summary>Frees it.</summary>
    [GlobalCleanup]
    public void Cleanup() => step.Dispose();

    /// <summary>The training session's forward.</summary>
    [Benchmark]
    public void Forward() => step.Forward();

    /// <summary>Forward, G uploaded, backward (with the gradients collected on the host).</summary>
    [Benchmark(Baseline = true)]
    public void ForwardBackward() => step.ForwardBackward();

    /// <summary>side_by_side_train.py's step: forward, maps + loss, G, backward, SGD, UpdateWeights.</summary>
    [Benchmark]
    public double TrainingStep() => step.Step().Loss;
}
