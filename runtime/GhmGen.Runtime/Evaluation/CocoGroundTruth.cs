// A COCO ground-truth file (instances_*.json) as box evaluation sees it (docs/COCOEVAL.md §1): the
// image ids (all evaluated, with or without annotations), the categories (all evaluated) and the
// annotations in file order. Also the grouping the evaluator walks: evaluated annotations by
// category, then ascending image id, then file order.
// Reference tests: tests/GhmGen.Runtime.Tests/Evaluation/CocoLoaderTests.cs and CocoLoaderFuzzTests.cs.
using System.Globalization;
using System.Text.Json;

namespace GhmGen.Evaluation;

/// <summary>
/// The images, categories and annotations of a COCO ground-truth file. Immutable once loaded:
/// any number of threads may read it and evaluate against it at once.
/// </summary>
public sealed class CocoGroundTruth
{
    /// <summary>Largest file <see cref="Load"/> reads, in bytes.</summary>
    public const long MaxFileBytes = CocoJson.MaxFileBytes;

    /// <summary>
    /// Most categories accepted (LVIS has 1,203). The evaluation's precision table holds 12,120
    /// doubles per category (T x R x A x M), ~485 MB at this limit.
    /// </summary>
    public const int MaxCategories = 5000;

    private readonly long[] imageIds;
    private readonly CocoCategory[] categories;
    private readonly CocoAnnotation[] annotations;
    private readonly Dictionary<long, int> imageIndex;
    private readonly Dictionary<long, int> categoryIndex;

    private CocoGroundTruth(string fileName, List<long> images, List<CocoCategory> categoryList, List<CocoAnnotation> annotationList)
    {
        FileName = fileName;
        // Image and category ids are looked up through dictionaries in pycocotools: a repeated entry
        // is the same image or category (for a category, the last name stands).
        imageIds = [.. new SortedSet<long>(images)];
        var byId = new SortedDictionary<long, CocoCategory>();
        foreach (CocoCategory c in categoryList) byId[c.Id] = c;
        categories = [.. byId.Values];
        if (categories.Length > MaxCategories)
            throw new CocoFormatException(fileName, $"{categories.Length} categories; at most {MaxCategories} are supported");
        annotations = [.. annotationList];

        imageIndex = new Dictionary<long, int>(imageIds.Length);
        for (int i = 0; i < imageIds.Length; i++) imageIndex[imageIds[i]] = i;
        categoryIndex = new Dictionary<long, int>(categories.Length);
        for (int k = 0; k < categories.Length; k++) categoryIndex[categories[k].Id] = k;

        // pycocotools keys annotations by id: with a repeat the last one stands in for all of them.
        var firstEntry = new Dictionary<long, int>(annotations.Length);
        for (int i = 0; i < annotations.Length; i++)
        {
            if (!firstEntry.TryAdd(annotations[i].Id, i))
                throw new CocoFormatException(fileName,
                    $"annotations entry {i}: 'id' {annotations[i].Id} repeats the id of entry {firstEntry[annotations[i].Id]}; annotation ids must be unique");
        }

        AnnotationImage = new int[annotations.Length];
        AnnotationCategory = new int[annotations.Length];
        CategoryStart = new int[categories.Length + 1];
        int evaluated = 0;
        for (int i = 0; i < annotations.Length; i++)
        {
            int image = imageIndex.GetValueOrDefault(annotations[i].ImageId, -1);
            int category = categoryIndex.GetValueOrDefault(annotations[i].CategoryId, -1);
            if (image < 0 || category < 0) image = category = -1;
            AnnotationImage[i] = image;
            AnnotationCategory[i] = category;
            if (category >= 0) { CategoryStart[category + 1]++; evaluated++; }
        }
        for (int k = 0; k < categories.Length; k++) CategoryStart[k + 1] += CategoryStart[k];

        // Counting sort by category keeps file order; then each category's run is sorted by
        // (image index, file position), a total order, so the result is the stable grouping.
        ByCategory = new int[evaluated];
        int[] fill = CategoryStart[..^1];
        for (int i = 0; i < annotations.Length; i++)
        {
            if (AnnotationCategory[i] >= 0) ByCategory[fill[AnnotationCategory[i]]++] = i;
        }
        var keys = new ulong[evaluated];
        for (int j = 0; j < evaluated; j++) keys[j] = ((ulong)(uint)AnnotationImage[ByCategory[j]] << 32) | (uint)ByCategory[j];
        for (int k = 0; k < categories.Length; k++)
        {
            Span<ulong> run = keys.AsSpan(CategoryStart[k], CategoryStart[k + 1] - CategoryStart[k]);
            run.Sort();
            for (int j = 0; j < run.Length; j++) ByCategory[CategoryStart[k] + j] = (int)(uint)run[j];
        }
    }

