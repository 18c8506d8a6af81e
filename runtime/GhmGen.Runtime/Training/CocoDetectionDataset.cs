// A COCO-format annotation file read for training, with mmdetection v2's CocoDataset semantics
// (docs/TRAINING.md):
//  * labels: the categories whose names are among the class names, in the json's `categories`
//    order; label = index in that list (cat2label), so it equals "index into the sorted ids" only
//    when the json lists categories sorted by id, as the COCO files do.
//  * image filter (_filter_imgs, filter_empty_gt, min_size 32): drop an image that has no
//    annotation (of any kind: crowd, ignore-flagged, zero-area) of a known category, then one
//    whose json min(width, height) < 32. An image whose only annotations are crowd or sub-pixel
//    boxes is kept (all its anchors become negatives). Kept images stay in json order.
//  * annotation filter (_parse_ann_info, in json order, double arithmetic as Python):
//    skip `ignore`, zero intersection with the json image size, area <= 0 or w < 1 or h < 1, and
//    unknown categories; box = [x, y, x + w, y + h] (no -1) stored as float32; `iscrowd` boxes go to
//    CrowdBoxes (mmdetection's bboxes_ignore, unused by RetinaNet's assigner with ignore_iof_thr -1).
// Stricter than pycocotools where it would silently overwrite: duplicate image, annotation
// (mmdetection asserts this one) or category ids are format errors. Parsing: CocoDetectionDataset.Parser.cs.
// Tests: tests/GhmGen.Runtime.Tests/Training/CocoDetectionDatasetTests.cs and CocoDatasetFuzzTests.cs.
using GhmGen.Detection;

namespace GhmGen.Training;

/// <summary>Settings for reading a COCO training annotation file; the defaults are mmdetection's COCO ones.</summary>
/// <param name="ClassNames">Category names the model predicts (null: the 80 COCO names, <see cref="CocoCategories.Names"/>).</param>
/// <param name="MinSize">Images whose json min(width, height) is below this are dropped (32).</param>
/// <param name="FilterEmptyGt">Drop images without any annotation of a known category (true).</param>
/// <param name="MaxFileBytes">Largest annotation file accepted (<see cref="CocoDetectionDataset.DefaultMaxFileBytes"/>); at most <see cref="Array.MaxLength"/>.</param>
public sealed record CocoDatasetOptions(
    IReadOnlyList<string>? ClassNames = null,
    int MinSize = 32,
    bool FilterEmptyGt = true,
    long MaxFileBytes = CocoDetectionDataset.DefaultMaxFileBytes)
{
    /// <summary>mmdetection's CocoDataset defaults.</summary>
    public static CocoDatasetOptions Default { get; } = new();
}

/// <summary>A category that maps to a training label.</summary>
/// <param name="Label">Index in the json order of the categories whose names are class names.</param>
/// <param name="Id">The json category id.</param>
/// <param name="Name">The category name.</param>
public sealed record CocoCategory(int Label, long Id, string Name);

/// <summary>One training image and its ground truth after mmdetection's filters.</summary>
public sealed class CocoImage
{
    internal CocoImage(int index, long id, string fileName, string filePath, int width, int height, float[] gtBoxes, int[] gtLabels, float[] crowdBoxes)
    {
        Index = index;
        Id = id;
        FileName = fileName;
        FilePath = filePath;
        Width = width;
        Height = height;
        GtBoxes = gtBoxes;
        GtLabels = gtLabels;
        CrowdBoxes = crowdBoxes;
    }

    /// <summary>Position in <see cref="CocoDetectionDataset.Images"/> (after the image filter).</summary>
    public int Index { get; }

    /// <summary>The json image id.</summary>
    public long Id { get; }

    /// <summary>The json <c>file_name</c>.</summary>
    public string FileName { get; }

    /// <summary>Image root joined with <see cref="FileName"/> (Path.Combine: a rooted file name stands alone, as os.path.join).</summary>
    public string FilePath { get; }

    /// <summary>The json width (the pipeline uses the decoded image's own size).</summary>
    public int Width { get; }

