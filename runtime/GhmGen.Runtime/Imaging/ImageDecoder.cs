// Decodes JPEG and PNG files to 8-bit RGB with StbImageSharp (pure managed, no reflection).
// Untrusted input: at most MaxFileBytes are read (a stream that does not start with a JPEG or PNG
// signature is refused after its first 8 bytes, so /dev/zero costs nothing); the header is parsed
// here first and images whose declared size exceeds MaxPixels are refused before any pixel buffer
// is allocated; JPEG marker segments are checked (stb loops on some cut ones) and PNG image data
// may not inflate beyond its declared size; every refusal is an InvalidDataException that names
// the file and says what is wrong. A JPEG cut inside its image data still decodes, with a warning.
// Tests: tests/GhmGen.Runtime.Tests/Imaging/ImageDecoderTests.cs.
using StbImageSharp;

namespace GhmGen.Imaging;

/// <summary>Reads JPEG and PNG images into <see cref="RgbImage"/>s.</summary>
public static class ImageDecoder
{
    /// <summary>Largest accepted declared image size, width*height (100 megapixels).</summary>
    public const long MaxPixels = 100_000_000;

    /// <summary>
    /// Largest accepted encoded size in bytes (512 MiB): a 100-megapixel RGBA PNG stored without
    /// compression is about 400 MB. Files and streams are never read beyond it.
    /// </summary>
    public const long MaxFileBytes = 512L * 1024 * 1024;

    /// <summary>Reads and decodes the image file at <paramref name="path"/>.</summary>
    public static RgbImage Decode(string path) => DecodeWithWarnings(path).Image;

    /// <summary>Decodes an in-memory JPEG or PNG; <paramref name="name"/> is used in error messages.</summary>
    public static RgbImage Decode(byte[] data, string name) => DecodeWithWarnings(data, name, MaxPixels).Image;

    /// <summary>Decodes an in-memory JPEG or PNG, refusing images that declare more than <paramref name="maxPixels"/> pixels.</summary>
    public static RgbImage Decode(byte[] data, string name, long maxPixels) => DecodeWithWarnings(data, name, maxPixels).Image;

