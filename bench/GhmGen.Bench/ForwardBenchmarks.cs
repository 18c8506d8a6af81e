// BenchmarkDotNet suite: the generated forward pass of each detector on the CPU backend, one
// 800x1216 image, seeded weights, 2 threads, with allocation per pass (MemoryDiagnoser).
// Run: dotnet run -c Release --project bench/GhmGen.Bench -- --filter '*ForwardBenchmarks*' --job short
using BenchmarkDotNet.Attributes;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Bench;

/// <summary>One forward pass per detector.</summary>
[MemoryDiagnoser]
public class ForwardBenchmarks
{
    private CpuBackend backend = null!;
    private IForwardSession session = null!;
    private float[] input = null!;

    /// <summary>The detector measured.</summary>
    [Params("retinanet-ghm-r50-fpn", "retinanet-ghm-r101-fpn", "retinanet-ghm-x101-32x4d-fpn", "retinanet-ghm-x101-64x4d-fpn")]
    public string Model { get; set; } = "";

    /// <summary>Input height.</summary>
    [Params(800)]
    public int Height { get; set; }

    /// <summary>Input width.</summary>
    [Params(1216)]
    public int Width { get; set; }

    /// <summary>Builds the network, seeds it and prepares a session.</summary>
    [GlobalSetup]
    public void Setup()
    {
        ModelInfo info = ModelRegistry.Get(Model);
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        input = new float[3 * Height * Width];
        SeededWeights.FillInput(input);
        backend = new CpuBackend(threads: 2);
        session = info.CreateSession(network, backend, 1, Height, Width);
    }

    /// <summary>Frees the session and backend.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        session.Dispose();
        backend.Dispose();
    }

    /// <summary>One forward pass.</summary>
    [Benchmark]
    public void Forward() => session.Forward(input);
}
