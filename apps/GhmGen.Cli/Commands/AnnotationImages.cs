using System.Text.Json;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>One image of an annotation file: its id and <c>file_name</c> (relative to the image folder).</summary>
internal readonly record struct AnnotationImage(long Id, string FileName);

/// <summary>
/// What <c>ghm test</c> needs from an annotation file besides what <see cref="CocoGroundTruth"/>
/// keeps: the images with their <c>file_name</c> and the category ids, both in file order.
/// Repeated ids are one entry at the place of their first occurrence, with the values of the
/// last (Python's dict, which pycocotools and mmdetection build from the file).
/// </summary>
internal sealed class AnnotationImages
{
    private AnnotationImages(List<AnnotationImage> images, List<long> categoryIds)
    {
        Images = images;
        CategoryIds = categoryIds;
    }

    /// <summary>The images in file order.</summary>
    public IReadOnlyList<AnnotationImage> Images { get; }

    /// <summary>The category ids in file order (the order labels are mapped to by index).</summary>
    public IReadOnlyList<long> CategoryIds { get; }

    /// <summary>
    /// Reads the <c>images</c> and <c>categories</c> of <paramref name="path"/>, a file
    /// <see cref="CocoGroundTruth.Load"/> has accepted (so its JSON is well formed, its ids integers
    /// and its size bounded). Throws <see cref="CocoFormatException"/> naming the entry of an image
    /// without a <c>file_name</c> string.
    /// </summary>
    public static AnnotationImages Load(string path) => Parse(File.ReadAllBytes(path), path);

    /// <summary>Parses the bytes of an annotation file; see <see cref="Load"/>.</summary>
    public static AnnotationImages Parse(ReadOnlySpan<byte> utf8Json, string fileName)
    {
        var images = new List<AnnotationImage>();
        var imagePosition = new Dictionary<long, int>();
        var categories = new List<long>();
        var seenCategories = new HashSet<long>();
        if (utf8Json.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) utf8Json = utf8Json[3..];
        var reader = new Utf8JsonReader(utf8Json, new JsonReaderOptions { MaxDepth = 64 });
        try
        {
            Read(ref reader); // the root object
            while (Read(ref reader) && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isImages = reader.ValueTextEquals("images"u8), isCategories = reader.ValueTextEquals("categories"u8);
                Read(ref reader);
                if (!isImages && !isCategories)
                {
                    reader.Skip();
                    continue;
                }
                // A repeated key: the last one stands, as in Python's json.
                if (isImages) { images.Clear(); imagePosition.Clear(); }
                else { categories.Clear(); seenCategories.Clear(); }
                int entry = 0;
                while (Read(ref reader) && reader.TokenType == JsonTokenType.StartObject)
                {
                    (long id, string? name) = ReadEntry(ref reader, fileName, isImages ? "images" : "categories", entry, isImages);
                    if (isImages)
                    {
                        if (name is null) throw new CocoFormatException(fileName, $"images entry {entry}: missing 'file_name' (the image's path relative to --images)");
                        if (imagePosition.TryGetValue(id, out int at)) images[at] = new AnnotationImage(id, name);
                        else
                        {
                            imagePosition[id] = images.Count;
                            images.Add(new AnnotationImage(id, name));
                        }
                    }
                    else if (seenCategories.Add(id)) categories.Add(id);
                    entry++;
                }
            }
        }
        catch (JsonException e)
        {
            // CocoGroundTruth.Load read the same file without complaint; it changed since.
            throw new CocoFormatException(fileName, $"malformed JSON: {e.Message}", e);
        }
        return new AnnotationImages(images, categories);
    }

    private static bool Read(ref Utf8JsonReader reader) => reader.Read() ? true : throw new JsonException("unexpected end of data");

    /// <summary>Reads one object of <c>images</c> (id, file_name) or <c>categories</c> (id); the reader ends on its closing brace.</summary>
    private static (long Id, string? FileName) ReadEntry(ref Utf8JsonReader reader, string fileName, string section, int entry, bool isImage)
    {
        long? id = null;
        string? name = null;
        while (Read(ref reader) && reader.TokenType == JsonTokenType.PropertyName)
        {
            int field = reader.ValueTextEquals("id"u8) ? 1 : isImage && reader.ValueTextEquals("file_name"u8) ? 2 : 0;
            Read(ref reader);
            if (field == 1 && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out long value)) id = value;
            else if (field == 1) throw new CocoFormatException(fileName, $"{section} entry {entry}: 'id' must be an integer");
            else if (field == 2)
            {
                if (reader.TokenType != JsonTokenType.String)
                    throw new CocoFormatException(fileName, $"{section} entry {entry}: 'file_name' must be a string");
                try { name = reader.GetString(); }
                catch (InvalidOperationException)
                {
                    throw new CocoFormatException(fileName, $"{section} entry {entry}: 'file_name' is not valid Unicode text");
                }
                if (string.IsNullOrEmpty(name) || name.Contains('\0'))
                    throw new CocoFormatException(fileName, $"{section} entry {entry}: 'file_name' must be a non-empty file name");
            }
            else reader.Skip();
        }
        return (id ?? throw new CocoFormatException(fileName, $"{section} entry {entry}: missing 'id'"), name);
    }
}