    /// <summary>
    /// Reads and decodes the image file at <paramref name="path"/>, reading at most
    /// <see cref="MaxFileBytes"/>; also returns what was worked around. Throws
    /// <see cref="FileNotFoundException"/> for a missing file, <see cref="IOException"/> for one
    /// that cannot be read and <see cref="InvalidDataException"/> for one that is not a usable image.
    /// </summary>
    public static DecodedImage DecodeWithWarnings(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            throw new IOException($"image file '{path}' is a folder");
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new FileNotFoundException($"image file '{path}' does not exist", path);
        // Devices and pipes report length 0; the bounded read below covers them.
        if (info.Length > MaxFileBytes)
            throw new InvalidDataException($"image file '{path}' is {info.Length} bytes, more than the {MaxFileBytes}-byte limit");
        byte[] data;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            data = ReadBounded(stream, $"image file '{path}'", MaxFileBytes, info.Length);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"image file '{path}' could not be read: permission denied", e);
        }
        catch (IOException e)
        {
            throw new IOException($"image file '{path}' could not be read: {e.Message}", e);
        }
        return DecodeWithWarnings(data, path, MaxPixels);
    }

    /// <summary>
    /// Reads <paramref name="stream"/> to its end, at most <paramref name="maxBytes"/> bytes (an
    /// endless stream is refused there, and one that does not start like a JPEG or PNG after
    /// 8 bytes), and decodes it; <paramref name="name"/> is used in messages.
    /// </summary>
    public static DecodedImage DecodeWithWarnings(Stream stream, string name, long maxBytes = MaxFileBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        return DecodeWithWarnings(ReadBounded(stream, $"image '{name}'", maxBytes, lengthHint: 0), name, MaxPixels);
    }

    /// <summary>
    /// Decodes an in-memory JPEG or PNG, refusing images that declare more than
    /// <paramref name="maxPixels"/> pixels; also returns what was worked around.
    /// </summary>
    public static DecodedImage DecodeWithWarnings(byte[] data, string name, long maxPixels = MaxPixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(name);
        string format = DetectFormat(data) ?? throw NotAnImage($"image '{name}'");
        var warnings = new List<string>();

        // The header is parsed here, not by stb: stb calls a PNG "corrupt" when it is merely too
        // large for its own 2^30-byte limit, and it cannot say where a file was cut.
        PngLayout? png = null;
        (int Width, int Height) declared;
        if (format == "JPEG")
        {
            JpegLayout jpeg = CheckJpegSegments(data, name);
            if (jpeg.Truncation is not null) warnings.Add($"JPEG image '{name}' is truncated: {jpeg.Truncation}");
            declared = (jpeg.Width, jpeg.Height);
        }
        else
        {
            png = ReadPngLayout(data, name);
            declared = (png.Width, png.Height);
        }
        long pixels = (long)declared.Width * declared.Height;
        if (pixels > maxPixels)
            throw new InvalidDataException(
                $"{format} image '{name}' declares {declared.Width}x{declared.Height} = {pixels} pixels, more than the {maxPixels}-pixel limit");
        if (png is not null)
            CheckPngDecompressedSize(data, name, png);

        ImageInfo? header;
        try
        {
            using var stream = new MemoryStream(data, writable: false);
            header = ImageInfo.FromStream(stream);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (png?.Problem is { } problem)
                throw new InvalidDataException($"PNG image '{name}' {problem}", e);
            throw new InvalidDataException($"{format} image '{name}' has a header the decoder cannot read ({DecoderReason(e)})", e);
        }
        if (header is not { } h || h.Width != declared.Width || h.Height != declared.Height)
            throw new InvalidDataException(png?.Problem is { } problem
                ? $"PNG image '{name}' {problem}"
                : $"{format} image '{name}' has a header the decoder cannot read (it declares {declared.Width}x{declared.Height})");

        ImageResult? result;
        try
        {
            result = ImageResult.FromMemory(data, ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (png?.Problem is { } problem)
                throw new InvalidDataException($"PNG image '{name}' {problem}", e);
            throw new InvalidDataException($"{format} image '{name}' could not be decoded: {DecoderReason(e)}", e);
        }
        if (result is null || result.Data is null)
            throw new InvalidDataException($"{format} image '{name}' could not be decoded: the decoder returned no pixels");
        if (result.Width != h.Width || result.Height != h.Height || result.Data.LongLength != pixels * 3)
            throw new InvalidDataException(
                $"{format} image '{name}' decoded to {result.Width}x{result.Height} ({result.Data.LongLength} bytes), not the declared {h.Width}x{h.Height}");
        if (png?.Problem is { } repaired)
            warnings.Add($"PNG image '{name}' {repaired}; it was decoded anyway");
        return new DecodedImage(new RgbImage(result.Width, result.Height, result.Data), warnings);
    }

    /// <summary>
    /// Reads a stream to its end into one array, never more than <paramref name="maxBytes"/>
    /// bytes; refuses after 8 bytes that are not a JPEG or PNG signature.
    /// </summary>
    private static byte[] ReadBounded(Stream stream, string what, long maxBytes, long lengthHint)
    {
        if (maxBytes < 1 || maxBytes >= Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxBytes), $"byte limit must be between 1 and {Array.MaxLength - 1}, got {maxBytes}");
        const int SignatureLength = 8;
        var buffer = new byte[(int)Math.Min(Math.Max(lengthHint + 1, 64 * 1024), maxBytes + 1)];
        int total = 0;
        bool signatureChecked = false;
        while (true)
        {
            if (total == buffer.Length)
            {
                if (total > maxBytes)
                    throw new InvalidDataException($"{what} is larger than the {maxBytes}-byte limit (reading stopped there)");
                Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, maxBytes + 1));
            }
            int read = stream.Read(buffer, total, buffer.Length - total);
            if (read == 0) break;
            total += read;
            if (!signatureChecked && total >= SignatureLength)
            {
                signatureChecked = true;
                if (DetectFormat(buffer.AsSpan(0, SignatureLength)) is null) throw NotAnImage(what);
            }
        }
        if (total > maxBytes)
            throw new InvalidDataException($"{what} is larger than the {maxBytes}-byte limit (reading stopped there)");
        Array.Resize(ref buffer, total);
        return buffer;
    }

    private static InvalidDataException NotAnImage(string what) =>
        new($"{what} is neither a JPEG nor a PNG file (unrecognised signature)");

    /// <summary>
    /// stb's reason for a failure, when it is one: StbImageSharp 2.30.16 throws blank or garbled
    /// messages for some errors (a chunk type padded with spaces), which say nothing.
    /// </summary>
    private static string DecoderReason(Exception e)
    {
        string reason = e.Message.Trim();
        bool readable = reason.Length >= 5 && reason.All(c => char.IsAsciiLetterOrDigit(c) || c is ' ' or '-' or '\'' or ',');
        return readable ? $"corrupt image data (the decoder says: {reason})" : "corrupt image data";
    }

    /// <summary>A JPEG's frame size and, when the file ends inside its image data, where.</summary>
    private readonly record struct JpegLayout(int Width, int Height, string? Truncation);

    // stb_image (StbImageSharp 2.30.16) loops forever on some JPEGs whose marker segments are cut
    // short (e.g. a file truncated inside APP0), so the segment structure is checked first: every
    // length-prefixed segment must lie inside the data and a frame header (SOFn) and a scan (SOS)
    // must appear. A file that ends inside entropy-coded data is left to stb (it decodes what is
    // there and fills in the rest), and reported as truncated.
    private static JpegLayout CheckJpegSegments(ReadOnlySpan<byte> data, string name)
    {
        int position = 2;
        int width = 0, height = 0;
        bool sawFrame = false, sawScan = false;
        while (true)
        {
            if (position >= data.Length)
            {
                if (sawScan) return new(width, height, TruncatedInImageData(data.Length));
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
                if (sawScan) return new(width, height, TruncatedInImageData(data.Length));
                throw new InvalidDataException($"JPEG image '{name}' is truncated inside the marker at byte {markerAt}");
            }
            byte marker = data[position++];
            if (marker == 0xD9) // EOI
            {
                if (!sawScan)
                    throw new InvalidDataException($"JPEG image '{name}' ends (EOI at byte {markerAt}) before any image data");
                return new(width, height, null);
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
            if (isFrame && !sawFrame)
            {
                // SOFn: length (2), precision (1), height (2), width (2), components (1), ...
                if (length < 8)
                    throw new InvalidDataException($"JPEG image '{name}' has a corrupt frame header: 0xFF{marker:X2} at byte {markerAt} is {length} bytes long");
                height = (data[position + 3] << 8) | data[position + 4];
                width = (data[position + 5] << 8) | data[position + 6];
                if (width == 0)
                    throw new InvalidDataException($"JPEG image '{name}' declares a width of 0 in its frame header");
                if (height == 0)
                    throw new InvalidDataException(
                        $"JPEG image '{name}' declares a height of 0 (to be given later by a DNL marker), which is not supported");
                sawFrame = true;
            }
            if (marker == 0xDA)
            {
                if (!sawFrame)
                    throw new InvalidDataException($"JPEG image '{name}' has a scan (SOS at byte {markerAt}) before any frame header");
                sawScan = true;
            }
            position += length;
        }
    }

    private static string TruncatedInImageData(int length) =>
        $"its data ends at byte {length} without an end-of-image marker; it was decoded, but the picture past the cut is filler, not image content";

    /// <summary>
    /// A PNG's header fields, its IDAT chunks, and the first structural problem: where the file
    /// was cut, or a chunk stb will refuse. Null <see cref="Problem"/> for a well-formed file.
    /// </summary>
    private sealed record PngLayout(int Width, int Height, int BitDepth, int ColorType, List<(int Offset, int Length)> ImageData, string? Problem);

    private const int PngSignatureLength = 8;

    // stb says "corrupt" (or nothing at all) where the real problem is a size beyond its own
    // 2^30-byte limit, a cut file or an unknown chunk, so the header and chunk list are read here.
    private static PngLayout ReadPngLayout(byte[] data, string name)
    {
        const int headerEnd = PngSignatureLength + 8 + 13 + 4; // signature, IHDR length+type, 13 bytes, CRC
        if (data.Length < headerEnd)
            throw new InvalidDataException($"PNG image '{name}' is truncated: it ends at byte {data.Length}, inside its header");
        if (ReadBigEndian(data, PngSignatureLength + 4) != 0x49484452 || ReadBigEndian(data, PngSignatureLength) != 13) // "IHDR"
            throw new InvalidDataException($"PNG image '{name}' has a corrupt header: it does not start with a 13-byte IHDR chunk");
        uint width = ReadBigEndian(data, PngSignatureLength + 8), height = ReadBigEndian(data, PngSignatureLength + 12);
        int bitDepth = data[PngSignatureLength + 16], colorType = data[PngSignatureLength + 17];
        int compression = data[PngSignatureLength + 18], filter = data[PngSignatureLength + 19], interlace = data[PngSignatureLength + 20];
        if (width == 0 || height == 0 || width > int.MaxValue || height > int.MaxValue)
            throw new InvalidDataException($"PNG image '{name}' declares a size of {width}x{height}, which PNG does not allow");
        bool depthFits = colorType switch
        {
            0 => bitDepth is 1 or 2 or 4 or 8 or 16,
            3 => bitDepth is 1 or 2 or 4 or 8,
            2 or 4 or 6 => bitDepth is 8 or 16,
            _ => false,
        };
        if (!depthFits)
            throw new InvalidDataException($"PNG image '{name}' has a corrupt header: bit depth {bitDepth} with color type {colorType} is not a PNG format");
        if (compression != 0 || filter != 0 || interlace > 1)
            throw new InvalidDataException(
                $"PNG image '{name}' has a corrupt header: compression {compression}, filter {filter}, interlace {interlace} (PNG knows 0, 0, 0 or 1)");

        var imageData = new List<(int Offset, int Length)>();
        string? problem = null;
        bool sawEnd = false;
        int position = PngSignatureLength;
        while (problem is null && !sawEnd)
        {
            if (position + 8 > data.Length)
            {
                problem = position == data.Length
                    ? $"is truncated: it ends at byte {position}, before its IEND chunk"
                    : $"is truncated: it ends at byte {data.Length}, inside the chunk header at byte {position}";
                break;
            }
            uint length = ReadBigEndian(data, position);
            string type = ChunkType(data, position + 4);
            if (length > int.MaxValue)
                problem = $"is corrupt: chunk '{type}' at byte {position} declares {length} bytes, more than PNG allows";
            else if (length > data.Length - position - 12L)
                problem = $"is truncated: it ends at byte {data.Length}, inside its '{type}' chunk at byte {position} (which declares {length} bytes)";
            else if (!type.All(char.IsAsciiLetter))
                problem = $"is corrupt: the chunk at byte {position} has an invalid type";
            else if (char.IsAsciiLetterUpper(type[0]) && type is not ("IHDR" or "PLTE" or "IDAT" or "IEND" or "CgBI"))
                problem = $"has an unknown critical chunk '{type}' at byte {position}";
            else
            {
                if (type == "IDAT") imageData.Add((position + 8, (int)length));
                sawEnd = type == "IEND";
                position += 12 + (int)length;
            }
        }
        if (problem is null && imageData.Count == 0)
            problem = "has no image data (no IDAT chunk)";
        return new PngLayout((int)width, (int)height, bitDepth, colorType, imageData, problem);
    }

    private static string ChunkType(byte[] data, int offset)
    {
        Span<char> type = stackalloc char[4];
        for (int i = 0; i < 4; i++)
        {
            byte b = data[offset + i];
            type[i] = b is >= 0x20 and < 0x7F ? (char)b : '?';
        }
        return new string(type);
    }

    // stb_image grows its zlib output buffer without a limit, so a small PNG whose image data
    // inflates far beyond its declared size (a "zlib bomb") could allocate gigabytes. The IDAT data is
    // inflated once here, counting bytes, and refused as soon as it exceeds what the header allows.
    // Malformed zlib data is left to stb, which reports it.
    private static void CheckPngDecompressedSize(byte[] data, string name, PngLayout png)
    {
        int channels = png.ColorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        long rowBytes = ((long)png.Width * channels * png.BitDepth + 7) / 8;
        // Adam7 interlacing adds at most one filter byte and one partial byte per row of each of 7 passes.
        long allowed = png.Height * (rowBytes + 1) + 14L * png.Height + 64;
        if (png.ImageData.Count == 0)
            return;

        using var compressed = new MemoryStream();
        foreach (var (offset, length) in png.ImageData) compressed.Write(data, offset, length);
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
                        $"PNG image '{name}' inflates to more than {allowed} bytes, more than its declared {png.Width}x{png.Height} pixels need");
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
