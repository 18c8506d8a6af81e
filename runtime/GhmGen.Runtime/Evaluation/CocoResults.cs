// A COCO results file (a JSON array of {image_id, category_id, bbox, score}) checked against its
// ground truth (docs/COCOEVAL.md §1). Every image_id must be a ground-truth image (pycocotools refuses the
// file otherwise). A category_id that is not a ground-truth category is refused as well (a result file for another label set would otherwise score silently low);
// with dropUnknownCategories such results are left out instead, which is what pycocotools does.
// Reference tests: tests/GhmGen.Runtime.Tests/Evaluation/CocoLoaderTests.cs and CocoLoaderFuzzTests.cs.
using System.Text.Json;

namespace GhmGen.Evaluation;

/// <summary>
/// The detections of a COCO results file, each tied to an image and category of a ground truth.
/// Immutable once loaded: any number of threads may read or evaluate it at once.
/// </summary>
public sealed class CocoResults
{
    /// <summary>Largest file <see cref="Load"/> reads, in bytes.</summary>
    public const long MaxFileBytes = CocoJson.MaxFileBytes;

    private readonly CocoDetection[] detections;

    private CocoResults(string fileName, CocoGroundTruth groundTruth, CocoDetection[] detections, int[] image, int[] category, int dropped)
    {
        FileName = fileName;
        GroundTruth = groundTruth;
        this.detections = detections;
        DetectionImage = image;
        DetectionCategory = category;
        DroppedUnknownCategory = dropped;
    }

    /// <summary>The file (or display name) the results came from.</summary>
    public string FileName { get; }

    /// <summary>The ground truth the results were checked against.</summary>
    public CocoGroundTruth GroundTruth { get; }

    /// <summary>The evaluated detections in file order (file order breaks score ties).</summary>
    public IReadOnlyList<CocoDetection> Detections => detections;

    /// <summary>Results left out because their category is not in the ground truth (only with dropUnknownCategories).</summary>
    public int DroppedUnknownCategory { get; }

    /// <summary>The detections array itself (file order), for the evaluator's loops.</summary>
    internal CocoDetection[] DetectionArray => detections;

    /// <summary>Image index (position in <see cref="CocoGroundTruth.ImageIds"/>) of each detection.</summary>
    internal int[] DetectionImage { get; }

    /// <summary>Category index (position in <see cref="CocoGroundTruth.Categories"/>) of each detection.</summary>
    internal int[] DetectionCategory { get; }

    /// <summary>Reads a results file (at most <see cref="MaxFileBytes"/> bytes); see <see cref="Parse"/>.</summary>
    /// <exception cref="CocoFormatException">The file is too large, malformed, or does not fit the ground truth.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static CocoResults Load(string path, CocoGroundTruth groundTruth, bool dropUnknownCategories = false)
    {
        ArgumentNullException.ThrowIfNull(groundTruth);
        byte[] bytes = CocoJson.ReadFile(path, out int length);
        return Parse(bytes.AsSpan(0, length), path, groundTruth, dropUnknownCategories);
    }

