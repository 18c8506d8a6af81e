using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

public class DeltaDecoderTests
{
    [Fact]
    public void Decode_InvertsSpecEncodingExample()
    {
        // docs/MODEL.md §5: anchor [0,0,32,32], gt [4,2,30,40] -> [0.03125, 0.15625, -0.2076394, 0.1718503].
        var (x1, y1, x2, y2) = DeltaDecoder.Decode(0, 0, 32, 32, 0.03125f, 0.15625f, -0.2076394f, 0.1718503f,
            float.PositiveInfinity, float.PositiveInfinity);
        Assert.Equal(4, x1, 4);
        Assert.Equal(2, y1, 4);
        Assert.Equal(30, x2, 4);
        Assert.Equal(40, y2, 4);
    }

    [Fact]
    public void Decode_ClampsLogRatioAt16Over1000()
    {
        // dw = 10 is clamped to |log(0.016)|: width = 32 * 1000/16 = 2000 around center 2000.
        var (x1, _, x2, _) = DeltaDecoder.Decode(1984, 1984, 2016, 2016, 0, 0, 10f, 0, 4000, 4000);
        Assert.Equal(2000 - 1000, x1, 1);
        Assert.Equal(2000 + 1000, x2, 1);
        var (nx1, _, nx2, _) = DeltaDecoder.Decode(0, 0, 32, 32, 0, 0, -10f, 0, float.PositiveInfinity, float.PositiveInfinity);
        Assert.Equal(32 * 16 / 1000.0, nx2 - nx1, 4);
    }

    [Fact]
    public void Decode_ClipsToResizedImage()
    {
        var (x1, y1, x2, y2) = DeltaDecoder.Decode(-10, -20, 50, 70, 0.5f, 0, 0, 0, 40, 60);
        Assert.Equal(20, x1); // center moved by 0.5*60 = 30 to 50: box [20, 80] -> [20, 40]
        Assert.Equal(0, y1);
        Assert.Equal(40, x2);
        Assert.Equal(60, y2);
    }

    [Fact]
    public void DecodeSpan_MatchesScalarDecode()
    {
        float[] anchors = [0, 0, 32, 32, 10, 10, 20, 40];
        float[] deltas = [0.1f, -0.2f, 0.3f, -0.4f, 0, 0, 0, 0];
        var boxes = new float[8];
        DeltaDecoder.Decode(anchors, deltas, boxes, 100, 100);
        var first = DeltaDecoder.Decode(0, 0, 32, 32, 0.1f, -0.2f, 0.3f, -0.4f, 100, 100);
        Assert.Equal([first.X1, first.Y1, first.X2, first.Y2], boxes[..4]);
        Assert.Equal(anchors[4..], boxes[4..]);
    }
}
