using GhmGen.Imaging;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>The training pipeline's resize, flip, normalise and pad against hand-computed values (docs/TRAINING.md).</summary>
public class TrainPipelineTests
{
    private static CocoImage Annotated(int width, int height, float[] boxes, float[]? crowd = null, string path = "/none.png") =>
        new(0, 1, Path.GetFileName(path), path, width, height, boxes, [.. Enumerable.Range(0, boxes.Length / 4)], crowd ?? []);

    [Fact]
    public void RescaleBoxes_MultipliesInFloat32AndClipsToTheResizedImage()
    {
        float[] boxes = TrainPipeline.RescaleBoxes([10, 20, 200, 90, -4, 1, 30, 2], 0.5f, 2f, 80, 150);
        Assert.Equal([5f, 40f, 80f, 150f, 0f, 2f, 15f, 4f], boxes);
    }

    [Fact]
    public void FlipBoxes_MirrorsAboutTheResizedWidth()
    {
        Assert.Equal([0f, 40f, 75f, 150f, 70.5f, 1f, 78f, 2f], TrainPipeline.FlipBoxes([5, 40, 80, 150, 2, 1, 9.5f, 2], 80));
    }

    [Fact]
    public void Transform_640x480_ResizesTo1067x800WithMmcvScaleFactors()
    {
        // s = min(1333 / 640, 800 / 480) = 5/3; new w = int(640 * 5/3 + 0.5) = int(1067.17) = 1067, new h = 800.
        RgbImage image = TrainingFixtures.Pattern(640, 480, 3);
        CocoImage annotations = Annotated(640, 480, [10, 20, 630, 470, 600, 400, 700, 500], crowd: [0, 0, 64, 48]);
        TrainSample sample = new TrainPipeline().Transform(image, annotations, flip: false);

        Assert.Equal((1067, 800), (sample.ImageWidth, sample.ImageHeight));
        Assert.Equal((1088, 800), (sample.PadWidth, sample.PadHeight)); // 1067 -> 34 * 32
        Assert.Equal((640, 480), (sample.OriginalWidth, sample.OriginalHeight));
        float scaleX = (float)(1067.0 / 640), scaleY = (float)(800.0 / 480);
        Assert.Equal(1.6671875f, scaleX);
        Assert.Equal(1.6666666f, scaleY);
        Assert.Equal((scaleX, scaleY), (sample.ScaleX, sample.ScaleY));
        // 10 * 1.6671875 = 16.671875; the second box is clipped at x = 1067 and y = 800.
        Assert.Equal([16.671875f, 20f * scaleY, 630f * scaleX, 470f * scaleY, 600f * scaleX, 400f * scaleY, 1067f, 800f], sample.GtBoxes);
        Assert.Equal([0f, 0f, 64f * scaleX, 48f * scaleY], sample.CrowdBoxes);
        Assert.Equal(3 * 800 * 1088, sample.Tensor.Length);

        // The pixels are Preprocessor's: the same resize and normalisation, padded to 1088 wide.
        RgbImage resized = BilinearResize.Resize(image, 1067, 800);
        Assert.Equal(Preprocessor.Normalize(resized, 800, 1088), sample.Tensor);
    }

    [Fact]
    public void Transform_PortraitImage_FollowsTheShortEdgeRule()
    {
        // 427x640: s = min(1333 / 640, 800 / 427) = 1.87354; w = int(800.5) = 800, h = int(1199.06 + 0.5) = 1199.
        TrainSample sample = new TrainPipeline().Transform(TrainingFixtures.Pattern(427, 640, 1), Annotated(427, 640, []), flip: false);
        Assert.Equal((800, 1199), (sample.ImageWidth, sample.ImageHeight));
        Assert.Equal((800, 1216), (sample.PadWidth, sample.PadHeight));
        Assert.Empty(sample.GtBoxes);
    }

    [Fact]
    public void Transform_Flip_MirrorsPixelsAndBoxes_ThenNormalisesAndPads()
    {
        // 40x30 with scale 40x30: s = 1, no resize; pads to 64x32.
        var pipeline = new TrainPipeline(new TrainPipelineOptions(LongEdge: 40, ShortEdge: 30));
        RgbImage image = TrainingFixtures.Pattern(40, 30, 9);
        CocoImage annotations = Annotated(40, 30, [2, 3, 10, 20], crowd: [0, 0, 40, 5]);
        TrainSample plain = pipeline.Transform(image, annotations, flip: false);
        TrainSample flipped = pipeline.Transform(image, annotations, flip: true);

        Assert.True(flipped.Flipped);
        Assert.Equal((40, 30, 64, 32), (flipped.ImageWidth, flipped.ImageHeight, flipped.PadWidth, flipped.PadHeight));
        Assert.Equal((1f, 1f), (flipped.ScaleX, flipped.ScaleY));
        Assert.Equal([30f, 3f, 38f, 20f], flipped.GtBoxes);
        Assert.Equal([2f, 3f, 10f, 20f], plain.GtBoxes);
        Assert.Equal([0f, 0f, 40f, 5f], flipped.CrowdBoxes);
        Assert.Equal(annotations.GtLabels, flipped.GtLabels);

        float[] mean = [123.675f, 116.28f, 103.53f];
        double[] std = [58.395, 57.12, 57.375];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 64; x++)
                {
                    float value = flipped.Tensor[(c * 32 + y) * 64 + x];
                    if (y >= 30 || x >= 40)
                    {
                        Assert.Equal(0f, value);
                        continue;
                    }
                    byte source = image.Rgb[(y * 40 + (39 - x)) * 3 + c];
                    Assert.Equal((float)((source - mean[c]) * (1.0 / std[c])), value); // mmcv: float32 subtract, double multiply
                    Assert.Equal(plain.Tensor[(c * 32 + y) * 64 + 39 - x], value);
                }
    }

    [Fact]
    public void TryLoad_MissingOrCorruptFile_GivesASkipReasonNamingTheFile()
    {
        using var folder = new TempDataset();
        var pipeline = new TrainPipeline();
        string missing = Path.Combine(folder.Root, "missing.png");
        Assert.Null(pipeline.TryLoad(Annotated(40, 40, [], path: missing), false, out string? reason));
        Assert.Contains(missing, reason);

        string corrupt = Path.Combine(folder.Root, "corrupt.png");
        byte[] png = TrainingFixtures.Png(40, 40, 1);
        File.WriteAllBytes(corrupt, [.. png[..8], .. new byte[64]]); // a PNG signature, then zeros
        Assert.Null(pipeline.TryLoad(Annotated(40, 40, [], path: corrupt), false, out reason));
        Assert.Contains("corrupt.png", reason);

        string good = Path.Combine(folder.Root, "good.png");
        File.WriteAllBytes(good, png);
        TrainSample? sample = pipeline.TryLoad(Annotated(40, 40, [1, 2, 3, 4], path: good), true, out reason);
        Assert.NotNull(sample);
        Assert.Null(reason);
        Assert.Equal((800, 800), (sample.ImageWidth, sample.ImageHeight));
    }
}
