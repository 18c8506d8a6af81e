using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

/// <summary>Valid flags of images in a padded batch and the targets built with them (docs/TRAINING.md).</summary>
public class ValidFlagsTests
{
    // docs/TRAINING.md: a batch padded to 352x288 (HxW) holding images 224x288 and 352x170,
    // whose own pad shapes are 224x288 and 352x192.
    private const int BatchHeight = 352, BatchWidth = 288;

    [Fact]
    public void ValidFlags_PaddedBatch352x288_MatchTheTrainingExample()
    {
        FeatureSize[] levels = AnchorGenerator.FeatureSizes(BatchHeight, BatchWidth);
        Assert.Equal(new FeatureSize(44, 36), levels[0]);
        Assert.Equal(new FeatureSize(3, 3), levels[4]);

        bool[] wide = AnchorGenerator.ValidFlags(levels, 224, 288);
        bool[] tall = AnchorGenerator.ValidFlags(levels, 352, 192);
        Assert.Equal(AnchorGenerator.AnchorCount(levels), wide.Length);

        // The second image: P3 columns x < 24 of 36 valid, every row.
        AssertLevel(tall, levels, 0, (y, x) => x < 24);
        // The first image: P7 rows y < 2 of 3 valid, every column.
        AssertLevel(wide, levels, 4, (y, x) => y < 2);
        // The other levels by the formula: valid_h = min(ceil(pad_h / s), feat_h), likewise w.
        int[] strides = [8, 16, 32, 64, 128];
        for (int l = 0; l < 5; l++)
        {
            int s = strides[l];
            AssertLevel(wide, levels, l, (y, x) => y < Math.Min((224 + s - 1) / s, levels[l].Height) && x < Math.Min((288 + s - 1) / s, levels[l].Width));
            AssertLevel(tall, levels, l, (y, x) => y < Math.Min((352 + s - 1) / s, levels[l].Height) && x < Math.Min((192 + s - 1) / s, levels[l].Width));
        }
        // P4 of the second image: ceil(192 / 16) = 12 of 18 columns; P6: ceil(192 / 64) = 3 of 5.
        Assert.Equal(12, CountValidColumns(tall, levels, 1));
        Assert.Equal(3, CountValidColumns(tall, levels, 3));
    }

    [Fact]
    public void ValidFlags_ImageFillingTheBatch_AreAllTrue()
    {
        FeatureSize[] levels = AnchorGenerator.FeatureSizes(BatchHeight, BatchWidth);
        Assert.All(AnchorGenerator.ValidFlags(levels, BatchHeight, BatchWidth), Assert.True);
    }

    [Fact]
    public void Build_WithValidFlags_AssignsOverValidAnchorsOnlyAndZeroesTheOthers()
    {
        FeatureSize[] levels = AnchorGenerator.FeatureSizes(BatchHeight, BatchWidth);
        float[] anchors = AnchorGenerator.AllAnchors(levels);
        int[] counts = [.. levels.Select(f => f.Height * f.Width * 9)];
        bool[] wide = AnchorGenerator.ValidFlags(levels, 224, 288);
        bool[] tall = AnchorGenerator.ValidFlags(levels, 352, 192);
        // Image 1 (352x170): a box whose best anchors over the whole batch lie right of x = 192.
        float[][] boxes = [[20, 30, 120, 150], [150, 100, 260, 300]];
        int[][] labels = [[3], [41]];

        RetinaTargets masked = RetinaTargets.Build(anchors, counts, boxes, labels, validFlagsPerImage: [wide, tall]);
        RetinaTargets unmasked = RetinaTargets.Build(anchors, counts, boxes, labels);

        var assigner = new MaxIoUAssigner();
        bool[][] flags = [wide, tall];
        for (int n = 0; n < 2; n++)
        {
            ImageTargets image = masked.Images[n];
            int[] expectedValid = assigner.Assign(Compact(anchors, flags[n]), boxes[n]);
            int v = 0, negatives = 0, positives = 0;
            for (int i = 0; i < flags[n].Length; i++)
            {
                if (flags[n][i])
                {
                    Assert.Equal(expectedValid[v++], image.AssignedGt[i]);
                    if (image.AssignedGt[i] == 0) negatives++;
                    if (image.AssignedGt[i] > 0) positives++;
                    continue;
                }
                Assert.Equal(MaxIoUAssigner.Ignored, image.AssignedGt[i]);
                Assert.Equal(80, image.Labels[i]);
                Assert.Equal(0f, image.LabelWeights[i]);
                for (int k = 0; k < 4; k++)
                {
                    Assert.Equal(0f, image.BoxWeights[i * 4 + k]);
                    Assert.Equal(0f, image.BoxTargets[i * 4 + k]);
                }
            }
            Assert.Equal(negatives, image.NumNegatives);
            Assert.Equal(positives, image.NumPositives);
            Assert.True(positives > 0, $"image {n} should keep positives among its valid anchors");
        }

        // The masking matters for this scene: without it image 1 has positives on invalid anchors.
        int[] free = unmasked.Images[1].AssignedGt;
        Assert.Contains(Enumerable.Range(0, tall.Length), i => !tall[i] && free[i] > 0);

        // The level layout marks invalid anchors -1 (label weight 0), so no loss counts them.
        LevelTargets p3 = masked.Levels[0];
        int cells = levels[0].Height * levels[0].Width;
        for (int a = 0; a < 9; a++)
            for (int cell = 0; cell < cells; cell++)
                if (cell % levels[0].Width >= 24)
                    Assert.Equal(-1, p3.LabelCodes[(1 * 9 + a) * cells + cell]);
        Assert.Equal(masked.Images.Sum(i => i.NumPositives + i.NumNegatives), masked.Levels.Sum(l => l.NumValid));
    }

