// Shared pieces of the two COCO loaders: reading a file whole under a size limit, the reader
// options (depth limit, no comments or trailing commas, like Python's json), and typed reads of the
// few value kinds the files use (integer ids, finite numbers, [x, y, w, h] boxes).
using System.Text.Json;

namespace GhmGen.Evaluation;

/// <summary>File reading and typed JSON value reads shared by <see cref="CocoGroundTruth"/> and <see cref="CocoResults"/>.</summary>
internal static class CocoJson
{
    /// <summary>Largest file read, in bytes (2,000,000,000; COCO val2017's instances file is ~25 MB).</summary>
    public const long MaxFileBytes = 2_000_000_000;

    /// <summary>Nesting deeper than this is refused (the files need 4 levels; segmentations 3 more).</summary>
    public const int MaxDepth = 64;

    public static readonly JsonReaderOptions ReaderOptions = new()
    {
        MaxDepth = MaxDepth,
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
    };

    /// <summary>
    /// Reads the whole file, refusing one over <see cref="MaxFileBytes"/> (also when its length is not
    /// known in advance, as for a pipe). I/O errors (missing file, no permission) are left to escape as
    /// the usual <see cref="IOException"/> / <see cref="UnauthorizedAccessException"/>.
    /// </summary>
    public static byte[] ReadFile(string path, out int length) => ReadFile(path, MaxFileBytes, out length);

    /// <summary><see cref="ReadFile(string, out int)"/> with another limit (tests use a small one).</summary>
    internal static byte[] ReadFile(string path, long limit, out int length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        long known = stream.CanSeek ? stream.Length : 0;
        if (known > limit)
            throw TooLarge(path, $"{known} bytes", limit);
        byte[] buffer = new byte[known > 0 ? known : Math.Max(1, Math.Min(limit, 1 << 16))];
        int filled = 0;
        while (true)
        {
            if (filled == buffer.Length)
            {
                // Full: probe for one more byte before growing, so an exactly sized buffer is not doubled.
                int next = stream.ReadByte();
                if (next < 0) break;
                if (filled >= limit) throw TooLarge(path, $"more than {limit} bytes", limit);
                Array.Resize(ref buffer, (int)Math.Min(limit, Math.Max(2L * buffer.Length, 1 << 16)));
                buffer[filled++] = (byte)next;
                continue;
            }
            int read = stream.Read(buffer, filled, buffer.Length - filled);
            if (read == 0) break;
            filled += read;
        }
        length = filled;
        return buffer;
    }

    private static CocoFormatException TooLarge(string path, string size, long limit) =>
        new(path, $"the file has {size}; the limit is {limit} bytes");

    /// <summary>The text without a leading UTF-8 byte-order mark.</summary>
    public static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> utf8) =>
        utf8.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? utf8[3..] : utf8;

    /// <summary>The current token is an integer that fits in 64 bits (no fraction or exponent).</summary>
    public static bool TryGetInteger(ref Utf8JsonReader reader, out long value)
    {
        value = 0;
        return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out value);
    }

    /// <summary>The current token is a number whose double is finite (1e400 parses to infinity and is refused).</summary>
    public static bool TryGetFinite(ref Utf8JsonReader reader, out double value)
    {
        value = 0;
        return reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out value) && double.IsFinite(value);
    }

    /// <summary>
    /// The current token starts an array of exactly four finite numbers; reads through its end.
    /// On false the reader is left somewhere inside the value (the caller throws).
    /// </summary>
    public static bool TryReadBox(ref Utf8JsonReader reader, out CocoBox box)
    {
        box = default;
        if (reader.TokenType != JsonTokenType.StartArray) return false;
        Span<double> v = stackalloc double[4];
        for (int i = 0; i < 4; i++)
        {
            ReadValue(ref reader);
            if (!TryGetFinite(ref reader, out v[i])) return false;
        }
        ReadValue(ref reader);
        if (reader.TokenType != JsonTokenType.EndArray) return false;
        box = new CocoBox(v[0], v[1], v[2], v[3]);
        return true;
    }

    /// <summary>Moves to the next token, which must exist (the value after a property name, the next array element).</summary>
    public static void ReadValue(ref Utf8JsonReader reader)
    {
        if (!reader.Read()) throw new JsonException("unexpected end of data");
    }

    /// <summary>Inside an object: moves on; true at a property name, false at the object's end.</summary>
    public static bool NextProperty(ref Utf8JsonReader reader)
    {
        ReadValue(ref reader);
        return reader.TokenType == JsonTokenType.PropertyName;
    }

    /// <summary>Inside an array: moves on; true at an element, false at the array's end.</summary>
    public static bool NextElement(ref Utf8JsonReader reader)
    {
        ReadValue(ref reader);
        return reader.TokenType != JsonTokenType.EndArray;
    }
}
