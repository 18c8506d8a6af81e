using System.Security.Cryptography;
using GhmGen.Imaging;

namespace GhmGen.Runtime.Tests.Imaging;

public class ResizeTests
{
    public static TheoryData<string, int, int, string> ResizeCases()
    {
        var data = new TheoryData<string, int, int, string>();
        foreach (var item in ImagingFixtures.Manifest("resize").EnumerateArray())
            data.Add(item.GetProperty("input").GetString()!, item.GetProperty("width").GetInt32(),
                item.GetProperty("height").GetInt32(), item.GetProperty("expected").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(ResizeCases))]
    public void Resize_IsByteExactWithOpenCv(string input, int width, int height, string expectedFile)
    {
        RgbImage source = ImageDecoder.Decode(ImagingFixtures.PathOf(input));
        RgbImage resized = BilinearResize.Resize(source, width, height);
        byte[] expected = ImagingFixtures.Bytes(expectedFile);

        Assert.Equal(width, resized.Width);
        Assert.Equal(height, resized.Height);
        Assert.Equal(expected.Length, resized.Rgb.Length);
        int differing = 0, maxDifference = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            int difference = Math.Abs(expected[i] - resized.Rgb[i]);
            if (difference != 0) differing++;
            maxDifference = Math.Max(maxDifference, difference);
        }
        Assert.True(differing == 0, $"{differing} of {expected.Length} bytes differ from cv2.resize, max difference {maxDifference}");
    }

    public static TheoryData<string, int, int, string> KeepRatioCases()
    {
        var data = new TheoryData<string, int, int, string>();
        foreach (var item in ImagingFixtures.Manifest("keep_ratio").EnumerateArray())
            data.Add(item.GetProperty("input").GetString()!, item.GetProperty("width").GetInt32(),
                item.GetProperty("height").GetInt32(), item.GetProperty("sha256").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(KeepRatioCases))]
    public void KeepRatioResizeTo1333x800_MatchesOpenCvHash(string input, int width, int height, string sha256)
    {
        RgbImage source = ImageDecoder.Decode(ImagingFixtures.PathOf(input));
        var size = Preprocessor.KeepRatioSize(source.Width, source.Height);
        Assert.Equal((width, height), size);
        RgbImage resized = BilinearResize.Resize(source, size.Width, size.Height);
        Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(resized.Rgb)));
    }

    [Theory]
    [InlineData(640, 480, 1067, 800)]   // s = 800/480: 1066.67 rounds up
    [InlineData(1920, 1080, 1333, 750)] // s = 1333/1920: long side binds
    [InlineData(480, 640, 800, 1067)]
    [InlineData(2666, 1600, 1333, 800)] // exact halving
    [InlineData(500, 375, 1067, 800)]
    public void KeepRatioSize_FollowsMmcvRounding(int width, int height, int expectedWidth, int expectedHeight)
    {
        Assert.Equal((expectedWidth, expectedHeight), Preprocessor.KeepRatioSize(width, height));
    }

    [Fact]
    public void Resize_ToSameSize_CopiesPixels()
    {
        var source = new RgbImage(2, 1, [1, 2, 3, 4, 5, 6]);
        RgbImage copy = BilinearResize.Resize(source, 2, 1);
        Assert.Equal(source.Rgb, copy.Rgb);
        Assert.NotSame(source.Rgb, copy.Rgb);
    }

    [Fact]
    public void Resize_RejectsEmptyTarget()
    {
        var source = new RgbImage(1, 1, [1, 2, 3]);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BilinearResize.Resize(source, 0, 5));
        Assert.Contains("0x5", e.Message);
    }
}