    /// <summary>The file (or display name) the ground truth came from.</summary>
    public string FileName { get; }

    /// <summary>All image ids, unique and ascending; every one is evaluated.</summary>
    public IReadOnlyList<long> ImageIds => imageIds;

    /// <summary>All categories, unique and by ascending id; category index k is position k here.</summary>
    public IReadOnlyList<CocoCategory> Categories => categories;

    /// <summary>All annotations in file order, including those whose image or category is not in the file.</summary>
    public IReadOnlyList<CocoAnnotation> Annotations => annotations;

    /// <summary>The annotations array itself (file order), for the evaluator's loops.</summary>
    internal CocoAnnotation[] AnnotationArray => annotations;

    /// <summary>Image index of each annotation (position in <see cref="ImageIds"/>), -1 when it takes no part.</summary>
    internal int[] AnnotationImage { get; }

    /// <summary>Category index of each annotation, -1 when it takes no part (unknown image or category).</summary>
    internal int[] AnnotationCategory { get; }

    /// <summary>[K + 1]: category k's evaluated annotations are ByCategory[CategoryStart[k] .. CategoryStart[k + 1]).</summary>
    internal int[] CategoryStart { get; }

    /// <summary>Evaluated annotation indices grouped by category, then ascending image id, then file order.</summary>
    internal int[] ByCategory { get; }

    /// <summary>Position of an image id in <see cref="ImageIds"/>, or -1.</summary>
    public int IndexOfImage(long imageId) => imageIndex.GetValueOrDefault(imageId, -1);

    /// <summary>Position of a category id in <see cref="Categories"/>, or -1.</summary>
    public int IndexOfCategory(long categoryId) => categoryIndex.GetValueOrDefault(categoryId, -1);

    /// <summary>
    /// Builds a ground truth from values in memory, with the checks of <see cref="Parse"/> that do not
    /// concern the JSON text (unique annotation ids, finite numbers).
    /// </summary>
    /// <exception cref="CocoFormatException">An annotation id repeats, or a box or area is not finite.</exception>
    public static CocoGroundTruth Create(string name, IEnumerable<long> imageIds, IEnumerable<CocoCategory> categories,
        IEnumerable<CocoAnnotation> annotations)
    {
        ArgumentNullException.ThrowIfNull(name);
        var list = new List<CocoAnnotation>(annotations);
        for (int i = 0; i < list.Count; i++)
        {
            CocoBox b = list[i].Box;
            if (!double.IsFinite(b.X) || !double.IsFinite(b.Y) || !double.IsFinite(b.Width) || !double.IsFinite(b.Height))
                throw new CocoFormatException(name, $"annotations entry {i}: 'bbox' must be an array of 4 numbers");
            if (!double.IsFinite(list[i].Area))
                throw new CocoFormatException(name, $"annotations entry {i}: 'area' must be a number");
        }
        return new CocoGroundTruth(name, [.. imageIds], [.. categories], list);
    }

    /// <summary>Reads a ground-truth file (at most <see cref="MaxFileBytes"/> bytes).</summary>
    /// <exception cref="CocoFormatException">The file is too large, is not valid JSON, or a used field is missing or mistyped.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static CocoGroundTruth Load(string path)
    {
        byte[] bytes = CocoJson.ReadFile(path, out int length);
        return Parse(bytes.AsSpan(0, length), path);
    }