    [Fact]
    public void Build_WithAllValidFlags_EqualsBuildWithoutFlags()
    {
        FeatureSize[] levels = AnchorGenerator.FeatureSizes(64, 96);
        float[] anchors = AnchorGenerator.AllAnchors(levels);
        int[] counts = [.. levels.Select(f => f.Height * f.Width * 9)];
        bool[] all = AnchorGenerator.ValidFlags(levels, 64, 96);
        RetinaTargets a = RetinaTargets.Build(anchors, counts, [[4, 6, 40, 50]], [[5]], validFlagsPerImage: [all]);
        RetinaTargets b = RetinaTargets.Build(anchors, counts, [[4, 6, 40, 50]], [[5]]);
        Assert.Equal(b.Images[0].AssignedGt, a.Images[0].AssignedGt);
        Assert.Equal(b.Images[0].BoxTargets, a.Images[0].BoxTargets);
        Assert.Equal(b.Levels[0].LabelCodes, a.Levels[0].LabelCodes);
    }

    [Fact]
    public void Build_RejectsValidFlagsOfTheWrongShape()
    {
        float[] anchors = new float[9 * 4];
        var e = Assert.Throws<ArgumentException>(() => RetinaTargets.Build(anchors, [9], [[0, 0, 4, 4]], [[1]], validFlagsPerImage: [new bool[8]]));
        Assert.Contains("validFlagsPerImage[0] has 8 flags for 9 anchors", e.Message);
        e = Assert.Throws<ArgumentException>(() => RetinaTargets.Build(anchors, [9], [[0, 0, 4, 4]], [[1]], validFlagsPerImage: []));
        Assert.Contains("validFlagsPerImage has 0 images", e.Message);
    }

    private static float[] Compact(float[] anchors, bool[] flags)
    {
        var kept = new List<float>();
        for (int i = 0; i < flags.Length; i++)
            if (flags[i]) kept.AddRange(anchors.AsSpan(i * 4, 4).ToArray());
        return [.. kept];
    }

    private static void AssertLevel(bool[] flags, FeatureSize[] levels, int level, Func<int, int, bool> expected)
    {
        int offset = 0;
        for (int l = 0; l < level; l++) offset += levels[l].Height * levels[l].Width * 9;
        for (int y = 0; y < levels[level].Height; y++)
            for (int x = 0; x < levels[level].Width; x++)
                for (int a = 0; a < 9; a++)
                    Assert.True(expected(y, x) == flags[offset + (y * levels[level].Width + x) * 9 + a], $"level {level} cell ({y}, {x}) anchor {a}");
    }

    private static int CountValidColumns(bool[] flags, FeatureSize[] levels, int level)
    {
        int offset = 0;
        for (int l = 0; l < level; l++) offset += levels[l].Height * levels[l].Width * 9;
        int columns = 0;
        for (int x = 0; x < levels[level].Width; x++)
            if (flags[offset + x * 9]) columns++;
        return columns;
    }
}
