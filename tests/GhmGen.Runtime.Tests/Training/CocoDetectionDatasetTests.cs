using System.Text;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>mmdetection's CocoDataset rules (docs/TRAINING.md) on hand-made annotation files.</summary>
public class CocoDetectionDatasetTests
{
    private static CocoDetectionDataset Parse(byte[] json, CocoDatasetOptions? options = null) =>
        CocoDetectionDataset.Parse(json, "train.json", "/data/images", options);

    [Fact]
    public void Labels_FollowTheJsonOrderOfCategoriesWithClassNames()
    {
        // Not sorted by id: dog (18), person (1), a category that is no COCO class, car (3).
        (long, string)[] categories = [(18, "dog"), (1, "person"), (99, "unicorn"), (3, "car")];
        TestImage[] images = [new(7, "a.jpg", 100, 80)];
        TestAnnotation[] annotations =
        [
            new(1, 7, 1, [0, 0, 10, 10]),
            new(2, 7, 3, [5, 5, 10, 10]),
            new(3, 7, 18, [8, 8, 10, 10]),
            new(4, 7, 99, [9, 9, 10, 10]),
        ];
        CocoDetectionDataset dataset = Parse(TrainingFixtures.CocoJson(images, annotations, categories));

        Assert.Equal(80, dataset.NumClasses);
        Assert.Equal([new CocoCategory(0, 18, "dog"), new CocoCategory(1, 1, "person"), new CocoCategory(2, 3, "car")], dataset.Categories);
        Assert.Equal([1, 2, 0], dataset.Images[0].GtLabels);
        Assert.Equal(1, dataset.Statistics.SkippedUnknownCategory);
    }

    [Fact]
    public void AnnotationFilter_SkipsIgnoredOutsideTinyAndUnknown_AndKeepsCrowdApart()
    {
        TestImage[] images = [new(1, "a.jpg", 100, 80)];
        TestAnnotation[] annotations =
        [
            new(10, 1, 1, [10, 20, 30, 40]),                       // kept: [10, 20, 40, 60]
            new(11, 1, 1, [10, 20, 30, 40], Extra: ", \"ignore\": 1"), // ignore flag
            new(12, 1, 1, [100, 10, 20, 20]),                      // touches the right edge only: no intersection
            new(13, 1, 1, [-30, 10, 30, 20]),                      // ends at x = 0: no intersection
            new(14, 1, 2, [90, 70, 30, 30]),                       // partly outside: kept unclipped [90, 70, 120, 100]
            new(15, 1, 1, [10, 10, 20, 20], Area: 0),              // area 0
            new(16, 1, 1, [10, 10, 0.99, 20]),                     // w < 1
            new(17, 1, 1, [10, 10, 20, 0.5]),                      // h < 1
            new(18, 1, 42, [10, 10, 20, 20]),                      // category 42 is not in the file
            new(19, 1, 3, [1.25, 2.5, 3.5, 4.75], IsCrowd: 1),     // crowd: apart, no label
            new(20, 1, 3, [0.1, 0.2, 3.3, 1.7]),                   // kept: x2 = 0.1 + 3.3 in double, then float32
            new(21, 1, 2, [5, 6, 7, 8], Extra: ", \"ignore\": false"),
        ];
        CocoDetectionDataset dataset = Parse(TrainingFixtures.CocoJson(images, annotations, TrainingFixtures.CocoFirstCategories));

        CocoImage image = Assert.Single(dataset.Images);
        Assert.Equal([10f, 20f, 40f, 60f, 90f, 70f, 120f, 100f, 0.1f, 0.2f, (float)(0.1 + 3.3), (float)(0.2 + 1.7), 5f, 6f, 12f, 14f], image.GtBoxes);
        Assert.Equal([0, 1, 2, 1], image.GtLabels);
        Assert.Equal([1.25f, 2.5f, 4.75f, 7.25f], image.CrowdBoxes);
        CocoDatasetStatistics s = dataset.Statistics;
        Assert.Equal((4, 1, 1, 2, 3, 1), (s.GtBoxes, s.CrowdBoxes, s.SkippedIgnoreFlag, s.SkippedOutsideImage, s.SkippedTooSmall, s.SkippedUnknownCategory));
        Assert.Equal("/data/images/a.jpg", image.FilePath);
    }

