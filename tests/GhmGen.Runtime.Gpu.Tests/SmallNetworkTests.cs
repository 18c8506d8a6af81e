using GhmGen.Backends;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>
/// A small hand-written forward (stem, pool, grouped residual block, FPN-style top-down merge,
/// sigmoid head) run on both backends; every intermediate stays on the device and lives at an
/// offset in one arena, as a generated Forward with a memory plan will use them.
/// </summary>
[Collection(CpuAcceleratorCollection.Name)]
public sealed class SmallNetworkTests(CpuAcceleratorFixture fixture)
{
    private static readonly ConvSpec Stem = new(3, 8, 3, 1, 1, 1);
    private static readonly ConvSpec Block = new(8, 8, 3, 1, 1, 2);
    private static readonly ConvSpec Down = new(8, 8, 1, 2, 0, 1);
    private static readonly ConvSpec Lateral = new(8, 8, 1, 1, 0, 1);

    [Fact]
    public void ForwardAgreesWithReferenceBackend()
    {
        var random = new Random(2024);
        var weights = new Dictionary<ConvSpec, (float[] W, float[] B)>();
        foreach (ConvSpec s in new[] { Stem, Block, Down, Lateral })
            weights[s] = (TestTensors.Random(random, s.WeightCount, 0.5f), TestTensors.Random(random, s.OutChannels, 0.1f));
        float[] image = TestTensors.Random(random, 3 * 9 * 11);

        float[] expected = Forward(fixture.Reference, weights, image);
        float[] actual = Forward(fixture.Gpu, weights, image);

        // Four convolutions deep, K <= 72: the per-op tolerance of TestTensors.Close still holds
        // after the sigmoid squashes the values into (0, 1).
        TestTensors.Close(expected, actual, 1e-5f, 1e-5f);
        Assert.Contains(expected, v => v is > 0.05f and < 0.95f);  // not all saturated
    }

    private static float[] Forward(IBackend b, Dictionary<ConvSpec, (float[] W, float[] B)> weights, float[] image)
    {
        using IPreparedConv stem = b.PrepareConv(Stem, weights[Stem].W, weights[Stem].B);
        using IPreparedConv block = b.PrepareConv(Block, weights[Block].W, weights[Block].B);
        using IPreparedConv down = b.PrepareConv(Down, weights[Down].W, weights[Down].B);
        using IPreparedConv lateral = b.PrepareConv(Lateral, weights[Lateral].W, weights[Lateral].B);

        using DeviceBuffer arena = b.Allocate(4096);
        var x = new TensorView(arena, 0, 1, 3, 9, 11);           // 297
        var c1 = new TensorView(arena, 300, 1, 8, 9, 11);        // 792
        var pooled = new TensorView(arena, 1100, 1, 8, 5, 6);    // 240
        var c2 = new TensorView(arena, 1400, 1, 8, 5, 6);
        var top = new TensorView(arena, 1700, 1, 8, 3, 3);       // 72
        var merged = new TensorView(arena, 1800, 1, 8, 5, 6);
        var head = new TensorView(arena, 2100, 1, 8, 5, 6);

        b.Upload(image, x);
        b.Conv2d(stem, x, c1, null, relu: false);
        b.Relu(c1, c1);
        b.MaxPool2d(c1, pooled, 3, 2, 1);
        b.Conv2d(block, pooled, c2, pooled, relu: true);          // grouped, residual, ReLU
        b.Conv2d(down, c2, top, null, relu: false);               // stride 2: 5x6 -> 3x3
        b.Conv2d(lateral, c2, merged, null, relu: false);
        b.UpsampleNearestAdd(top, merged);                        // 3x3 -> 5x6 (not a plain x2)
        b.Add(merged, c2, head, relu: false);
        b.Sigmoid(head, head);

        var result = new float[head.ElementCount];
        b.Download(head, result);
        return result;
    }
}
