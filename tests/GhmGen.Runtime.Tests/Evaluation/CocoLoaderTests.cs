// CocoGroundTruth / CocoResults: what is read, and the message of every refusal (file name, section,
// 0-based entry index, field).
using System.Text;
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

public sealed class CocoLoaderTests
{
    private const string Images = "\"images\": [{\"id\": 3, \"file_name\": \"a.jpg\"}, {\"id\": 1}, {\"id\": 3}]";
    private const string Categories = "\"categories\": [{\"id\": 5, \"name\": \"dog\"}, {\"id\": 2, \"name\": \"cat\", \"supercategory\": \"animal\"}]";

    private static CocoGroundTruth Gt(string json) => CocoGroundTruth.Parse(Encoding.UTF8.GetBytes(json), "gt.json");

    private static CocoGroundTruth ValidGt() => Gt("{" + Images + ", " + Categories + ", \"annotations\": ["
        + "{\"id\": 10, \"image_id\": 1, \"category_id\": 2, \"bbox\": [1, 2, 3.5, 4], \"area\": 12.5, \"iscrowd\": 0, \"segmentation\": [[1, 2, 3, 4]], \"ignore\": 1},"
        + "{\"id\": 11, \"image_id\": 3, \"category_id\": 5, \"bbox\": [0, 0, 10, 10], \"area\": 100, \"iscrowd\": 1, \"segmentation\": {\"counts\": \"abc\", \"size\": [4, 4]}},"
        + "{\"id\": 12, \"image_id\": 99, \"category_id\": 5, \"bbox\": [0, 0, 10, 10], \"area\": 100}"
        + "], \"info\": {\"nested\": [1, [2, [3]]]}, \"licenses\": []}");

    private static CocoResults Res(string json, CocoGroundTruth gt, bool drop = false) =>
        CocoResults.Parse(Encoding.UTF8.GetBytes(json), "results.json", gt, drop);

    private static string GtMessage(string json) => Assert.Throws<CocoFormatException>(() => Gt(json)).Message;

    private static string ResMessage(string json) => Assert.Throws<CocoFormatException>(() => Res(json, ValidGt())).Message;

    private static string WithAnnotation(string annotation) => "{" + Images + ", " + Categories + ", \"annotations\": [" + annotation + "]}";

    private const string GoodAnnotation = "{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1}";

    [Fact]
    public void Ground_truth_reads_the_used_fields_and_skips_the_rest()
    {
        CocoGroundTruth gt = ValidGt();
        Assert.Equal([1L, 3L], gt.ImageIds);
        Assert.Equal([new CocoCategory(2, "cat"), new CocoCategory(5, "dog")], gt.Categories);
        Assert.Equal(3, gt.Annotations.Count);
        Assert.Equal(new CocoAnnotation(10, 1, 2, new CocoBox(1, 2, 3.5, 4), 12.5, false), gt.Annotations[0]);
        Assert.True(gt.Annotations[1].IsCrowd);
        Assert.Equal(1, gt.IndexOfImage(3));
        Assert.Equal(-1, gt.IndexOfImage(99));
        Assert.Equal(0, gt.IndexOfCategory(2));
        Assert.Equal("gt.json", gt.FileName);
    }

