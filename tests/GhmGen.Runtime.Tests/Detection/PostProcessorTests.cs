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

    [Theory]
    [InlineData(7, 1)]
    [InlineData(50, 2)]
    [InlineData(1000, 3)]
    public void Run_with_many_candidates_keeps_each_levels_top_k_as_a_full_sort_does(int topK, int seed)
    {
        // 256x192 input, logits on a coarse grid of 13 values so that many scores tie: tens of
        // thousands of (anchor, class) pairs pass 0.05 per level, far more than topK, so the bounded
        // candidate set compacts many times. The reference keeps, per level, the topK pairs of a
        // full sort (score descending, then pair index) and sets every other logit to -20: run on
        // that, PostProcessor has no choice to make, and both runs must agree exactly.
        var sizes = AnchorGenerator.FeatureSizes(192, 256);
        var random = new Random(seed);
        var levels = new HeadLevelOutput[5];
        var reference = new HeadLevelOutput[5];
        for (int l = 0; l < 5; l++)
        {
            int cells = sizes[l].Height * sizes[l].Width;
            var cls = new float[720 * cells];
            for (int i = 0; i < cls.Length; i++) cls[i] = random.Next(-12, 1) * 0.5f; // -6 .. 0: scores 0.0025 .. 0.5
            var reg = new float[36 * cells];
            for (int i = 0; i < reg.Length; i++) reg[i] = (float)(random.NextDouble() - 0.5);
            var ranked = new List<(float Score, int Pair, int Index)>();
            for (int channel = 0; channel < 720; channel++)
                for (int cell = 0; cell < cells; cell++)
                {
                    float logit = cls[channel * cells + cell], score = 1f / (1f + MathF.Exp(-logit));
                    if (score > 0.05f) ranked.Add((score, (cell * 9 + channel / 80) * 80 + channel % 80, channel * cells + cell));
                }
            ranked.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Pair.CompareTo(b.Pair));
            var kept = new float[cls.Length];
            Array.Fill(kept, -20f);
            foreach (var r in ranked.Take(topK)) kept[r.Index] = cls[r.Index];
            if (l == 0) Assert.True(ranked.Count > 20 * topK, $"only {ranked.Count} candidates");
            levels[l] = new HeadLevelOutput(cls, reg, sizes[l].Height, sizes[l].Width);
            reference[l] = new HeadLevelOutput(kept, reg, sizes[l].Height, sizes[l].Width);
        }
        var options = PostProcessOptions.Default with { PreNmsTopK = topK };
        DetectedObject[] expected = PostProcessor.Run(reference, 192, 256, 1.25f, 0.75f, options);
        DetectedObject[] actual = PostProcessor.Run(levels, 192, 256, 1.25f, 0.75f, options);
        Assert.NotEmpty(expected);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Run_RejectsMisshapenLevels()
    {
        var level = new HeadLevelOutput(new float[720], new float[35], 1, 1);
        var e = Assert.Throws<ArgumentException>(() => PostProcessor.Run([level, level, level, level, level], 8, 8, 1, 1));
        Assert.Contains("level p3 box map has 35 values", e.Message);
    }
}