    [Fact]
    public void ImageFilter_DropsImagesWithoutKnownAnnotationsAndSmallOnes_KeepsCrowdOnlyImages()
    {
        TestImage[] images =
        [
            new(1, "no_annotations.jpg", 100, 100),
            new(2, "unknown_category_only.jpg", 100, 100),
            new(3, "crowd_only.jpg", 100, 100),
            new(4, "subpixel_only.jpg", 100, 100),
            new(5, "too_narrow.jpg", 31, 100),
            new(6, "just_big_enough.jpg", 32, 32),
            new(7, "ignore_flag_only.jpg", 64, 48),
        ];
        TestAnnotation[] annotations =
        [
            new(1, 2, 77, [1, 1, 10, 10]),
            new(2, 3, 1, [1, 1, 10, 10], IsCrowd: 1),
            new(3, 4, 2, [1, 1, 0.5, 0.5]),
            new(4, 5, 1, [1, 1, 10, 10]),
            new(5, 6, 3, [1, 1, 10, 10]),
            new(6, 7, 3, [1, 1, 10, 10], Extra: ", \"ignore\": true"),
            new(7, 12345, 1, [1, 1, 10, 10]), // an image that is not listed
        ];
        byte[] json = TrainingFixtures.CocoJson(images, annotations, TrainingFixtures.CocoFirstCategories);
        CocoDetectionDataset dataset = Parse(json);

        Assert.Equal(["crowd_only.jpg", "subpixel_only.jpg", "just_big_enough.jpg", "ignore_flag_only.jpg"], dataset.Images.Select(i => i.FileName));
        Assert.Equal([0, 1, 2, 3], dataset.Images.Select(i => i.Index));
        Assert.All(dataset.Images.Where(i => i.Id != 6), i => Assert.Empty(i.GtBoxes));
        Assert.Single(dataset.Images[0].CrowdBoxes.Chunk(4));
        CocoDatasetStatistics s = dataset.Statistics;
        Assert.Equal((7, 2, 1, 1), (s.ImagesInFile, s.ImagesWithoutKnownAnnotations, s.ImagesTooSmall, s.AnnotationsOfUnlistedImages));

        CocoDetectionDataset unfiltered = Parse(json, new CocoDatasetOptions(FilterEmptyGt: false, MinSize: 0));
        Assert.Equal(7, unfiltered.Count);
    }

    [Fact]
    public void ClassNames_CanBeChosen()
    {
        (long, string)[] categories = [(5, "b"), (2, "a"), (9, "zebra")];
        TestImage[] images = [new(1, "a.jpg", 50, 50)];
        TestAnnotation[] annotations = [new(1, 1, 2, [1, 1, 5, 5]), new(2, 1, 9, [1, 1, 5, 5]), new(3, 1, 5, [1, 1, 5, 5])];
        CocoDetectionDataset dataset = Parse(TrainingFixtures.CocoJson(images, annotations, categories), new CocoDatasetOptions(ClassNames: ["a", "b"]));
        Assert.Equal(2, dataset.NumClasses);
        Assert.Equal([1, 0], dataset.Images[0].GtLabels);
        Assert.Equal(1, dataset.Statistics.SkippedUnknownCategory);

        // More matching categories than classes would give labels the model does not have.
        var e = Assert.Throws<DatasetFormatException>(() =>
            Parse(TrainingFixtures.CocoJson(images, annotations, [(5, "a"), (2, "a"), (9, "b")]), new CocoDatasetOptions(ClassNames: ["a", "b"])));
        Assert.Equal("train.json: categories: 3 categories carry one of the 2 class names; labels would exceed the model's classes", e.Message);
    }

