using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

/// <summary>
/// Nearest upsampling picks its source index as PyTorch does, with a float32 scale:
/// F.interpolate(arange(2).view(1,1,1,2), size=(1,82), mode='nearest')[..., 41] is 0 in torch 1.13,
/// although 41 * 2 / 82 = 1 exactly.
/// </summary>
public class UpsampleIndexTests
{
    [Fact]
    public void FloatScaleIndex_MatchesPyTorch_OnReferenceAndCpu()
    {
        foreach (IBackend backend in new IBackend[] { new ReferenceBackend(), new CpuBackend(2) })
        {
            using (backend)
            {
                var upper = new TensorView(backend.Allocate(2), 0, 1, 1, 1, 2);
                var lower = new TensorView(backend.Allocate(82), 0, 1, 1, 1, 82);
                backend.Upload([10f, 20f], upper);
                backend.Upload(new float[82], lower);
                backend.UpsampleNearestAdd(upper, lower);
                float[] result = new float[82];
                backend.Download(lower, result);
                Assert.Equal(10f, result[41]);
                Assert.Equal(20f, result[42]);
                Assert.Equal(Enumerable.Repeat(10f, 42), result[..42]);
                Assert.Equal(Enumerable.Repeat(20f, 40), result[42..]);
            }
        }
    }
}