    /// <summary>The json height.</summary>
    public int Height { get; }

    /// <summary>[numGt, 4] x1, y1, x2, y2 in original-image pixels, json annotation order.</summary>
    public float[] GtBoxes { get; }

    /// <summary>[numGt] labels in [0, number of categories).</summary>
    public int[] GtLabels { get; }

    /// <summary>[numCrowd, 4] boxes of <c>iscrowd</c> annotations (mmdetection's <c>gt_bboxes_ignore</c>).</summary>
    public float[] CrowdBoxes { get; }

    /// <summary>Number of ground-truth boxes.</summary>
    public int GtCount => GtLabels.Length;
}

/// <summary>What the filters did to an annotation file.</summary>
/// <param name="ImagesInFile">Entries of the json <c>images</c> list.</param>
/// <param name="ImagesWithoutKnownAnnotations">Images dropped because no annotation of a known category refers to them.</param>
/// <param name="ImagesTooSmall">Images dropped because min(width, height) &lt; MinSize.</param>
/// <param name="CategoriesInFile">Entries of the json <c>categories</c> list.</param>
/// <param name="AnnotationsInFile">Entries of the json <c>annotations</c> list.</param>
/// <param name="AnnotationsOfUnlistedImages">Annotations whose image_id is not in <c>images</c> (ignored, as pycocotools does).</param>
/// <param name="GtBoxes">Ground-truth boxes kept over the kept images.</param>
/// <param name="CrowdBoxes">Crowd boxes over the kept images.</param>
/// <param name="SkippedIgnoreFlag">Annotations of kept images skipped for a true <c>ignore</c>.</param>
/// <param name="SkippedOutsideImage">... for no intersection with the image.</param>
/// <param name="SkippedTooSmall">... for area &lt;= 0, w &lt; 1 or h &lt; 1.</param>
/// <param name="SkippedUnknownCategory">... for a category that is not a class.</param>
public sealed record CocoDatasetStatistics(
    int ImagesInFile, int ImagesWithoutKnownAnnotations, int ImagesTooSmall,
    int CategoriesInFile, int AnnotationsInFile, int AnnotationsOfUnlistedImages,
    int GtBoxes, int CrowdBoxes,
    int SkippedIgnoreFlag, int SkippedOutsideImage, int SkippedTooSmall, int SkippedUnknownCategory);

/// <summary>A COCO-format detection training set read with mmdetection v2's CocoDataset rules.</summary>
public sealed partial class CocoDetectionDataset
{
    /// <summary>Default limit on the annotation file size: 1 GiB (COCO's instances_train2017.json is 448 MB).</summary>
    public const long DefaultMaxFileBytes = 1L << 30;

    private CocoDetectionDataset(string sourceName, string imageRoot, int numClasses, CocoCategory[] categories, CocoImage[] images, CocoDatasetStatistics statistics)
    {
        SourceName = sourceName;
        ImageRoot = imageRoot;
        NumClasses = numClasses;
        Categories = categories;
        Images = images;
        Statistics = statistics;
    }

    /// <summary>The annotation file (or display name) the dataset was read from.</summary>
    public string SourceName { get; }

    /// <summary>Folder the image file names are relative to.</summary>
    public string ImageRoot { get; }

    /// <summary>Number of class names (the model's classes, 80 for COCO); labels lie in [0, NumClasses).</summary>
    public int NumClasses { get; }

    /// <summary>Categories that map to labels, in label order (json order).</summary>
    public IReadOnlyList<CocoCategory> Categories { get; }

    /// <summary>Images kept by the filters, in json order; <c>Images[i].Index == i</c>.</summary>
    public IReadOnlyList<CocoImage> Images { get; }

    /// <summary>Counts of what the filters kept and dropped.</summary>
    public CocoDatasetStatistics Statistics { get; }

    /// <summary>Number of images.</summary>
    public int Count => Images.Count;