    /// <summary>
    /// Parses a results JSON array. Each element is an object with <c>image_id</c> and <c>category_id</c>
    /// (integers), <c>bbox</c> (4 numbers) and <c>score</c> (a number); other fields (<c>area</c>,
    /// <c>segmentation</c>, ...) are skipped. Numbers must be finite. An empty array is accepted
    /// (pycocotools fails on it; evaluated, it gives precision and recall 0 wherever there is ground truth).
    /// </summary>
    /// <param name="utf8Json">The file's bytes (a leading UTF-8 byte-order mark is skipped).</param>
    /// <param name="fileName">The name messages give.</param>
    /// <param name="groundTruth">The ground truth every image_id and category_id must belong to.</param>
    /// <param name="dropUnknownCategories">Leave out results of categories the ground truth lacks (pycocotools' behaviour) instead of refusing the file.</param>
    /// <exception cref="CocoFormatException">Malformed JSON, a missing or mistyped field, an unknown image, or an unknown category.</exception>
    public static CocoResults Parse(ReadOnlySpan<byte> utf8Json, string fileName, CocoGroundTruth groundTruth, bool dropUnknownCategories = false)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(groundTruth);
        var list = new List<CocoDetection>();
        int entry = -1;
        try
        {
            var reader = new Utf8JsonReader(CocoJson.SkipBom(utf8Json), CocoJson.ReaderOptions);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
                throw new CocoFormatException(fileName, "the results must be a JSON array of {\"image_id\", \"category_id\", \"bbox\", \"score\"} objects");
            entry = 0;
            while (CocoJson.NextElement(ref reader))
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw new CocoFormatException(fileName, $"entry {entry}: must be an object");
                list.Add(ReadDetection(ref reader, fileName, entry));
                entry++;
            }
            entry = -1;
            while (reader.Read()) { }
        }
        catch (JsonException e)
        {
            throw new CocoFormatException(fileName, entry >= 0 ? $"entry {entry}: malformed JSON: {e.Message}" : $"malformed JSON: {e.Message}", e);
        }
        return Build(fileName, groundTruth, list, dropUnknownCategories, checkFinite: false);
    }

    /// <summary>Builds results from detections in memory (for example a detector's output), with the checks of <see cref="Parse"/>.</summary>
    /// <exception cref="CocoFormatException">A number is not finite, an image is unknown, or a category is unknown.</exception>
    public static CocoResults Create(CocoGroundTruth groundTruth, IEnumerable<CocoDetection> detections, string name = "detections",
        bool dropUnknownCategories = false)
    {
        ArgumentNullException.ThrowIfNull(groundTruth);
        ArgumentNullException.ThrowIfNull(detections);
        ArgumentNullException.ThrowIfNull(name);
        return Build(name, groundTruth, [.. detections], dropUnknownCategories, checkFinite: true);
    }

    private static CocoResults Build(string fileName, CocoGroundTruth groundTruth, List<CocoDetection> list, bool dropUnknownCategories, bool checkFinite)
    {
        var kept = new CocoDetection[list.Count];
        var image = new int[list.Count];
        var category = new int[list.Count];
        int count = 0, dropped = 0;
        for (int i = 0; i < list.Count; i++)
        {
            CocoDetection d = list[i];
            if (checkFinite)
            {
                if (!double.IsFinite(d.Box.X) || !double.IsFinite(d.Box.Y) || !double.IsFinite(d.Box.Width) || !double.IsFinite(d.Box.Height))
                    throw new CocoFormatException(fileName, $"entry {i}: 'bbox' must be an array of 4 numbers");
                if (!double.IsFinite(d.Score))
                    throw new CocoFormatException(fileName, $"entry {i}: 'score' must be a number");
            }
            int imageIndex = groundTruth.IndexOfImage(d.ImageId);
            if (imageIndex < 0)
                throw new CocoFormatException(fileName, $"entry {i}: 'image_id' {d.ImageId} is not an image of the ground truth '{groundTruth.FileName}'");
            int categoryIndex = groundTruth.IndexOfCategory(d.CategoryId);
            if (categoryIndex < 0)
            {
                if (dropUnknownCategories) { dropped++; continue; }
                throw new CocoFormatException(fileName, $"entry {i}: 'category_id' {d.CategoryId} is not a category of the ground truth '{groundTruth.FileName}'");
            }
            kept[count] = d;
            image[count] = imageIndex;
            category[count] = categoryIndex;
            count++;
        }
        if (count < kept.Length)
        {
            Array.Resize(ref kept, count);
            Array.Resize(ref image, count);
            Array.Resize(ref category, count);
        }
        return new CocoResults(fileName, groundTruth, kept, image, category, dropped);
    }

    private static CocoDetection ReadDetection(ref Utf8JsonReader reader, string fileName, int entry)
    {
        long? imageId = null, categoryId = null;
        CocoBox? box = null;
        double? score = null;
        while (CocoJson.NextProperty(ref reader))
        {
            int field = reader.ValueTextEquals("image_id"u8) ? 1
                : reader.ValueTextEquals("category_id"u8) ? 2
                : reader.ValueTextEquals("bbox"u8) ? 3
                : reader.ValueTextEquals("score"u8) ? 4 : 0;
            CocoJson.ReadValue(ref reader);
            switch (field)
            {
                case 1:
                    imageId = CocoJson.TryGetInteger(ref reader, out long i) ? i
                        : throw new CocoFormatException(fileName, $"entry {entry}: 'image_id' must be an integer");
                    break;
                case 2:
                    categoryId = CocoJson.TryGetInteger(ref reader, out long c) ? c
                        : throw new CocoFormatException(fileName, $"entry {entry}: 'category_id' must be an integer");
                    break;
                case 3:
                    box = CocoJson.TryReadBox(ref reader, out CocoBox b) ? b
                        : throw new CocoFormatException(fileName, $"entry {entry}: 'bbox' must be an array of 4 numbers");
                    break;
                case 4:
                    score = CocoJson.TryGetFinite(ref reader, out double s) ? s
                        : throw new CocoFormatException(fileName, $"entry {entry}: 'score' must be a number");
                    break;
                default: reader.Skip(); break;
            }
        }
        return new CocoDetection(
            imageId ?? throw Missing(fileName, entry, "image_id"),
            categoryId ?? throw Missing(fileName, entry, "category_id"),
            box ?? throw Missing(fileName, entry, "bbox"),
            score ?? throw Missing(fileName, entry, "score"));
    }

    private static CocoFormatException Missing(string fileName, int entry, string field) =>
        new(fileName, $"entry {entry}: missing '{field}'");
}