    /// <summary>
    /// Parses a ground-truth JSON object. Used: <c>images[].id</c>, <c>categories[].id</c> and
    /// <c>.name</c>, <c>annotations[].id/image_id/category_id/bbox/area/iscrowd</c>; every other field
    /// is skipped unread. <c>images</c> and <c>categories</c> are required, <c>annotations</c> is optional
    /// (an image-info file has none); <c>iscrowd</c> is optional (0), an integer or a boolean; a category
    /// without a <c>name</c> is named by its id. Ids are integers that fit in 64 bits.
    /// </summary>
    /// <param name="utf8Json">The file's bytes (a leading UTF-8 byte-order mark is skipped).</param>
    /// <param name="fileName">The name messages give.</param>
    /// <exception cref="CocoFormatException">Not valid JSON, or a used field is missing or mistyped.</exception>
    public static CocoGroundTruth Parse(ReadOnlySpan<byte> utf8Json, string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        var images = new List<long>();
        var categories = new List<CocoCategory>();
        var annotations = new List<CocoAnnotation>();
        bool sawImages = false, sawCategories = false;
        string section = "the top level";
        int entry = -1;
        try
        {
            var reader = new Utf8JsonReader(CocoJson.SkipBom(utf8Json), CocoJson.ReaderOptions);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new CocoFormatException(fileName, "the ground truth must be a JSON object");
            while (CocoJson.NextProperty(ref reader))
            {
                // A repeated key: the last one stands, as in Python's json.
                if (reader.ValueTextEquals("images"u8))
                {
                    section = "images";
                    images.Clear();
                    sawImages = true;
                    ReadArray(ref reader, fileName, section, ref entry, images, ReadImage);
                }
                else if (reader.ValueTextEquals("categories"u8))
                {
                    section = "categories";
                    categories.Clear();
                    sawCategories = true;
                    ReadArray(ref reader, fileName, section, ref entry, categories, ReadCategory);
                }
                else if (reader.ValueTextEquals("annotations"u8))
                {
                    section = "annotations";
                    annotations.Clear();
                    ReadArray(ref reader, fileName, section, ref entry, annotations, ReadAnnotation);
                }
                else
                {
                    CocoJson.ReadValue(ref reader);
                    reader.Skip();
                }
                section = "the top level";
                entry = -1;
            }
            // The reader refuses trailing content after the root object by itself.
            while (reader.Read()) { }
        }
        catch (JsonException e)
        {
            string where = entry >= 0 ? $"{section} entry {entry}" : section;
            throw new CocoFormatException(fileName, $"malformed JSON in {where}: {e.Message}", e);
        }
        if (!sawImages) throw new CocoFormatException(fileName, "missing 'images' (an array of {\"id\": ...} objects)");
        if (!sawCategories) throw new CocoFormatException(fileName, "missing 'categories' (an array of {\"id\": ..., \"name\": ...} objects)");
        return new CocoGroundTruth(fileName, images, categories, annotations);
    }

    /// <summary>Reads one array element (an object); <c>where</c> names it in messages ("annotations entry 17").</summary>
    private delegate T EntryReader<out T>(ref Utf8JsonReader reader, string fileName, EntryName where);

    /// <summary>Section and 0-based index of an array element, turned into text only for a message.</summary>
    private readonly record struct EntryName(string Section, int Entry)
    {
        public override string ToString() => $"{Section} entry {Entry}";
    }

    private static void ReadArray<T>(ref Utf8JsonReader reader, string fileName, string section, ref int entry,
        List<T> into, EntryReader<T> read)
    {
        CocoJson.ReadValue(ref reader);
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new CocoFormatException(fileName, $"'{section}' must be an array");
        entry = 0;
        while (CocoJson.NextElement(ref reader))
        {
            var where = new EntryName(section, entry);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new CocoFormatException(fileName, $"{where}: must be an object");
            into.Add(read(ref reader, fileName, where));
            entry++;
        }
    }

