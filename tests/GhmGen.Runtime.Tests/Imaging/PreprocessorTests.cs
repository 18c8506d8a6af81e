using GhmGen.Imaging;

namespace GhmGen.Runtime.Tests.Imaging;

public class PreprocessorTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Run_MatchesMmcvPipeline(int caseIndex)
    {
        var item = ImagingFixtures.Manifest("preprocess")[caseIndex];
        RgbImage image = ImageDecoder.Decode(ImagingFixtures.PathOf(item.GetProperty("input").GetString()!));
        var options = new PreprocessOptions(item.GetProperty("long_edge").GetInt32(), item.GetProperty("short_edge").GetInt32());

        PreprocessedImage result = Preprocessor.Run(image, options);

        Assert.Equal(item.GetProperty("resized_width").GetInt32(), result.ResizedWidth);
        Assert.Equal(item.GetProperty("resized_height").GetInt32(), result.ResizedHeight);
        Assert.Equal(item.GetProperty("padded_width").GetInt32(), result.PaddedWidth);
        Assert.Equal(item.GetProperty("padded_height").GetInt32(), result.PaddedHeight);
        Assert.Equal((float)item.GetProperty("scale_x").GetDouble(), result.ScaleX);
        Assert.Equal((float)item.GetProperty("scale_y").GetDouble(), result.ScaleY);
        Assert.Equal(image.Width, result.OriginalWidth);
        Assert.Equal(image.Height, result.OriginalHeight);
        float[] expected = ImagingFixtures.Floats(item.GetProperty("expected").GetString()!);
        Assert.Equal(expected.Length, result.Tensor.Length);
        // Bitwise: mmcv's float32 subtract of the mean, then OpenCV's double multiply by 1/std.
        int differing = 0;
        float maxError = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(result.Tensor[i])) differing++;
            maxError = Math.Max(maxError, Math.Abs(expected[i] - result.Tensor[i]));
        }
        Assert.True(differing == 0, $"{differing} of {expected.Length} values differ from mmcv's (max |difference| {maxError})");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void RunInto_ADirtyLargerBuffer_EqualsRun(int caseIndex)
    {
        var item = ImagingFixtures.Manifest("preprocess")[caseIndex];
        RgbImage image = ImageDecoder.Decode(ImagingFixtures.PathOf(item.GetProperty("input").GetString()!));
        var options = new PreprocessOptions(item.GetProperty("long_edge").GetInt32(), item.GetProperty("short_edge").GetInt32());
        PreprocessedImage expected = Preprocessor.Run(image, options);
        Assert.Equal((expected.PaddedHeight, expected.PaddedWidth), Preprocessor.PaddedSize(image, options));

        // A reused buffer holds whatever the last image left, padding included, and may be larger.
        float[] buffer = new float[expected.Tensor.Length + 7];
        buffer.AsSpan().Fill(float.NaN);
        PreprocessedImage got = Preprocessor.RunInto(image, buffer, options);
        Assert.Equal(expected with { Tensor = [] }, got with { Tensor = [] });
        Assert.Empty(got.Tensor);
        Assert.Equal(expected.Tensor, buffer.AsSpan(0, expected.Tensor.Length).ToArray());
        Assert.True(float.IsNaN(buffer[^1]), "RunInto wrote past the tensor");

        ArgumentException e = Assert.Throws<ArgumentException>(() => Preprocessor.RunInto(image, new float[expected.Tensor.Length - 1], options));
        Assert.Contains($"needs {expected.Tensor.Length} floats", e.Message);
    }

    [Fact]
    public void Normalize_HandComputedPixelAndZeroPadding()
    {
        // One pixel (255, 0, 100) padded to 2x3: only element (c, 0, 0) of each plane is non-zero.
        var image = new RgbImage(1, 1, [255, 0, 100]);
        float[] tensor = Preprocessor.Normalize(image, 2, 3);
        Assert.Equal(18, tensor.Length);
        Assert.Equal((255 - 123.675) / 58.395, tensor[0], 5);
        Assert.Equal((0 - 116.28) / 57.12, tensor[6], 5);
        Assert.Equal((100 - 103.53) / 57.375, tensor[12], 5);
        for (int i = 0; i < 18; i++)
            if (i % 6 != 0) Assert.Equal(0f, tensor[i]);
    }

    [Fact]
    public void Run_DefaultOptions_PadsTo32AndKeepsScaleFactors()
    {
        var image = new RgbImage(64, 48, new byte[64 * 48 * 3]);
        PreprocessedImage result = Preprocessor.Run(image);
        Assert.Equal((1067, 800), (result.ResizedWidth, result.ResizedHeight));
        Assert.Equal((1088, 800), (result.PaddedWidth, result.PaddedHeight));
        Assert.Equal(3 * 800 * 1088, result.Tensor.Length);
        Assert.Equal((float)(1067.0 / 64), result.ScaleX);
        Assert.Equal((float)(800.0 / 48), result.ScaleY);
    }
}