    /// <summary>
    /// Reads the annotation file at <paramref name="annotationFile"/>; image paths are relative to
    /// <paramref name="imageRoot"/>. Throws <see cref="DatasetFormatException"/> for a malformed file or
    /// one larger than <see cref="CocoDatasetOptions.MaxFileBytes"/>, and the usual I/O exceptions
    /// (<see cref="FileNotFoundException"/>, ...) when it cannot be read. Memory: the file's bytes plus
    /// data structures proportional to its size.
    /// </summary>
    public static CocoDetectionDataset Load(string annotationFile, string imageRoot, CocoDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(annotationFile);
        options ??= CocoDatasetOptions.Default;
        long limit = CheckLimit(options);
        byte[] bytes;
        using (var stream = new FileStream(annotationFile, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            if (stream.Length > limit)
                throw new DatasetFormatException(annotationFile, "", $"the file is {stream.Length} bytes, more than the {limit}-byte limit");
            bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            if (stream.ReadByte() >= 0)
                throw new DatasetFormatException(annotationFile, "", "the file grew while it was read");
        }
        return Parse(bytes, annotationFile, imageRoot, options);
    }

    /// <summary>
    /// Reads an annotation file already in memory (UTF-8 JSON); <paramref name="sourceName"/> names it in
    /// error messages. Throws <see cref="DatasetFormatException"/> and nothing else for any content.
    /// </summary>
    public static CocoDetectionDataset Parse(ReadOnlySpan<byte> json, string sourceName, string imageRoot, CocoDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        ArgumentNullException.ThrowIfNull(imageRoot);
        options ??= CocoDatasetOptions.Default;
        long limit = CheckLimit(options);
        if (options.MinSize < 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"MinSize must not be negative, got {options.MinSize}");
        IReadOnlyList<string> classNames = options.ClassNames ?? CocoCategories.Names;
        if (classNames.Count == 0)
            throw new ArgumentException("ClassNames is empty", nameof(options));
        if (json.Length > limit)
            throw new DatasetFormatException(sourceName, "", $"the file is {json.Length} bytes, more than the {limit}-byte limit");

        RawFile raw = Parser.Read(json, sourceName);
        return Build(raw, sourceName, imageRoot, classNames, options);
    }

    private static long CheckLimit(CocoDatasetOptions options)
    {
        if (options.MaxFileBytes <= 0 || options.MaxFileBytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxFileBytes must be in [1, {Array.MaxLength}], got {options.MaxFileBytes}");
        return options.MaxFileBytes;
    }

    private static CocoDetectionDataset Build(RawFile raw, string sourceName, string imageRoot, IReadOnlyList<string> classNames, CocoDatasetOptions options)
    {
        // cat_ids = get_cat_ids(cat_names=CLASSES): json order, filtered by name; cat2label = {id: i}.
        var classSet = new HashSet<string>(classNames, StringComparer.Ordinal);
        var labelOfCategory = new Dictionary<long, int>();
        var categories = new List<CocoCategory>();
        var seenCategories = new Dictionary<long, int>();
        for (int c = 0; c < raw.Categories.Count; c++)
        {
            RawCategory category = raw.Categories[c];
            if (!seenCategories.TryAdd(category.Id, c))
                throw new DatasetFormatException(sourceName, $"categories[{c}].id", $"duplicate category id {category.Id} (also categories[{seenCategories[category.Id]}])");
            if (!classSet.Contains(category.Name)) continue;
            labelOfCategory.Add(category.Id, categories.Count);
            categories.Add(new CocoCategory(categories.Count, category.Id, category.Name));
        }
        if (categories.Count > classNames.Count)
            throw new DatasetFormatException(sourceName, "categories",
                $"{categories.Count} categories carry one of the {classNames.Count} class names; labels would exceed the model's classes");

        var imageSlot = new Dictionary<long, int>(raw.Images.Count);
        for (int i = 0; i < raw.Images.Count; i++)
            if (!imageSlot.TryAdd(raw.Images[i].Id, i))
                throw new DatasetFormatException(sourceName, $"images[{i}].id", $"duplicate image id {raw.Images[i].Id} (also images[{imageSlot[raw.Images[i].Id]}])");

        // Annotations per image in json order (pycocotools imgToAnns), as offsets into one array.
        var annotationIds = new Dictionary<long, int>(raw.Annotations.Count);
        var perImageCount = new int[raw.Images.Count + 1];
        int unlisted = 0;
        for (int a = 0; a < raw.Annotations.Count; a++)
        {
            RawAnnotation annotation = raw.Annotations[a];
            if (!annotationIds.TryAdd(annotation.Id, a))
                throw new DatasetFormatException(sourceName, $"annotations[{a}].id", $"duplicate annotation id {annotation.Id} (also annotations[{annotationIds[annotation.Id]}])");
            if (imageSlot.TryGetValue(annotation.ImageId, out int slot)) perImageCount[slot + 1]++;
            else unlisted++;
        }
        for (int i = 0; i < raw.Images.Count; i++) perImageCount[i + 1] += perImageCount[i];
        var byImage = new int[perImageCount[raw.Images.Count]];
        var fill = (int[])perImageCount.Clone();
        for (int a = 0; a < raw.Annotations.Count; a++)
            if (imageSlot.TryGetValue(raw.Annotations[a].ImageId, out int slot)) byImage[fill[slot]++] = a;

        int withoutKnown = 0, tooSmall = 0, gtTotal = 0, crowdTotal = 0;
        int skippedIgnore = 0, skippedOutside = 0, skippedSmall = 0, skippedUnknown = 0;
        var images = new List<CocoImage>();
        var boxes = new List<float>();
        var labels = new List<int>();
        var crowd = new List<float>();
        for (int i = 0; i < raw.Images.Count; i++)
        {
            RawImage image = raw.Images[i];
            ReadOnlySpan<int> mine = byImage.AsSpan(perImageCount[i], perImageCount[i + 1] - perImageCount[i]);
            bool hasKnown = false;
            foreach (int a in mine) hasKnown |= labelOfCategory.ContainsKey(raw.Annotations[a].CategoryId);
            if (options.FilterEmptyGt && !hasKnown) { withoutKnown++; continue; }
            if (Math.Min(image.Width, image.Height) < options.MinSize) { tooSmall++; continue; }

            boxes.Clear(); labels.Clear(); crowd.Clear();
            foreach (int a in mine)
            {
                RawAnnotation ann = raw.Annotations[a];
                if (ann.Ignore) { skippedIgnore++; continue; }
                double interW = Math.Max(0, Math.Min(ann.X + ann.W, image.Width) - Math.Max(ann.X, 0));
                double interH = Math.Max(0, Math.Min(ann.Y + ann.H, image.Height) - Math.Max(ann.Y, 0));
                if (interW * interH == 0) { skippedOutside++; continue; }
                if (ann.Area <= 0 || ann.W < 1 || ann.H < 1) { skippedSmall++; continue; }
                if (!labelOfCategory.TryGetValue(ann.CategoryId, out int label)) { skippedUnknown++; continue; }
                List<float> target = ann.Crowd ? crowd : boxes;
                target.Add((float)ann.X);
                target.Add((float)ann.Y);
                target.Add((float)(ann.X + ann.W));
                target.Add((float)(ann.Y + ann.H));
                if (!ann.Crowd) labels.Add(label);
            }
            gtTotal += labels.Count;
            crowdTotal += crowd.Count / 4;
            images.Add(new CocoImage(images.Count, image.Id, image.FileName, Path.Combine(imageRoot, image.FileName),
                image.Width, image.Height, [.. boxes], [.. labels], [.. crowd]));
        }

        var statistics = new CocoDatasetStatistics(
            raw.Images.Count, withoutKnown, tooSmall, raw.Categories.Count, raw.Annotations.Count, unlisted,
            gtTotal, crowdTotal, skippedIgnore, skippedOutside, skippedSmall, skippedUnknown);
        return new CocoDetectionDataset(sourceName, imageRoot, classNames.Count, [.. categories], [.. images], statistics);
    }
}