    private static long ReadImage(ref Utf8JsonReader reader, string fileName, EntryName where)
    {
        long? id = null;
        while (CocoJson.NextProperty(ref reader))
        {
            bool isId = reader.ValueTextEquals("id"u8);
            CocoJson.ReadValue(ref reader);
            if (isId) id = Integer(ref reader, fileName, where, "id");
            else reader.Skip();
        }
        return id ?? throw Missing(fileName, where, "id");
    }

    private static CocoCategory ReadCategory(ref Utf8JsonReader reader, string fileName, EntryName where)
    {
        long? id = null;
        string? name = null;
        while (CocoJson.NextProperty(ref reader))
        {
            int field = reader.ValueTextEquals("id"u8) ? 1 : reader.ValueTextEquals("name"u8) ? 2 : 0;
            CocoJson.ReadValue(ref reader);
            if (field == 1) id = Integer(ref reader, fileName, where, "id");
            else if (field == 2)
            {
                if (reader.TokenType != JsonTokenType.String)
                    throw new CocoFormatException(fileName, $"{where}: 'name' must be a string");
                try { name = reader.GetString(); }
                catch (InvalidOperationException)
                {
                    throw new CocoFormatException(fileName, $"{where}: 'name' is not valid Unicode text");
                }
            }
            else reader.Skip();
        }
        long categoryId = id ?? throw Missing(fileName, where, "id");
        return new CocoCategory(categoryId, name ?? categoryId.ToString(CultureInfo.InvariantCulture));
    }

    private static CocoAnnotation ReadAnnotation(ref Utf8JsonReader reader, string fileName, EntryName where)
    {
        long? id = null, imageId = null, categoryId = null;
        CocoBox? box = null;
        double? area = null;
        bool crowd = false;
        while (CocoJson.NextProperty(ref reader))
        {
            int field = reader.ValueTextEquals("id"u8) ? 1
                : reader.ValueTextEquals("image_id"u8) ? 2
                : reader.ValueTextEquals("category_id"u8) ? 3
                : reader.ValueTextEquals("bbox"u8) ? 4
                : reader.ValueTextEquals("area"u8) ? 5
                : reader.ValueTextEquals("iscrowd"u8) ? 6 : 0;
            CocoJson.ReadValue(ref reader);
            switch (field)
            {
                case 1: id = Integer(ref reader, fileName, where, "id"); break;
                case 2: imageId = Integer(ref reader, fileName, where, "image_id"); break;
                case 3: categoryId = Integer(ref reader, fileName, where, "category_id"); break;
                case 4:
                    if (!CocoJson.TryReadBox(ref reader, out CocoBox b))
                        throw new CocoFormatException(fileName, $"{where}: 'bbox' must be an array of 4 numbers");
                    box = b;
                    break;
                case 5:
                    if (!CocoJson.TryGetFinite(ref reader, out double a))
                        throw new CocoFormatException(fileName, $"{where}: 'area' must be a number");
                    area = a;
                    break;
                case 6:
                    // pycocotools reads it as an integer; any non-zero value is a crowd.
                    if (reader.TokenType is JsonTokenType.True or JsonTokenType.False) crowd = reader.TokenType == JsonTokenType.True;
                    else if (CocoJson.TryGetInteger(ref reader, out long c)) crowd = c != 0;
                    else throw new CocoFormatException(fileName, $"{where}: 'iscrowd' must be an integer (0 or 1)");
                    break;
                default: reader.Skip(); break;
            }
        }
        return new CocoAnnotation(
            id ?? throw Missing(fileName, where, "id"),
            imageId ?? throw Missing(fileName, where, "image_id"),
            categoryId ?? throw Missing(fileName, where, "category_id"),
            box ?? throw Missing(fileName, where, "bbox"),
            area ?? throw Missing(fileName, where, "area"),
            crowd);
    }

    private static long Integer(ref Utf8JsonReader reader, string fileName, EntryName where, string field) =>
        CocoJson.TryGetInteger(ref reader, out long value) ? value
            : throw new CocoFormatException(fileName, $"{where}: '{field}' must be an integer");

    private static CocoFormatException Missing(string fileName, EntryName where, string field) =>
        new(fileName, $"{where}: missing '{field}'");
}
