// Reads the parts of a COCO annotation file that training needs with one forward pass of a
// Utf8JsonReader (no reflection, AOT-safe, no DOM): `images` (id, file_name, width, height),
// `annotations` (id, image_id, category_id, bbox, area, iscrowd, ignore) and `categories`
// (id, name). Every other key and field is skipped unread (segmentations included). Any problem
// becomes a DatasetFormatException naming the JSON path of the entry being read, e.g.
// `annotations[17].bbox: expected 4 numbers`. Bounds: the input is at most MaxFileBytes, nesting
// at most MaxDepth, and everything kept is proportional to the input's size.
using System.Text.Json;

namespace GhmGen.Training;

public sealed partial class CocoDetectionDataset
{
    private readonly record struct RawImage(long Id, string FileName, int Width, int Height);

    private readonly record struct RawAnnotation(long Id, long ImageId, long CategoryId, double X, double Y, double W, double H, double Area, bool Crowd, bool Ignore);

    private readonly record struct RawCategory(long Id, string Name);

    private sealed record RawFile(List<RawImage> Images, List<RawAnnotation> Annotations, List<RawCategory> Categories);

    private static class Parser
    {
        /// <summary>Deepest JSON nesting accepted (segmentation polygons need 3).</summary>
        private const int MaxDepth = 64;

        private const string ImagesKey = "images", AnnotationsKey = "annotations", CategoriesKey = "categories";

