using System.Text.Json;
using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

public class PostProcessorTests
{
    private static HeadLevelOutput[] LoadLevels(JsonElement image)
    {
        string name = image.GetProperty("name").GetString()!;
        float[] cls = DetectionFixtures.Floats(name + "_cls.f32");
        float[] reg = DetectionFixtures.Floats(name + "_reg.f32");
        var levels = new HeadLevelOutput[5];
        int clsOffset = 0, regOffset = 0, l = 0;
        foreach (var size in image.GetProperty("feature_sizes").EnumerateArray())
        {
            int h = size[0].GetInt32(), w = size[1].GetInt32();
            levels[l++] = new HeadLevelOutput(cls.AsMemory(clsOffset, 720 * h * w), reg.AsMemory(regOffset, 36 * h * w), h, w);
            clsOffset += 720 * h * w;
            regOffset += 36 * h * w;
        }
        Assert.Equal(cls.Length, clsOffset);
        Assert.Equal(reg.Length, regOffset);
        return levels;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Run_MatchesPyTorchReference(int imageIndex)
    {
        JsonElement image = DetectionFixtures.Manifest().GetProperty("images")[imageIndex];
        HeadLevelOutput[] levels = LoadLevels(image);
        int ph = image.GetProperty("padded_height").GetInt32(), pw = image.GetProperty("padded_width").GetInt32();
        var sizes = AnchorGenerator.FeatureSizes(ph, pw);
        for (int l = 0; l < 5; l++) Assert.Equal(sizes[l], new FeatureSize(levels[l].Height, levels[l].Width));

        DetectedObject[] detections = PostProcessor.Run(levels, image.GetProperty("resized_height").GetInt32(),
            image.GetProperty("resized_width").GetInt32(), (float)image.GetProperty("scale_x").GetDouble(),
            (float)image.GetProperty("scale_y").GetDouble());

        var expected = image.GetProperty("detections").EnumerateArray().ToArray();
        Assert.Equal(expected.Length, detections.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            var e = expected[i];
            var d = detections[i];
            Assert.True(e[5].GetInt32() == d.Label, $"detection {i}: label {d.Label}, expected {e[5].GetInt32()}");
            Assert.True(Math.Abs(e[4].GetDouble() - d.Score) <= 1e-5, $"detection {i}: score {d.Score}, expected {e[4].GetDouble()}");
            float[] box = [d.X1, d.Y1, d.X2, d.Y2];
            for (int k = 0; k < 4; k++)
                Assert.True(Math.Abs(e[k].GetDouble() - box[k]) <= 1e-2, $"detection {i} coordinate {k}: {box[k]}, expected {e[k].GetDouble()}");
        }
    }

    [Fact]
    public void Run_SingleConfidentAnchor_DecodesRescalesAndLabels()
    {
        // 64x64 input: P3 8x8 ... P7 1x1. One logit of 3 (score 0.9526) at P3 cell (y=2, x=3), anchor 3
        // (ratio 1, scale 4: 32x32, centred on (24, 16)), class 17; deltas zero, so the box is the anchor
        // [8, 0, 40, 32]; the image was resized by 2 in x and 0.5 in y.
        var sizes = AnchorGenerator.FeatureSizes(64, 64);
        var levels = new HeadLevelOutput[5];
        for (int l = 0; l < 5; l++)
        {
            int cells = sizes[l].Height * sizes[l].Width;
            var cls = new float[720 * cells];
            Array.Fill(cls, -10f);
            if (l == 0) cls[(3 * 80 + 17) * cells + 2 * 8 + 3] = 3f;
            levels[l] = new HeadLevelOutput(cls, new float[36 * cells], sizes[l].Height, sizes[l].Width);
        }
        DetectedObject[] detections = PostProcessor.Run(levels, 64, 64, 2f, 0.5f);
        var d = Assert.Single(detections);
        Assert.Equal(17, d.Label);
        Assert.Equal(1 / (1 + Math.Exp(-3)), d.Score, 5);
        Assert.Equal((24 - 16) / 2f, d.X1);
        Assert.Equal((16 - 16) / 0.5f, d.Y1);
        Assert.Equal((24 + 16) / 2f, d.X2);
        Assert.Equal((16 + 16) / 0.5f, d.Y2);

        CocoResult coco = Assert.Single(PostProcessor.ToCoco(detections));
        Assert.Equal(new CocoResult(4, 0, 16, 64, d.Score, 19), coco); // label 17 = "horse" = category 19
    }

    [Fact]
    public void Run_RejectsMisshapenLevels()
    {
        var level = new HeadLevelOutput(new float[720], new float[35], 1, 1);
        var e = Assert.Throws<ArgumentException>(() => PostProcessor.Run([level, level, level, level, level], 8, 8, 1, 1));
        Assert.Contains("level p3 box map has 35 values", e.Message);
    }
}
