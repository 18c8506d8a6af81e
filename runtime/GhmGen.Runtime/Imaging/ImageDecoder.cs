// Decodes JPEG and PNG files to 8-bit RGB with StbImageSharp (pure managed, no reflection).
// Untrusted input: the header is read first and images whose declared size exceeds
// MaxPixels are refused before any pixel buffer is allocated; every decoder failure becomes an
// InvalidDataException that names the file. Tests: tests/GhmGen.Runtime.Tests/Imaging/ImageDecoderTests.cs.
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