        public static RawFile Read(ReadOnlySpan<byte> json, string sourceName)
        {
            ReadOnlySpan<byte> bom = [0xEF, 0xBB, 0xBF];
            if (json.StartsWith(bom)) json = json[bom.Length..];
            if (json.IsEmpty) throw new DatasetFormatException(sourceName, "", "the file is empty");
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth, CommentHandling = JsonCommentHandling.Disallow });
            var location = new Location(sourceName);
            var file = new RawFile([], [], []);
            try
            {
                reader.Read(); // not empty, so there is a first token or a JsonException
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw location.Error($"expected a JSON object at the top level, found {Describe(reader.TokenType)}");
                bool sawImages = false, sawAnnotations = false, sawCategories = false;
                while (Next(ref reader) == JsonTokenType.PropertyName)
                {
                    if (reader.ValueTextEquals(ImagesKey))
                    {
                        sawImages = true;
                        file.Images.Clear();
                        ReadList(ref reader, location, ImagesKey, file.Images, ReadImage);
                    }
                    else if (reader.ValueTextEquals(AnnotationsKey))
                    {
                        sawAnnotations = true;
                        file.Annotations.Clear();
                        ReadList(ref reader, location, AnnotationsKey, file.Annotations, ReadAnnotation);
                    }
                    else if (reader.ValueTextEquals(CategoriesKey))
                    {
                        sawCategories = true;
                        file.Categories.Clear();
                        ReadList(ref reader, location, CategoriesKey, file.Categories, ReadCategory);
                    }
                    else
                    {
                        Next(ref reader);
                        reader.Skip();
                    }
                }
                if (reader.Read())
                    throw location.Error("unexpected content after the top-level object");
                if (!sawImages) throw location.Error($"missing \"{ImagesKey}\"");
                if (!sawAnnotations) throw location.Error($"missing \"{AnnotationsKey}\"");
                if (!sawCategories) throw location.Error($"missing \"{CategoriesKey}\"");
                return file;
            }
            catch (JsonException e)
            {
                throw location.Error($"malformed JSON: {e.Message}", e);
            }
            catch (InvalidOperationException e)
            {
                // Utf8JsonReader's unescaping (ValueTextEquals, GetString) throws this for text such
                // as a lone surrogate escape "\ud800"; token types are checked before every getter.
                throw location.Error($"invalid JSON text: {e.Message}", e);
            }
        }

        private delegate T EntryReader<T>(ref Utf8JsonReader reader, Location location);

        private static void ReadList<T>(ref Utf8JsonReader reader, Location location, string section, List<T> list, EntryReader<T> readEntry)
        {
            location.Enter(section);
            if (Next(ref reader) != JsonTokenType.StartArray)
                throw location.Error($"expected an array, found {Describe(reader.TokenType)}");
            int index = 0;
            while (Next(ref reader) != JsonTokenType.EndArray)
            {
                location.Entry(index);
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw location.Error($"expected an object, found {Describe(reader.TokenType)}");
                list.Add(readEntry(ref reader, location));
                index++;
            }
            location.Leave();
        }

        private static RawImage ReadImage(ref Utf8JsonReader reader, Location location)
        {
            long? id = null;
            string? fileName = null;
            int? width = null, height = null;
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("id")) id = ReadInt64(ref reader, location, "id");
                else if (reader.ValueTextEquals("file_name")) fileName = ReadString(ref reader, location, "file_name");
                else if (reader.ValueTextEquals("width")) width = ReadInt32(ref reader, location, "width");
                else if (reader.ValueTextEquals("height")) height = ReadInt32(ref reader, location, "height");
                else SkipValue(ref reader);
            }
            return new RawImage(
                id ?? throw location.Missing("id"), fileName ?? throw location.Missing("file_name"),
                width ?? throw location.Missing("width"), height ?? throw location.Missing("height"));
        }

        private static RawAnnotation ReadAnnotation(ref Utf8JsonReader reader, Location location)
        {
            long? id = null, imageId = null, categoryId = null;
            double? area = null;
            bool crowd = false, ignore = false, sawBox = false;
            double x = 0, y = 0, w = 0, h = 0;
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("id")) id = ReadInt64(ref reader, location, "id");
                else if (reader.ValueTextEquals("image_id")) imageId = ReadInt64(ref reader, location, "image_id");
                else if (reader.ValueTextEquals("category_id")) categoryId = ReadInt64(ref reader, location, "category_id");
                else if (reader.ValueTextEquals("area")) area = ReadDouble(ref reader, location, "area");
                else if (reader.ValueTextEquals("iscrowd")) crowd = ReadTruth(ref reader, location, "iscrowd");
                else if (reader.ValueTextEquals("ignore")) ignore = ReadTruth(ref reader, location, "ignore");
                else if (reader.ValueTextEquals("bbox"))
                {
                    location.Field = "bbox";
                    (x, y, w, h) = ReadBox(ref reader, location);
                    location.Field = null;
                    sawBox = true;
                }
                else SkipValue(ref reader);
            }
            if (!sawBox) throw location.Missing("bbox");
            return new RawAnnotation(
                id ?? throw location.Missing("id"), imageId ?? throw location.Missing("image_id"),
                categoryId ?? throw location.Missing("category_id"), x, y, w, h,
                area ?? throw location.Missing("area"), crowd, ignore);
        }

        private static RawCategory ReadCategory(ref Utf8JsonReader reader, Location location)
        {
            long? id = null;
            string? name = null;
            while (Next(ref reader) == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("id")) id = ReadInt64(ref reader, location, "id");
                else if (reader.ValueTextEquals("name")) name = ReadString(ref reader, location, "name");
                else SkipValue(ref reader);
            }
            return new RawCategory(id ?? throw location.Missing("id"), name ?? throw location.Missing("name"));
        }

        private static (double X, double Y, double W, double H) ReadBox(ref Utf8JsonReader reader, Location location)
        {
            const string field = "bbox";
            if (Next(ref reader) != JsonTokenType.StartArray)
                throw location.Error(field, $"expected 4 numbers, found {Describe(reader.TokenType)}");
            Span<double> values = stackalloc double[4];
            int count = 0;
            while (Next(ref reader) != JsonTokenType.EndArray)
            {
                if (count == 4) throw location.Error(field, "expected 4 numbers, found more");
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetDouble(out double value) || !double.IsFinite(value))
                    throw location.Error($"{field}[{count}]", $"expected a finite number, found {Describe(reader.TokenType)}");
                values[count++] = value;
            }
            if (count != 4) throw location.Error(field, $"expected 4 numbers, found {count}");
            return (values[0], values[1], values[2], values[3]);
        }

        private static long ReadInt64(ref Utf8JsonReader reader, Location location, string field)
        {
            if (Next(ref reader) != JsonTokenType.Number || !reader.TryGetInt64(out long value))
                throw location.Error(field, $"expected an integer, found {Describe(reader)}");
            return value;
        }

        private static int ReadInt32(ref Utf8JsonReader reader, Location location, string field)
        {
            if (Next(ref reader) != JsonTokenType.Number || !reader.TryGetInt32(out int value))
                throw location.Error(field, $"expected a 32-bit integer, found {Describe(reader)}");
            return value;
        }

        private static double ReadDouble(ref Utf8JsonReader reader, Location location, string field)
        {
            if (Next(ref reader) != JsonTokenType.Number || !reader.TryGetDouble(out double value) || !double.IsFinite(value))
                throw location.Error(field, $"expected a finite number, found {Describe(reader)}");
            return value;
        }

        // Python truthiness of ann.get('iscrowd') / ann.get('ignore'): false, 0 and null are false.
        private static bool ReadTruth(ref Utf8JsonReader reader, Location location, string field) => Next(ref reader) switch
        {
            JsonTokenType.True => true,
            JsonTokenType.False or JsonTokenType.Null => false,
            JsonTokenType.Number when reader.TryGetDouble(out double value) => value != 0,
            _ => throw location.Error(field, $"expected a boolean or a number, found {Describe(reader)}"),
        };

        private static string ReadString(ref Utf8JsonReader reader, Location location, string field)
        {
            if (Next(ref reader) != JsonTokenType.String)
                throw location.Error(field, $"expected a string, found {Describe(reader.TokenType)}");
            try
            {
                return reader.GetString()!;
            }
            catch (InvalidOperationException e)
            {
                throw location.Error(field, $"invalid string: {e.Message}", e);
            }
        }

        private static void SkipValue(ref Utf8JsonReader reader)
        {
            Next(ref reader);
            reader.Skip();
        }

        // The input is one complete buffer, so running out of tokens means the file is truncated.
        private static JsonTokenType Next(ref Utf8JsonReader reader)
        {
            if (!reader.Read())
                throw new JsonException($"the file ends early (at byte {reader.BytesConsumed})");
            return reader.TokenType;
        }

        private static string Describe(in Utf8JsonReader reader) =>
            reader.TokenType == JsonTokenType.Number
                ? $"the number {System.Text.Encoding.UTF8.GetString(reader.ValueSpan[..Math.Min(reader.ValueSpan.Length, 40)])}"
                : Describe(reader.TokenType);

        private static string Describe(JsonTokenType token) => token switch
        {
            JsonTokenType.StartObject => "an object",
            JsonTokenType.StartArray => "an array",
            JsonTokenType.String => "a string",
            JsonTokenType.Number => "a number",
            JsonTokenType.True or JsonTokenType.False => "a boolean",
            JsonTokenType.Null => "null",
            _ => token.ToString(),
        };
    }

    /// <summary>Where the parser is (section, entry index), for error messages.</summary>
    private sealed class Location(string sourceName)
    {
        private string? _section;
        private int _index = -1;

        /// <summary>The field being read, for errors the JSON reader raises inside it (a bbox array).</summary>
        public string? Field { get; set; }

        public void Enter(string section) { _section = section; _index = -1; }

        public void Entry(int index) { _index = index; Field = null; }

        public void Leave() { _section = null; _index = -1; }

        public DatasetFormatException Error(string problem, Exception? inner = null) => new(sourceName, Path(Field), problem, inner);

        public DatasetFormatException Error(string field, string problem, Exception? inner = null) => new(sourceName, Path(field), problem, inner);

        public DatasetFormatException Missing(string field) => new(sourceName, Path(null), $"missing \"{field}\"");

        private string Path(string? field)
        {
            if (_section is null) return "";
            string path = _index >= 0 ? $"{_section}[{_index}]" : _section;
            return field is null ? path : $"{path}.{field}";
        }
    }
}
