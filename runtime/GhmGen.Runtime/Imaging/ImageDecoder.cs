// Decodes JPEG and PNG files to 8-bit RGB with StbImageSharp (pure managed, no reflection).
// Untrusted input: the header is read first and images whose declared size exceeds
// MaxPixels are refused before any pixel buffer is allocated; JPEG marker segments are checked
// (stb loops on some cut ones) and PNG image data may not inflate beyond its declared size; every
// decoder failure becomes an InvalidDataException that names the file. Tests: tests/GhmGen.Runtime.Tests/Imaging/ImageDecoderTests.cs.
using StbImageSharp;

namespace GhmGen.Imaging;

/// <summary>Reads JPEG and PNG images into <see cref="RgbImage"/>s.</summary>
public static class ImageDecoder
{
    /// <summary>Largest accepted declared image size, width*height (100 megapixels).</summary>
    public const long MaxPixels = 100_000_000;

    /// <summary>Largest accepted file size in bytes (512 MiB).</summary>
    public const long MaxFileBytes = 512L * 1024 * 1024;

    /// <summary>Reads and decodes the image file at <paramref name="path"/>.</summary>
    public static RgbImage Decode(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new FileNotFoundException($"image file '{path}' does not exist", path);
        if (info.Length > MaxFileBytes)
            throw new InvalidDataException($"image file '{path}' is {info.Length} bytes, more than the {MaxFileBytes}-byte limit");
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"image file '{path}' could not be read: {e.Message}", e);
        }
        return Decode(data, path);
    }

    /// <summary>Decodes an in-memory JPEG or PNG; <paramref name="name"/> is used in error messages.</summary>
    public static RgbImage Decode(byte[] data, string name) => Decode(data, name, MaxPixels);

    /// <summary>Decodes an in-memory JPEG or PNG, refusing images that declare more than <paramref name="maxPixels"/> pixels.</summary>
    public static RgbImage Decode(byte[] data, string name, long maxPixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(name);
        string format = DetectFormat(data)
            ?? throw new InvalidDataException($"image '{name}' is neither a JPEG nor a PNG file (unrecognised signature)");

        if (format == "JPEG")
            CheckJpegSegments(data, name);

        ImageInfo? header;
        try
        {
            using var stream = new MemoryStream(data, writable: false);
            header = ImageInfo.FromStream(stream);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"{format} image '{name}' has an unreadable header: {e.Message}", e);
        }
        if (header is not { } h || h.Width <= 0 || h.Height <= 0)
            throw new InvalidDataException($"{format} image '{name}' has an unreadable or corrupt header");
        long pixels = (long)h.Width * h.Height;
        if (pixels > maxPixels)
            throw new InvalidDataException(
                $"{format} image '{name}' declares {h.Width}x{h.Height} = {pixels} pixels, more than the {maxPixels}-pixel limit");
        if (format == "PNG")
            CheckPngDecompressedSize(data, name);

        ImageResult result;
        try
        {
            result = ImageResult.FromMemory(data, ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"{format} image '{name}' could not be decoded: {e.Message}", e);
        }
        if (result is null || result.Data is null)
            throw new InvalidDataException($"{format} image '{name}' could not be decoded");
        if (result.Width != h.Width || result.Height != h.Height || result.Data.LongLength != pixels * 3)
            throw new InvalidDataException(
                $"{format} image '{name}' decoded to {result.Width}x{result.Height} ({result.Data.LongLength} bytes), not the declared {h.Width}x{h.Height}");
        return new RgbImage(result.Width, result.Height, result.Data);
    }

    // stb_image (StbImageSharp 2.30.16) loops forever on some JPEGs whose marker segments are cut
    // short (e.g. a file truncated inside APP0), so the segment structure is checked first: every
    // length-prefixed segment must lie inside the data and a frame header (SOFn) and a scan (SOS)
    // must appear. A file that ends inside entropy-coded data is left to stb (it decodes what is there).
    private static void CheckJpegSegments(ReadOnlySpan<byte> data, string name)
    {
        int position = 2;
        bool sawFrame = false, sawScan = false;
        while (true)
        {
            if (position >= data.Length)
            {
                if (sawScan) return;
                throw new InvalidDataException($"JPEG image '{name}' is truncated: it ends at byte {position} before its image data");
            }
            if (data[position] != 0xFF)
            {
                if (!sawScan)
                    throw new InvalidDataException($"JPEG image '{name}' is corrupt: expected a marker at byte {position}, found 0x{data[position]:X2}");
                // Entropy-coded data: skip to the next marker (0xFF not followed by 0x00 or a restart marker).
                while (position < data.Length)
                {
                    if (data[position] == 0xFF && position + 1 < data.Length && data[position + 1] != 0x00
                        && (data[position + 1] < 0xD0 || data[position + 1] > 0xD7) && data[position + 1] != 0xFF)
                        break;
                    position++;
                }
                continue;
            }
            int markerAt = position;
            while (position < data.Length && data[position] == 0xFF) position++;
            if (position >= data.Length)
            {
                if (sawScan) return;
                throw new InvalidDataException($"JPEG image '{name}' is truncated inside the marker at byte {markerAt}");
            }
            byte marker = data[position++];
            if (marker == 0xD9) // EOI
            {
                if (!sawScan)
                    throw new InvalidDataException($"JPEG image '{name}' ends (EOI at byte {markerAt}) before any image data");
                return;
            }
            if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x00)
                continue; // standalone markers carry no length
            if (position + 2 > data.Length)
                throw new InvalidDataException($"JPEG image '{name}' is truncated in the length of segment 0xFF{marker:X2} at byte {markerAt}");
            int length = (data[position] << 8) | data[position + 1];
            if (length < 2 || position + length > data.Length)
                throw new InvalidDataException(
                    $"JPEG image '{name}' is truncated or corrupt: segment 0xFF{marker:X2} at byte {markerAt} declares {length} bytes, {data.Length - position} remain");
            bool isFrame = marker is >= 0xC0 and <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
            if (isFrame) sawFrame = true;
            if (marker == 0xDA)
            {
                if (!sawFrame)
                    throw new InvalidDataException($"JPEG image '{name}' has a scan (SOS at byte {markerAt}) before any frame header");
                sawScan = true;
            }
            position += length;
        }
    }

    // stb_image grows its zlib output buffer without a limit, so a small PNG whose image data
    // inflates far beyond its declared size (a "zlib bomb") could allocate gigabytes. The IDAT data is
    // inflated once here, counting bytes, and refused as soon as it exceeds what the header allows.
    // Malformed chunks or zlib data are left to stb, which reports them.
    private static void CheckPngDecompressedSize(byte[] data, string name)
    {
        const int signatureLength = 8;
        if (data.Length < signatureLength + 8 + 13 || ReadBigEndian(data, signatureLength + 4) != 0x49484452) // "IHDR"
            return;
        long width = ReadBigEndian(data, signatureLength + 8), height = ReadBigEndian(data, signatureLength + 12);
        int bitDepth = data[signatureLength + 16], colorType = data[signatureLength + 17];
        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => 4 };
        long rowBytes = (width * channels * Math.Max(bitDepth, 1) + 7) / 8;
        // Adam7 interlacing adds at most one filter byte and one partial byte per row of each of 7 passes.
        long allowed = height * (rowBytes + 1) + 14 * height + 64;

        var idat = new List<(int Offset, int Length)>();
        int position = signatureLength;
        while (position + 12 <= data.Length)
        {
            uint length = ReadBigEndian(data, position);
            uint type = ReadBigEndian(data, position + 4);
            if (length > data.Length - position - 12)
                break;
            if (type == 0x49444154) // "IDAT"
                idat.Add((position + 8, (int)length));
            position += 12 + (int)length;
        }
        if (idat.Count == 0)
            return;

        using var compressed = new MemoryStream();
        foreach (var (offset, length) in idat) compressed.Write(data, offset, length);
        compressed.Position = 0;
        var scratch = new byte[64 * 1024];
        long total = 0;
        try
        {
            using var inflater = new System.IO.Compression.ZLibStream(compressed, System.IO.Compression.CompressionMode.Decompress);
            int read;
            while ((read = inflater.Read(scratch, 0, scratch.Length)) > 0)
            {
                total += read;
                if (total > allowed)
                    throw new InvalidDataException(
                        $"PNG image '{name}' inflates to more than {allowed} bytes, more than its declared {width}x{height} pixels need");
            }
        }
        catch (InvalidDataException) when (total <= allowed)
        {
            // Corrupt zlib data: stb reports it when it decodes.
        }
    }

    private static uint ReadBigEndian(byte[] data, int offset) =>
        (uint)(data[offset] << 24 | data[offset + 1] << 16 | data[offset + 2] << 8 | data[offset + 3]);

    private static string? DetectFormat(ReadOnlySpan<byte> data)
    {
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
            return "JPEG";
        ReadOnlySpan<byte> pngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (data.StartsWith(pngSignature))
            return "PNG";
        return null;
    }
}