    public static TheoryData<string, string> MalformedFiles => new()
    {
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, 20]"), "train.json: annotations[0].bbox: expected 4 numbers, found 3" },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, 20, 15, 1]"), "train.json: annotations[0].bbox: expected 4 numbers, found more" },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, \"20\", 15]"), "train.json: annotations[0].bbox[2]: expected a finite number, found a string" },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": {}"), "train.json: annotations[0].bbox: expected 4 numbers, found an object" },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, 1e999, 15]"), "train.json: annotations[0].bbox[2]: expected a finite number, found a number" },
        { Replace("\"id\": 101}", "\"id\": \"101\"}"), "train.json: images[1].id: expected an integer, found a string" },
        { Replace("\"id\": 101}", "\"id\": 101.5}"), "train.json: images[1].id: expected an integer, found the number 101.5" },
        { Replace("\"height\": 36, \"width\": 49", "\"height\": 36, \"width\": 1e10"), "train.json: images[1].width: expected a 32-bit integer, found the number 1e10" },
        { Replace("\"file_name\": \"img001.png\", ", ""), "train.json: images[1]: missing \"file_name\"" },
        { Replace("\"area\": 300, ", ""), "train.json: annotations[0]: missing \"area\"" },
        { Replace("\"iscrowd\": 0, \"image_id\": 100", "\"iscrowd\": \"no\", \"image_id\": 100"), "train.json: annotations[0].iscrowd: expected a boolean or a number, found a string" },
        { Replace("\"id\": 1001}", "\"id\": 1000}"), "train.json: annotations[1].id: duplicate annotation id 1000 (also annotations[0])" },
        { Replace("\"id\": 101}", "\"id\": 100}"), "train.json: images[1].id: duplicate image id 100 (also images[0])" },
        { Replace("\"id\": 2, \"name\"", "\"id\": 1, \"name\""), "train.json: categories[1].id: duplicate category id 1 (also categories[0])" },
        { Replace("\"categories\": [", "\"categoriez\": ["), "train.json: missing \"categories\"" },
        { Replace("\"images\": [", "\"images\": 5, \"x\": ["), "train.json: images: expected an array, found a number" },
        { Replace("\"annotations\": [{", "\"annotations\": [7, {"), "train.json: annotations[0]: expected an object, found a number" },
        { "[1, 2, 3]", "train.json: expected a JSON object at the top level, found an array" },
        { "", "train.json: the file is empty" },
        { Replace("]}\n", "]} {}"), "train.json: malformed JSON: " },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, 20 15]"), "train.json: annotations[0].bbox: malformed JSON: " },
        { Replace("\"bbox\": [2, 3, 20, 15]", "\"bbox\": [2, 3, 20, 15"), "train.json: annotations[0].bbox: expected 4 numbers, found more" },
        { Valid()[..200], "train.json: images[1]: malformed JSON: " },
    };

    [Theory]
    [MemberData(nameof(MalformedFiles))]
    public void MalformedFile_NamesTheFileAndTheJsonPath(string json, string expectedMessage)
    {
        var e = Assert.Throws<DatasetFormatException>(() => Parse(Encoding.UTF8.GetBytes(json)));
        Assert.StartsWith(expectedMessage, e.Message);
        Assert.Equal("train.json", e.FileName);
    }

    [Fact]
    public void ValidTemplateOfTheMalformedCasesParses()
    {
        CocoDetectionDataset dataset = Parse(Encoding.UTF8.GetBytes(Valid()));
        Assert.Equal(3, dataset.Count);
    }

    [Fact]
    public void DeepNestingInASkippedField_IsAFormatErrorNotAStackOverflow()
    {
        string deep = Replace("\"segmentation\": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]", "\"segmentation\": " + new string('[', 100_000) + new string(']', 100_000));
        var e = Assert.Throws<DatasetFormatException>(() => Parse(Encoding.UTF8.GetBytes(deep)));
        Assert.StartsWith("train.json: annotations[0]: malformed JSON: ", e.Message);
    }

    [Fact]
    public void FileLargerThanTheLimit_IsRefusedBeforeParsing()
    {
        byte[] json = Encoding.UTF8.GetBytes(Valid());
        var e = Assert.Throws<DatasetFormatException>(() => Parse(json, new CocoDatasetOptions(MaxFileBytes: 100)));
        Assert.Equal($"train.json: the file is {json.Length} bytes, more than the 100-byte limit", e.Message);

        using var folder = new TempDataset();
        folder.WriteAnnotations(json);
        e = Assert.Throws<DatasetFormatException>(() => CocoDetectionDataset.Load(folder.AnnotationFile, folder.Root, new CocoDatasetOptions(MaxFileBytes: 100)));
        Assert.StartsWith($"{folder.AnnotationFile}: the file is", e.Message);
    }

    [Fact]
    public void Load_ReadsTheFileWithAByteOrderMark()
    {
        using var folder = new TempDataset();
        folder.WriteAnnotations([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(Valid())]);
        CocoDetectionDataset dataset = CocoDetectionDataset.Load(folder.AnnotationFile, folder.Root);
        Assert.Equal(3, dataset.Count);
        Assert.Equal(Path.Combine(folder.Root, "img000.png"), dataset.Images[0].FilePath);
        Assert.Equal(folder.AnnotationFile, dataset.SourceName);
    }

    // Three images (100, 101, 102), two annotations each (ids 1000..1005), categories 1..3.
    internal static string Valid()
    {
        var images = new List<TestImage>();
        var annotations = new List<TestAnnotation>();
        for (int i = 0; i < 3; i++)
        {
            images.Add(new TestImage(100 + i, $"img{i:D3}.png", 48 + i, 36));
            annotations.Add(new TestAnnotation(1000 + 2 * i, 100 + i, 1 + i, [2 + i, 3, 20, 15]));
            annotations.Add(new TestAnnotation(1001 + 2 * i, 100 + i, 1, [10, 8, 12.5, 20]));
        }
        return Encoding.UTF8.GetString(TrainingFixtures.CocoJson(images, annotations, TrainingFixtures.CocoFirstCategories));
    }

    private static string Replace(string what, string with)
    {
        string valid = Valid();
        int at = valid.IndexOf(what, StringComparison.Ordinal);
        Assert.True(at >= 0, $"'{what}' is not in the template");
        return valid[..at] + with + valid[(at + what.Length)..];
    }
}