    [Fact]
    public void Ground_truth_accepts_a_byte_order_mark_no_annotations_boolean_iscrowd_and_missing_names()
    {
        byte[] bom = [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 7}]}")];
        CocoGroundTruth gt = CocoGroundTruth.Parse(bom, "gt.json");
        Assert.Empty(gt.Annotations);
        Assert.Equal("7", gt.Categories[0].Name);
        CocoGroundTruth crowd = Gt(WithAnnotation("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1, \"iscrowd\": true}"));
        Assert.True(crowd.Annotations[0].IsCrowd);
        CocoGroundTruth noCrowdField = Gt(WithAnnotation(GoodAnnotation));
        Assert.False(noCrowdField.Annotations[0].IsCrowd);
        CocoGroundTruth crowd2 = Gt(WithAnnotation("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1, \"iscrowd\": 2}"));
        Assert.True(crowd2.Annotations[0].IsCrowd);
    }

    [Theory]
    [InlineData("[]", "gt.json: the ground truth must be a JSON object")]
    [InlineData("{\"categories\": []}", "gt.json: missing 'images' (an array of {\"id\": ...} objects)")]
    [InlineData("{\"images\": []}", "gt.json: missing 'categories' (an array of {\"id\": ..., \"name\": ...} objects)")]
    [InlineData("{\"images\": {}, \"categories\": []}", "gt.json: 'images' must be an array")]
    [InlineData("{\"images\": [1], \"categories\": []}", "gt.json: images entry 0: must be an object")]
    [InlineData("{\"images\": [{\"id\": 1}, {\"file_name\": \"x\"}], \"categories\": []}", "gt.json: images entry 1: missing 'id'")]
    [InlineData("{\"images\": [{\"id\": \"1\"}], \"categories\": []}", "gt.json: images entry 0: 'id' must be an integer")]
    [InlineData("{\"images\": [{\"id\": 1.5}], \"categories\": []}", "gt.json: images entry 0: 'id' must be an integer")]
    [InlineData("{\"images\": [{\"id\": 1e30}], \"categories\": []}", "gt.json: images entry 0: 'id' must be an integer")]
    [InlineData("{\"images\": [{\"id\": 99999999999999999999}], \"categories\": []}", "gt.json: images entry 0: 'id' must be an integer")]
    [InlineData("{\"images\": [], \"categories\": [{\"id\": 1, \"name\": 3}]}", "gt.json: categories entry 0: 'name' must be a string")]
    [InlineData("{\"images\": [], \"categories\": [{\"name\": \"x\"}]}", "gt.json: categories entry 0: missing 'id'")]
    [InlineData("{\"images\": [], \"categories\": [], \"annotations\": 5}", "gt.json: 'annotations' must be an array")]
    public void Ground_truth_structure_errors(string json, string message)
    {
        Assert.Equal(message, GtMessage(json));
    }

    [Theory]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1], \"area\": 1}", "'bbox' must be an array of 4 numbers")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1, 1], \"area\": 1}", "'bbox' must be an array of 4 numbers")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, \"0\", 1, 1], \"area\": 1}", "'bbox' must be an array of 4 numbers")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1e400, 1], \"area\": 1}", "'bbox' must be an array of 4 numbers")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": {}, \"area\": 1}", "'bbox' must be an array of 4 numbers")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"area\": 1}", "missing 'bbox'")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1]}", "missing 'area'")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": null}", "'area' must be a number")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": -1e999}", "'area' must be a number")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1, \"iscrowd\": \"yes\"}", "'iscrowd' must be an integer (0 or 1)")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1, \"iscrowd\": 0.5}", "'iscrowd' must be an integer (0 or 1)")]
    [InlineData("{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1}", "missing 'id'")]
    [InlineData("{\"id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1}", "missing 'image_id'")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"bbox\": [0, 0, 1, 1], \"area\": 1}", "missing 'category_id'")]
    [InlineData("{\"id\": 1, \"image_id\": [1], \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"area\": 1}", "'image_id' must be an integer")]
    [InlineData("{\"id\": 1, \"image_id\": 1, \"category_id\": true, \"bbox\": [0, 0, 1, 1], \"area\": 1}", "'category_id' must be an integer")]
    public void Annotation_field_errors_name_the_entry_and_field(string annotation, string problem)
    {
        // The bad annotation is the second one: entry 1.
        Assert.Equal($"gt.json: annotations entry 1: {problem}", GtMessage(WithAnnotation(GoodAnnotation + ", " + annotation)));
    }

    [Fact]
    public void Duplicated_annotation_ids_are_refused()
    {
        string json = WithAnnotation(GoodAnnotation + ", " + GoodAnnotation.Replace("\"id\": 1,", "\"id\": 2,") + ", " + GoodAnnotation);
        Assert.Equal("gt.json: annotations entry 2: 'id' 1 repeats the id of entry 0; annotation ids must be unique", GtMessage(json));
    }

    [Fact]
    public void Malformed_json_names_the_section_and_entry()
    {
        string truncated = WithAnnotation(GoodAnnotation + ", " + GoodAnnotation)[..^30];
        Assert.StartsWith("gt.json: malformed JSON in annotations entry 1: ", GtMessage(truncated));
        Assert.StartsWith("gt.json: malformed JSON in the top level: ", GtMessage("{\"images\": [], \"categories\": []} x"));
        Assert.StartsWith("gt.json: malformed JSON in the top level: ", GtMessage(""));
        Assert.StartsWith("gt.json: malformed JSON in images entry 0: ", GtMessage("{\"images\": [{\"id\": 1,}], \"categories\": []}"));
        Assert.StartsWith("gt.json: malformed JSON in the top level: ", GtMessage("{\"images\": [], \"categories\": [], \"x\": " + new string('[', 100) + new string(']', 100) + "}"));
        Assert.StartsWith("gt.json: malformed JSON in the top level: ", GtMessage("{\"images\": [], \"categories\": [], \"x\": NaN}"));
    }

    [Fact]
    public void Too_many_categories_are_refused()
    {
        string categories = string.Join(", ", Enumerable.Range(1, CocoGroundTruth.MaxCategories + 1).Select(i => $"{{\"id\": {i}}}"));
        Assert.Equal($"gt.json: {CocoGroundTruth.MaxCategories + 1} categories; at most {CocoGroundTruth.MaxCategories} are supported",
            GtMessage("{\"images\": [], \"categories\": [" + categories + "]}"));
    }

    [Fact]
    public void Invalid_utf8_in_a_category_name_is_a_format_error()
    {
        byte[] json = [.. Encoding.UTF8.GetBytes("{\"images\": [], \"categories\": [{\"id\": 1, \"name\": \""), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}]}")];
        var e = Assert.Throws<CocoFormatException>(() => CocoGroundTruth.Parse(json, "gt.json"));
        Assert.StartsWith("gt.json: ", e.Message);
    }

    [Fact]
    public void Create_checks_like_parse()
    {
        CocoAnnotation a = new(4, 1, 1, new CocoBox(0, 0, 1, 1), 1, false);
        var e = Assert.Throws<CocoFormatException>(() => CocoGroundTruth.Create("mem", [1], [new CocoCategory(1, "x")], [a, a]));
        Assert.Equal("mem: annotations entry 1: 'id' 4 repeats the id of entry 0; annotation ids must be unique", e.Message);
        var nan = Assert.Throws<CocoFormatException>(() => CocoGroundTruth.Create("mem", [1], [new CocoCategory(1, "x")], [a with { Area = double.NaN }]));
        Assert.Equal("mem: annotations entry 0: 'area' must be a number", nan.Message);
    }

    [Fact]
    public void Results_read_the_used_fields_in_file_order()
    {
        CocoResults r = Res("[{\"image_id\": 3, \"category_id\": 5, \"bbox\": [1, 2, 3, 4], \"score\": 0.5, \"area\": 99, \"segmentation\": [[1]]},"
            + "{\"score\": 0.25, \"bbox\": [0, 0, 1, 1], \"category_id\": 2, \"image_id\": 1}]", ValidGt());
        Assert.Equal(2, r.Detections.Count);
        Assert.Equal(new CocoDetection(3, 5, new CocoBox(1, 2, 3, 4), 0.5), r.Detections[0]);
        Assert.Equal(0.25, r.Detections[1].Score);
        Assert.Equal(0, r.DroppedUnknownCategory);
        Assert.Empty(Res("[]", ValidGt()).Detections);
    }

    [Fact]
    public void Results_entry_17_with_a_bad_bbox()
    {
        var entries = Enumerable.Repeat("{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}", 17).ToList();
        entries.Add("{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1], \"score\": 0.5}");
        Assert.Equal("results.json: entry 17: 'bbox' must be an array of 4 numbers", ResMessage("[" + string.Join(",", entries) + "]"));
    }

    [Theory]
    [InlineData("{}", "results.json: the results must be a JSON array of {\"image_id\", \"category_id\", \"bbox\", \"score\"} objects")]
    [InlineData("[1]", "results.json: entry 0: must be an object")]
    [InlineData("[{\"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "results.json: entry 0: missing 'image_id'")]
    [InlineData("[{\"image_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "results.json: entry 0: missing 'category_id'")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2, \"score\": 0.5}]", "results.json: entry 0: missing 'bbox'")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1]}]", "results.json: entry 0: missing 'score'")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": \"high\"}]", "results.json: entry 0: 'score' must be a number")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 1e309}]", "results.json: entry 0: 'score' must be a number")]
    [InlineData("[{\"image_id\": \"1\", \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "results.json: entry 0: 'image_id' must be an integer")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2.0, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "results.json: entry 0: 'category_id' must be an integer")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}, {\"image_id\": 99, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]",
        "results.json: entry 1: 'image_id' 99 is not an image of the ground truth 'gt.json'")]
    [InlineData("[{\"image_id\": 1, \"category_id\": 4, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", "results.json: entry 0: 'category_id' 4 is not a category of the ground truth 'gt.json'")]
    public void Results_errors(string json, string message)
    {
        Assert.Equal(message, ResMessage(json));
    }

    [Fact]
    public void Results_malformed_json_names_the_entry()
    {
        const string one = "{\"image_id\": 1, \"category_id\": 2, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}";
        Assert.StartsWith("results.json: entry 2: malformed JSON: ", ResMessage("[" + one + "," + one + "," + one[..20]));
        Assert.StartsWith("results.json: malformed JSON: ", ResMessage("[" + one + "] ]"));
        Assert.StartsWith("results.json: entry 1: malformed JSON: ", ResMessage("[" + one + ","));
        Assert.StartsWith("results.json: entry 0: malformed JSON: ", ResMessage("[{\"image_id\": 1"));
        Assert.StartsWith("results.json: entry 0: malformed JSON: ", ResMessage("[{\"image_id\": 1, \"bbox\": [1, 2"));
        Assert.StartsWith("results.json: entry 0: malformed JSON: ", ResMessage("[{\"image_id\": 1, \"x\": " + new string('[', 70) + new string(']', 70) + "}]"));
    }

    [Fact]
    public void Unknown_categories_can_be_dropped_as_pycocotools_does()
    {
        CocoResults r = Res("[{\"image_id\": 1, \"category_id\": 4, \"bbox\": [0, 0, 1, 1], \"score\": 0.5},"
            + "{\"image_id\": 1, \"category_id\": 2, \"bbox\": [1, 2, 3.5, 4], \"score\": 0.4}]", ValidGt(), drop: true);
        Assert.Equal(1, r.DroppedUnknownCategory);
        Assert.Single(r.Detections);
        // An unknown image is refused even so.
        var e = Assert.Throws<CocoFormatException>(() => Res("[{\"image_id\": 7, \"category_id\": 4, \"bbox\": [0, 0, 1, 1], \"score\": 0.5}]", ValidGt(), drop: true));
        Assert.Equal("results.json: entry 0: 'image_id' 7 is not an image of the ground truth 'gt.json'", e.Message);
    }

    [Fact]
    public void Results_create_checks_like_parse()
    {
        CocoGroundTruth gt = ValidGt();
        var e = Assert.Throws<CocoFormatException>(() => CocoResults.Create(gt, [new CocoDetection(1, 2, new CocoBox(0, 0, double.PositiveInfinity, 1), 0.5)]));
        Assert.Equal("detections: entry 0: 'bbox' must be an array of 4 numbers", e.Message);
        Assert.Single(CocoResults.Create(gt, [new CocoDetection(1, 2, new CocoBox(0, 0, 1, 1), 0.5)]).Detections);
    }

    [Fact]
    public void Load_reads_files_from_disk()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ghmgen-coco-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var c = new CocoCase().Gt(10, 10, 100, 100).Dt(10, 10, 100, 100, 0.9);
            string gtPath = Path.Combine(dir, "gt.json"), resPath = Path.Combine(dir, "res.json");
            File.WriteAllBytes(gtPath, c.GroundTruthJson());
            File.WriteAllBytes(resPath, c.ResultsJson());
            CocoGroundTruth gt = CocoGroundTruth.Load(gtPath);
            CocoResults res = CocoResults.Load(resPath, gt);
            Assert.Equal(gtPath, gt.FileName);
            Assert.Equal(0.9999999999999998, CocoEvaluator.Evaluate(res).Summary.AP);
            File.WriteAllText(resPath, "[{\"image_id\": 1, \"category_id\"");
            string message = Assert.Throws<CocoFormatException>(() => CocoResults.Load(resPath, gt)).Message;
            Assert.True(message.StartsWith($"{resPath}: entry 0: malformed JSON: ", StringComparison.Ordinal), message);
            Assert.Throws<FileNotFoundException>(() => CocoGroundTruth.Load(Path.Combine(dir, "missing.json")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
