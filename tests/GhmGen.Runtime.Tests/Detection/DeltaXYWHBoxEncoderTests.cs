using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

/// <summary>Box-delta encoding: the docs/MODEL.md §5 example and a hand-computed case.</summary>
public class DeltaXYWHBoxEncoderTests
{
    [Fact]
    public void SpecExample()
    {
        var d = new float[4];
        DeltaXYWHBoxEncoder.Encode([0, 0, 32, 32], [4, 2, 30, 40], d);
        Assert.Equal(0.03125, d[0], 1e-7);
        Assert.Equal(0.15625, d[1], 1e-7);
        Assert.Equal(-0.2076394, d[2], 1e-6);
        Assert.Equal(0.1718503, d[3], 1e-6);
    }

    [Fact]
    public void BatchEncodesRowByRow()
    {
        var d = new float[8];
        DeltaXYWHBoxEncoder.Encode([0, 0, 32, 32, 10, 10, 20, 30], [0, 0, 32, 32, 10, 10, 40, 50], d, 2);
        Assert.Equal([0, 0, 0, 0], d[..4]);
        // centre (15,20) -> (25,30), size 10x20 -> 30x40
        Assert.Equal(1f, d[4], 6);
        Assert.Equal(0.5f, d[5], 6);
        Assert.Equal(Math.Log(3), d[6], 6);
        Assert.Equal(Math.Log(2), d[7], 6);
    }
}
