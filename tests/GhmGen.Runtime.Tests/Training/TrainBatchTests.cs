using GhmGen.Detection;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>Collation to the batch's largest padded size and the per-image valid flags (docs/TRAINING.md).</summary>
public class TrainBatchTests
{
    // docs/TRAINING.md's example: images 224x288 and 352x170 (HxW), own pad shapes 224x288 and 352x192.
    private static (TrainSample Wide, TrainSample Tall) ExampleSamples()
    {
        static CocoImage Entry(int index, int width, int height, float[] boxes) =>
            new(index, index, $"{index}.png", $"/{index}.png", width, height, boxes, [.. Enumerable.Range(0, boxes.Length / 4).Select(i => 7 + i)], []);

        // Scales chosen so that neither image is resized (s = 1).
        TrainSample wide = new TrainPipeline(new TrainPipelineOptions(LongEdge: 288, ShortEdge: 224))
            .Transform(TrainingFixtures.Pattern(288, 224, 1), Entry(0, 288, 224, [20, 30, 120, 150]), flip: false);
        TrainSample tall = new TrainPipeline(new TrainPipelineOptions(LongEdge: 352, ShortEdge: 170))
            .Transform(TrainingFixtures.Pattern(170, 352, 2), Entry(1, 170, 352, [100, 100, 168, 300]), flip: false);
        return (wide, tall);
    }

    [Fact]
    public void Collate_PadsToTheLargestPadShapeAndKeepsEachImagesOwn()
    {
        var (wide, tall) = ExampleSamples();
        Assert.Equal((224, 288), (wide.PadHeight, wide.PadWidth));
        Assert.Equal((352, 192), (tall.PadHeight, tall.PadWidth));

        TrainBatch batch = TrainBatch.Collate(3, 5, [wide, tall]);
        Assert.Equal((3, 5, 2), (batch.Epoch, batch.BatchIndex, batch.Count));
        Assert.Equal((352, 288), (batch.Height, batch.Width));
        Assert.Equal(2 * 3 * 352 * 288, batch.Tensor.Length);
        TrainSample[] samples = [wide, tall];
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 352; y++)
                    for (int x = 0; x < 288; x++)
                    {
                        TrainSample s = samples[n];
                        float expected = y < s.PadHeight && x < s.PadWidth ? s.Tensor[(c * s.PadHeight + y) * s.PadWidth + x] : 0f;
                        float actual = batch.Tensor[((n * 3 + c) * 352 + y) * 288 + x];
                        if (expected != actual) Assert.Fail($"image {n} channel {c} ({y}, {x}): expected {expected}, got {actual}");
                    }
        Assert.Equal(wide.GtBoxes, batch.GtBoxes[0]);
        Assert.Equal([7], batch.GtLabels[1]);
    }

    [Fact]
    public void Collate_ValidFlagsComeFromEachImagesPadShape()
    {
        var (wide, tall) = ExampleSamples();
        TrainBatch batch = TrainBatch.Collate(0, 0, [wide, tall]);
        FeatureSize[] levels = [.. batch.FeatureSizes];
        Assert.Equal(AnchorGenerator.FeatureSizes(352, 288), levels);
        Assert.Equal(AnchorGenerator.ValidFlags(levels, 224, 288), batch.ValidFlags[0]);
        Assert.Equal(AnchorGenerator.ValidFlags(levels, 352, 192), batch.ValidFlags[1]);

        // The second image: P3 columns x < 24 of 36. The first: P7 rows y < 2 of 3.
        Assert.True(batch.ValidFlags[1][(0 * 36 + 23) * 9]);
        Assert.False(batch.ValidFlags[1][(0 * 36 + 24) * 9]);
        int p7 = AnchorGenerator.AnchorCount(levels[..4]);
        Assert.True(batch.ValidFlags[0][p7 + (1 * 3 + 2) * 9 + 8]);
        Assert.False(batch.ValidFlags[0][p7 + (2 * 3 + 0) * 9]);
    }

    [Fact]
    public void Collate_FeedsRetinaTargetsWithoutPositivesInTheBatchPadding()
    {
        var (wide, tall) = ExampleSamples();
        TrainBatch batch = TrainBatch.Collate(0, 0, [wide, tall]);
        FeatureSize[] levels = [.. batch.FeatureSizes];
        float[] anchors = AnchorGenerator.AllAnchors(levels);
        RetinaTargets targets = RetinaTargets.Build(anchors, [.. levels.Select(l => l.Height * l.Width * 9)],
            batch.GtBoxes, batch.GtLabels, validFlagsPerImage: batch.ValidFlags);
        for (int n = 0; n < 2; n++)
        {
            Assert.True(targets.Images[n].NumPositives > 0);
            for (int i = 0; i < batch.ValidFlags[n].Length; i++)
                if (!batch.ValidFlags[n][i]) Assert.Equal(0f, targets.Images[n].LabelWeights[i]);
        }
    }

    [Fact]
    public void Collate_RejectsAnEmptyBatch()
    {
        Assert.Throws<ArgumentException>(() => TrainBatch.Collate(0, 0, []));
    }
}
