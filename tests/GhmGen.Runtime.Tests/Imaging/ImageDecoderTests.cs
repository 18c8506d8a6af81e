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

    [Fact]
    public void DecodeWithWarnings_CleanFiles_HaveNoWarnings()
    {
        foreach (string name in new[] { "img53x37.jpg", "img64x48_progressive.jpg", "img53x37.png" })
        {
            DecodedImage decoded = ImageDecoder.DecodeWithWarnings(ImagingFixtures.PathOf(name));
            Assert.Empty(decoded.Warnings);
            Assert.Equal(ImageDecoder.Decode(ImagingFixtures.PathOf(name)).Rgb, decoded.Image.Rgb);
        }
    }

    [Theory]
    [InlineData("img53x37.jpg", 53, 37)]
    [InlineData("img64x48_progressive.jpg", 64, 48)]
    public void JpegCutInsideItsImageData_DecodesWithATruncationWarning(string name, int width, int height)
    {
        byte[] data = ImagingFixtures.Bytes(name);
        int scanStart = LastScanHeaderEnd(data);
        int decodedCuts = 0;
        // Every cut between the last scan's header and the end-of-image marker (the final 2 bytes).
        for (int length = scanStart + 1; length < data.Length - 1; length++)
        {
            DecodedImage decoded;
            try
            {
                decoded = ImageDecoder.DecodeWithWarnings(data[..length], "cut.jpg");
            }
            catch (InvalidDataException e)
            {
                // Progressive files may be refused when cut inside a later segment, with a reason.
                Assert.Contains("cut.jpg", e.Message);
                continue;
            }
            decodedCuts++;
            Assert.Equal((width, height), (decoded.Image.Width, decoded.Image.Height));
            string warning = Assert.Single(decoded.Warnings);
            Assert.Contains("JPEG image 'cut.jpg' is truncated", warning);
            Assert.Contains($"ends at byte {length}", warning);
        }
        Assert.True(decodedCuts > 0);
    }

    [Fact]
    public void EndlessStream_IsRefusedAtTheByteLimit()
    {
        // A PNG signature, then zeros forever: only the byte limit stops it.
        using var endless = new EndlessStream([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        const long limit = 1 << 20;
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.DecodeWithWarnings(endless, "endless.png", maxBytes: limit));
        Assert.Contains("image 'endless.png' is larger than the 1048576-byte limit", e.Message);
        Assert.InRange(endless.BytesRead, limit, limit + 1);
    }

    [Fact]
    public void EndlessStreamOfZeros_IsRefusedAfterItsFirstBytes()
    {
        using var zeros = new EndlessStream([]);
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.DecodeWithWarnings(zeros, "zeros"));
        Assert.Contains("image 'zeros' is neither a JPEG nor a PNG file", e.Message);
        Assert.True(zeros.BytesRead <= 64 * 1024, $"read {zeros.BytesRead} bytes");
    }

    [Fact]
    public void DevZero_IsRefusedNotReadToTheArrayLimit()
    {
        if (!File.Exists("/dev/zero")) return; // not a Unix machine
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode("/dev/zero"));
        Assert.Contains("image file '/dev/zero' is neither a JPEG nor a PNG file", e.Message);
    }

    [Fact]
    public void DecodeFromStream_ReadsAWholeImage()
    {
        using var stream = new MemoryStream(ImagingFixtures.Bytes("img53x37.png"));
        DecodedImage decoded = ImageDecoder.DecodeWithWarnings(stream, "img53x37.png");
        Assert.Equal(ImagingFixtures.Bytes("img53x37.rgb"), decoded.Image.Rgb);
        Assert.Empty(decoded.Warnings);
    }

    [Fact]
    public void TruncatedPng_SaysWhereItWasCut()
    {
        byte[] data = ImagingFixtures.Bytes("img53x37.png");
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(data[..(data.Length / 2)], "cut.png"));
        Assert.Equal($"PNG image 'cut.png' is truncated: it ends at byte {data.Length / 2}, inside its 'IDAT' chunk at byte 33 (which declares 5534 bytes)", e.Message);
    }

    [Fact]
    public void EveryPngRefusal_SaysWhatIsWrong()
    {
        // stb's own messages for these are blank or a chunk type padded with spaces.
        byte[] data = ImagingFixtures.Bytes("img53x37.png");
        for (int length = 8; length < data.Length; length++)
        {
            if (!TryDecode(data[..length], "cut.png", out _, out string? message))
            {
                Assert.DoesNotMatch(@":\s*$", message!);
                Assert.DoesNotContain("  ", message!);
                Assert.Contains("truncated", message!);
            }
        }
    }

    [Theory]
    [InlineData(100_000, 100_000)]
    [InlineData(12_000, 12_000)]
    [InlineData(2_000_000_000, 1)]
    public void PngDeclaringTooManyPixels_GetsThePixelLimitMessage(int width, int height)
    {
        byte[] png = PngWithHeader(width, height, bitDepth: 8, colorType: 2);
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(png, "huge.png"));
        Assert.Equal($"PNG image 'huge.png' declares {width}x{height} = {(long)width * height} pixels, more than the 100000000-pixel limit", e.Message);
    }

    [Fact]
    public void PngWithAnImpossibleHeader_SaysWhichField()
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(PngWithHeader(16, 16, bitDepth: 3, colorType: 2), "odd.png"));
        Assert.Equal("PNG image 'odd.png' has a corrupt header: bit depth 3 with color type 2 is not a PNG format", e.Message);
        e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(PngWithHeader(0, 16, bitDepth: 8, colorType: 2), "empty.png"));
        Assert.Equal("PNG image 'empty.png' declares a size of 0x16, which PNG does not allow", e.Message);
    }

    [Fact]
    public void PngWithAnUnknownCriticalChunk_NamesIt()
    {
        byte[] original = ImagingFixtures.Bytes("img53x37.png");
        byte[] data = [.. original[..33], .. PngChunk("ABCD", [1, 2, 3]), .. original[33..]];
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(data, "odd.png"));
        Assert.Equal("PNG image 'odd.png' has an unknown critical chunk 'ABCD' at byte 33", e.Message);
    }

    /// <summary>Yields <paramref name="prefix"/>, then zeros without end; counts what was read.</summary>
    private sealed class EndlessStream(byte[] prefix) : Stream
    {
        // Far beyond any limit a test uses: a decoder that ignores its limit fails here instead of
        // running the machine out of memory.
        private const long Cap = 64L << 20;

        public long BytesRead { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => BytesRead; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (BytesRead > Cap) throw new InvalidOperationException($"read more than {Cap} bytes of an endless stream");
            for (int i = 0; i < count; i++)
                buffer[offset + i] = BytesRead + i < prefix.Length ? prefix[BytesRead + i] : (byte)0;
            BytesRead += count;
            return count;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>The offset just past the last SOS segment header (where its entropy-coded data starts).</summary>
    private static int LastScanHeaderEnd(byte[] jpeg)
    {
        int position = 2, last = -1;
        while (position + 4 <= jpeg.Length)
        {
            if (jpeg[position] != 0xFF) { position++; continue; }
            byte marker = jpeg[position + 1];
            if (marker is 0xD8 or 0xD9 or 0x00 or 0xFF or (>= 0xD0 and <= 0xD7)) { position += marker == 0xFF ? 1 : 2; continue; }
            int length = (jpeg[position + 2] << 8) | jpeg[position + 3];
            if (marker == 0xDA) last = position + 2 + length;
            position += 2 + length;
        }
        Assert.True(last > 0, "no scan found");
        return last;
    }

    private static byte[] PngWithHeader(int width, int height, byte bitDepth, byte colorType) =>
        [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, .. PngChunk("IHDR", [
            (byte)(width >> 24), (byte)(width >> 16), (byte)(width >> 8), (byte)width,
            (byte)(height >> 24), (byte)(height >> 16), (byte)(height >> 8), (byte)height,
            bitDepth, colorType, 0, 0, 0]), .. PngChunk("IEND", [])];

    private static bool TryDecode(byte[] data, string name, out RgbImage? image, out string? message)
    {
        try
        {
            image = ImageDecoder.Decode(data, name, maxPixels: 1_000_000);
            message = null;
            return true;
        }
        catch (InvalidDataException e)
        {
            image = null;
            message = e.Message;
            return false;
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
