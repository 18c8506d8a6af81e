// BenchmarkDotNet suite: the CPU backward ops of R-50 RetinaNet's main convolution shapes at
// batch 2 and a 512x640 input (training size), plus the forward of the same shape for
// comparison: input gradient (Conv2dBackwardData), weight + bias gradient
// (Conv2dBackwardWeights), CpuBackend on all processors. GFLOP/s = 2 * multiply-adds / mean
// time, the same count for all three (the forward's multiply-adds).
// Run: dotnet run -c Release --project bench/GhmGen.Bench -- --filter '*ConvBackward*' --job short
using BenchmarkDotNet.Attributes;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Bench;

/// <summary>A convolution shape at a batch size.</summary>
/// <param name="Shape">The shape (its count is unused here).</param>
/// <param name="Batch">Images per call.</param>
public sealed record BatchedConvShape(ConvShape Shape, int Batch)
{
    /// <summary>Floating-point operations of one call (2 per multiply-add, all images).</summary>
    public double Flops => Batch * Shape.Flops;

    /// <inheritdoc/>
    public override string ToString() => $"{Shape.Name} N{Batch}";

    /// <summary>R-50's main shapes at 512x640 (C2 128x160, C3 64x80, C4 32x40), batch 2.</summary>
    public static readonly BatchedConvShape[] TrainingR50 =
    [
        new(new("stem 7x7/2 3-64 @512x640", 3, 64, 7, 2, 3, 1, 512, 640, 1), 2),
        new(new("L1 1x1 64-256 @128x160", 64, 256, 1, 1, 0, 1, 128, 160, 4), 2),
        new(new("L2 first 3x3/2 128-128 @128x160", 128, 128, 3, 2, 1, 1, 128, 160, 1), 2),
        new(new("L2 ds 1x1/2 256-512 @128x160", 256, 512, 1, 2, 0, 1, 128, 160, 1), 2),
        new(new("L2 3x3 128-128 @64x80", 128, 128, 3, 1, 1, 1, 64, 80, 3), 2),
        new(new("L3 1x1 1024-256 @32x40", 1024, 256, 1, 1, 0, 1, 32, 40, 5), 2),
        new(new("head 3x3 256-256 @64x80", 256, 256, 3, 1, 1, 1, 64, 80, 9), 2),
        new(new("X32 L3 3x3 g32 512-512 @32x40", 512, 512, 3, 1, 1, 32, 32, 40, 22), 2),
    ];
}

/// <summary>Backward-data, backward-weights and forward of one shape on CpuBackend.</summary>
[Config(typeof(GflopsConfig))]
public class ConvBackwardBenchmarks
{
    private CpuBackend backend = null!;
    private IPreparedConv conv = null!;
    private TensorView x, y, dy, dx, dWeight, dBias;

    /// <summary>All shapes.</summary>
    public static IEnumerable<BatchedConvShape> Shapes => BatchedConvShape.TrainingR50;

    /// <summary>The shape measured.</summary>
    [ParamsSource(nameof(Shapes))]
    public BatchedConvShape Shape { get; set; } = null!;

    /// <summary>Prepares weights and tensors, and makes the backward-data weights (first call).</summary>
    [GlobalSetup]
    public void Setup()
    {
        backend = new CpuBackend();
        ConvShape s = Shape.Shape;
        ConvSpec spec = s.Spec;
        int n = Shape.Batch, oh = spec.OutputSize(s.H), ow = spec.OutputSize(s.W);
        var random = new Random(1);
        float[] Values(long count)
        {
            var values = new float[count];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() - 0.5);
            return values;
        }
        conv = backend.PrepareConv(spec, Values(spec.WeightCount), Values(s.Out));
        x = Tensor(n, s.In, s.H, s.W, Values);
        dy = Tensor(n, s.Out, oh, ow, Values);
        y = Tensor(n, s.Out, oh, ow, null);
        dx = Tensor(n, s.In, s.H, s.W, null);
        dWeight = Tensor(s.Out, s.In / s.Groups, s.Kernel, s.Kernel, null);
        dBias = Tensor(1, s.Out, 1, 1, null);
        BackwardData();
        BackwardWeights();
    }

    /// <summary>Frees them.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        conv.Dispose();
        backend.Dispose();
    }

    /// <summary>dx = the input gradient.</summary>
    [Benchmark]
    public void BackwardData() => backend.Conv2dBackwardData(conv, dy, dx, accumulate: false);

    /// <summary>dW, dBias = the weight and bias gradients.</summary>
    [Benchmark]
    public void BackwardWeights() => backend.Conv2dBackwardWeights(Shape.Shape.Spec, x, dy, dWeight, dBias, accumulate: false);

    /// <summary>The forward convolution (bias, no ReLU), for comparison.</summary>
    [Benchmark]
    public void Forward() => backend.Conv2d(conv, x, y, null, relu: false);

    private TensorView Tensor(int n, int c, int h, int w, Func<long, float[]>? values)
    {
        var t = new TensorView(backend.Allocate((long)n * c * h * w), 0, n, c, h, w);
        if (values is not null) backend.Upload(values(t.ElementCount), t);
        return t;
    }
}
