using GhmGen.Imaging;

namespace GhmGen.Runtime.Tests.Imaging;

public class ImageDecoderTests
{
    [Theory]
    [InlineData("img53x37")]
    [InlineData("img64x48")]
    [InlineData("img7x5")]
    [InlineData("img1x9")]
    public void DecodePng_GivesTheExactPixelsCv2Wrote(string name)
    {
        RgbImage image = ImageDecoder.Decode(ImagingFixtures.PathOf(name + ".png"));
        byte[] expected = ImagingFixtures.Bytes(name + ".rgb");
        Assert.Equal(expected, image.Rgb);
    }

    [Fact]
    public void DecodeJpeg_IsCloseToLibjpeg()
    {
        // stb_image and libjpeg use different IDCT/upsampling: small differences are expected
        // (measured on this fixture: 354 of 5883 bytes differ, mean 0.078, max 2).
        RgbImage image = ImageDecoder.Decode(ImagingFixtures.PathOf("img53x37.jpg"));
        byte[] libjpeg = ImagingFixtures.Bytes("img53x37_jpg_cv2.rgb");
        Assert.Equal((53, 37), (image.Width, image.Height));
        Assert.Equal(libjpeg.Length, image.Rgb.Length);
        long sum = 0;
        int max = 0;
        for (int i = 0; i < libjpeg.Length; i++)
        {
            int d = Math.Abs(libjpeg[i] - image.Rgb[i]);
            sum += d;
            max = Math.Max(max, d);
        }
        double mean = (double)sum / libjpeg.Length;
        Assert.True(mean < 0.5 && max <= 4, $"stb vs libjpeg: mean |diff| {mean:F3}, max {max}");
    }

    [Fact]
    public void Decode_MissingFile_NamesIt()
    {
        string path = Path.Combine(Path.GetTempPath(), "ghmgen-no-such-image.png");
        var e = Assert.Throws<FileNotFoundException>(() => ImageDecoder.Decode(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Decode_NotAnImage_NamesFileAndProblem()
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode("hello world"u8.ToArray(), "notes.txt"));
        Assert.Contains("notes.txt", e.Message);
        Assert.Contains("neither a JPEG nor a PNG", e.Message);
    }

    [Fact]
    public void Decode_HugeDeclaredPng_IsRefusedBeforeDecoding()
    {
        byte[] png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, .. PngChunk("IHDR", [
            0, 0, 0x4E, 0x20, 0, 0, 0x27, 0x10, // 20000 x 10000 (stb's own limit is 2^30 bytes)
            8, 2, 0, 0, 0]), .. PngChunk("IEND", [])];
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(png, "huge.png"));
        Assert.Contains("huge.png", e.Message);
        Assert.Contains("20000x10000", e.Message);
    }

    [Fact]
    public void Decode_PngWhoseDataInflatesFarBeyondItsSize_IsRefused()
    {
        // 16x16 RGB needs 16 * (1 + 48) = 784 bytes of filtered rows; this IDAT inflates to 10 MB of zeros.
        using var compressed = new MemoryStream();
        using (var zlib = new System.IO.Compression.ZLibStream(compressed, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
            zlib.Write(new byte[10_000_000]);
        byte[] png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A,
            .. PngChunk("IHDR", [0, 0, 0, 16, 0, 0, 0, 16, 8, 2, 0, 0, 0]),
            .. PngChunk("IDAT", compressed.ToArray()), .. PngChunk("IEND", [])];
        Assert.True(png.Length < 20_000);
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(png, "bomb.png"));
        Assert.Contains("bomb.png", e.Message);
        Assert.Contains("inflates to more than", e.Message);
    }

    [Fact]
    public void Decode_HugeDeclaredJpeg_IsRefusedBeforeDecoding()
    {
        byte[] jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 3,
            1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0, 0xFF, 0xD9];
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(jpeg, "huge.jpg"));
        Assert.Contains("huge.jpg", e.Message);
        Assert.Contains("65535x65535", e.Message);
    }

    [Theory]
    [InlineData("img53x37.png", 53, 37)]
    [InlineData("img53x37.jpg", 53, 37)]
    [InlineData("img64x48_progressive.jpg", 64, 48)]
    public void Decode_EveryTruncation_FailsCleanlyOrDecodesToDeclaredSize(string name, int width, int height)
    {
        // A JPEG cut inside its entropy-coded data decodes (stb fills the rest); one cut inside a marker
        // segment is refused (stb_image itself would loop forever on e.g. a cut APP0 segment).
        byte[] data = ImagingFixtures.Bytes(name);
        int failures = 0;
        for (int length = 0; length < data.Length; length++)
        {
            if (TryDecode(data[..length], name, out var image))
                Assert.Equal(width * height * 3, image!.Rgb.Length);
            else
                failures++;
        }
        Assert.True(failures > 0, "no truncation was detected at all");
        // Cut inside the header: must always be refused.
        Assert.False(TryDecode(data[..20], name, out _));
    }

    [Fact]
    public void Decode_JpegCutInsideApp0_IsRefusedNotHung()
    {
        byte[] data = ImagingFixtures.Bytes("img53x37.jpg")[..6]; // FF D8 FF E0 00 10: APP0 of 16 bytes, cut
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(data, "cut.jpg"));
        Assert.Contains("cut.jpg", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Theory]
    [InlineData("img53x37.png")]
    [InlineData("img53x37.jpg")]
    [InlineData("img64x48.png")]
    [InlineData("img64x48_progressive.jpg")]
    public void Decode_RandomByteCorruption_NeverCrashes(string name)
    {
        byte[] original = ImagingFixtures.Bytes(name);
        var random = new Random(1234);
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] data = (byte[])original.Clone();
            int flips = 1 + random.Next(8);
            for (int f = 0; f < flips; f++)
                data[random.Next(data.Length)] ^= (byte)(1 << random.Next(8));
            if (TryDecode(data, name, out var image))
                Assert.Equal((long)image!.Width * image.Height * 3, image.Rgb.LongLength);
        }
    }

    private static bool TryDecode(byte[] data, string name, out RgbImage? image)
    {
        try
        {
            // A corrupted header can declare up to 100 MP; a 1 MP limit keeps the test fast.
            image = ImageDecoder.Decode(data, name, maxPixels: 1_000_000);
            return true;
        }
        catch (InvalidDataException e)
        {
            Assert.Contains(name, e.Message);
            image = null;
            return false;
        }
    }

    private static byte[] PngChunk(string type, byte[] payload)
    {
        var chunk = new byte[12 + payload.Length];
        chunk[0] = (byte)(payload.Length >> 24); chunk[1] = (byte)(payload.Length >> 16);
        chunk[2] = (byte)(payload.Length >> 8); chunk[3] = (byte)payload.Length;
        for (int i = 0; i < 4; i++) chunk[4 + i] = (byte)type[i];
        payload.CopyTo(chunk, 8);
        uint crc = Crc32(chunk.AsSpan(4, 4 + payload.Length));
        chunk[^4] = (byte)(crc >> 24); chunk[^3] = (byte)(crc >> 16); chunk[^2] = (byte)(crc >> 8); chunk[^1] = (byte)crc;
        return chunk;
    }

    private static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }
}
