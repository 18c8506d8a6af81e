using GhmGen.Backends;
using GhmGen.Backends.Gpu;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>One ILGPU CPU-accelerator backend shared by the tests (kernels compile once).</summary>
public sealed class CpuAcceleratorFixture : IDisposable
{
    /// <summary>The backend under test.</summary>
    public IlgpuBackend Gpu { get; } = IlgpuBackend.Create(IlgpuDevice.CpuAccelerator);

    /// <summary>The plain-loop reference.</summary>
    public ReferenceBackend Reference { get; } = new();

    /// <inheritdoc/>
    public void Dispose() => Gpu.Dispose();
}

/// <summary>Tests that use the shared CPU accelerator run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class CpuAcceleratorCollection : ICollectionFixture<CpuAcceleratorFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "ILGPU CPU accelerator";
}

/// <summary>Helpers shared by the tests: random tensors and tolerant comparison.</summary>
internal static class TestTensors
{
    public static float[] Random(Random random, long count, float scale = 1f)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>Allocates a tensor on <paramref name="backend"/> and fills it.</summary>
    public static TensorView Put(IBackend backend, int n, int c, int h, int w, float[] values)
    {
        var t = new TensorView(backend.Allocate((long)n * c * h * w), 0, n, c, h, w);
        backend.Upload(values, t);
        return t;
    }

    public static float[] Get(IBackend backend, TensorView t)
    {
        var values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }

    /// <summary>
    /// |a - b| &lt;= atol + rtol * |b| element by element. The GPU kernels sum in a different
    /// order than the reference's loops (tiles of 16 along K) and use XMath.Exp, so float32
    /// rounding differs: relative 1e-5 plus an absolute 1e-5 (for sums that cancel to near
    /// zero) covers K up to a few hundred with values in [-1, 1].
    /// </summary>
    public static void Close(float[] expected, float[] actual, float rtol = 1e-5f, float atol = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float bound = atol + rtol * MathF.Abs(expected[i]);
            if (!(MathF.Abs(expected[i] - actual[i]) <= bound))
                Assert.Fail($"element {i}: expected {expected[i]}, got {actual[i]} (bound {bound})");
        }
    }
}
