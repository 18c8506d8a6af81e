using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

public class AnchorGeneratorTests
{
    [Fact]
    public void BaseAnchors_Stride8_MatchSpec()
    {
        // docs/MODEL.md §5: ratio 0.5 (w > h) first, scales 4, 4*2^(1/3), 4*2^(2/3); ratio 1; then ratio 2.
        float[][] expected =
        [
            [-22.6274f, -11.3137f, 22.6274f, 11.3137f],
            [-28.5088f, -14.2544f, 28.5088f, 14.2544f],
            [-35.9188f, -17.9594f, 35.9188f, 17.9594f],
            [-16f, -16f, 16f, 16f],
            [-20.1587f, -20.1587f, 20.1587f, 20.1587f],
            [-25.3984f, -25.3984f, 25.3984f, 25.3984f],
            [-11.3137f, -22.6274f, 11.3137f, 22.6274f],
            [-14.2544f, -28.5088f, 14.2544f, 28.5088f],
            [-17.9594f, -35.9188f, 17.9594f, 35.9188f],
        ];
        float[] anchors = AnchorGenerator.BaseAnchors(8);
        Assert.Equal(36, anchors.Length);
        for (int a = 0; a < 9; a++)
            for (int k = 0; k < 4; k++)
                Assert.True(Math.Abs(expected[a][k] - anchors[a * 4 + k]) < 1e-4f, $"anchor {a} coordinate {k}: {anchors[a * 4 + k]}");
    }

    [Theory]
    [InlineData(16)]
    [InlineData(128)]
    public void BaseAnchors_FollowFormulaInDouble(int stride)
    {
        float[] anchors = AnchorGenerator.BaseAnchors(stride);
        double[] ratios = [0.5, 1, 2];
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++)
            {
                double scale = 4 * Math.Pow(2, s / 3.0);
                double w = stride * scale / Math.Sqrt(ratios[r]), h = stride * scale * Math.Sqrt(ratios[r]);
                int a = r * 3 + s;
                Assert.Equal(-w / 2, anchors[a * 4], 3);
                Assert.Equal(-h / 2, anchors[a * 4 + 1], 3);
                Assert.Equal(w / 2, anchors[a * 4 + 2], 3);
                Assert.Equal(h / 2, anchors[a * 4 + 3], 3);
            }
    }

    [Fact]
    public void LevelAnchors_OrderIsCellMajorThenAnchor_CentersAtXTimesStride()
    {
        const int stride = 16, height = 3, width = 4;
        float[] baseAnchors = AnchorGenerator.BaseAnchors(stride);
        float[] anchors = AnchorGenerator.LevelAnchors(stride, height, width);
        Assert.Equal(height * width * 9 * 4, anchors.Length);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int a = 0; a < 9; a++)
                {
                    int i = ((y * width + x) * 9 + a) * 4;
                    Assert.Equal(baseAnchors[a * 4] + x * stride, anchors[i]);
                    Assert.Equal(baseAnchors[a * 4 + 1] + y * stride, anchors[i + 1]);
                    Assert.Equal(baseAnchors[a * 4 + 2] + x * stride, anchors[i + 2]);
                    Assert.Equal(baseAnchors[a * 4 + 3] + y * stride, anchors[i + 3]);
                    // Center of anchor a at cell (y, x) is (x*stride, y*stride), not ((x+0.5)*stride, ...).
                    Assert.Equal(x * stride, (anchors[i] + anchors[i + 2]) / 2, 3);
                    Assert.Equal(y * stride, (anchors[i + 1] + anchors[i + 3]) / 2, 3);
                }
    }

    [Fact]
    public void FeatureSizes_800x1216_MatchSpec()
    {
        FeatureSize[] sizes = AnchorGenerator.FeatureSizes(800, 1216);
        Assert.Equal([new(100, 152), new(50, 76), new(25, 38), new(13, 19), new(7, 10)], sizes);
        Assert.Equal(182_403, AnchorGenerator.AnchorCount(sizes));
        Assert.Equal(182_403 * 4, AnchorGenerator.AllAnchors(sizes).Length);
    }

    [Fact]
    public void FeatureSizes_512x512_Gives49104Anchors()
    {
        FeatureSize[] sizes = AnchorGenerator.FeatureSizes(512, 512);
        Assert.Equal([new(64, 64), new(32, 32), new(16, 16), new(8, 8), new(4, 4)], sizes);
        Assert.Equal(49_104, AnchorGenerator.AnchorCount(sizes));
    }

    [Fact]
    public void AllAnchors_ConcatenatesLevelsInOrder()
    {
        FeatureSize[] sizes = AnchorGenerator.FeatureSizes(64, 96);
        float[] all = AnchorGenerator.AllAnchors(sizes);
        int offset = 0;
        for (int l = 0; l < 5; l++)
        {
            float[] level = AnchorGenerator.LevelAnchors(AnchorGenerator.Strides[l], sizes[l].Height, sizes[l].Width);
            Assert.Equal(level, all.AsSpan(offset, level.Length).ToArray());
            offset += level.Length;
        }
        Assert.Equal(all.Length, offset);
    }

    [Fact]
    public void AllAnchors_RejectsWrongLevelCount()
    {
        var e = Assert.Throws<ArgumentException>(() => AnchorGenerator.AllAnchors([new(2, 2)]));
        Assert.Contains("expected 5 feature sizes", e.Message);
    }
}
