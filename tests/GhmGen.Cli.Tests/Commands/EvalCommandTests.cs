using System.Text.Json;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm eval</c> on hand-made ground-truth and results files.</summary>
public sealed class EvalCommandTests : IDisposable
{
    // Three images; person and car have one box each, dog two (one small, one large), cat none.
    private const string GroundTruth = """
        {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}, {"id": 7, "file_name": "c.png"}],
         "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}, {"id": 17, "name": "cat"}],
         "annotations": [
           {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "area": 800, "iscrowd": 0},
           {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 5, 30, 20], "area": 600, "iscrowd": 0},
           {"id": 3, "image_id": 7, "category_id": 18, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0},
           {"id": 4, "image_id": 7, "category_id": 18, "bbox": [10, 10, 150, 100], "area": 15000, "iscrowd": 0}]}
        """;

    private const string Perfect = """
        [{"image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "score": 0.9},
         {"image_id": 2, "category_id": 3, "bbox": [10, 5, 30, 20], "score": 0.8},
         {"image_id": 7, "category_id": 18, "bbox": [0, 0, 20, 20], "score": 0.7},
         {"image_id": 7, "category_id": 18, "bbox": [10, 10, 150, 100], "score": 0.6}]
        """;

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "ghm-eval-" + Guid.NewGuid().ToString("N"));

    public EvalCommandTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void PerfectDetections_PrintTheSummaryWith1000_AndMinus1ForAnAreaWithoutGroundTruth()
    {
        string gt = Write("gt.json", GroundTruth), results = Write("res.json", Perfect);
        (int code, string output, string error) = Run("eval", "--ann", gt, "--results", results);
        Assert.Equal(0, code);
        Assert.Equal("", error);
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(12, lines.Length);
        Assert.Equal(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000", lines[0]);
        Assert.Equal(" Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000", lines[1]);
        Assert.Equal(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000", lines[4]);
        Assert.Equal(" Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.833", lines[6]); // (1 + 1 + 0.5) / 3: dog's second box needs 2 detections
        Assert.Equal(" Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000", lines[8]);
        Assert.All(lines.Where((_, i) => i is not 4 and not 6 and not 10), l => Assert.EndsWith("= 1.000", l));
        Assert.EndsWith("= -1.000", lines[10]);
    }

    [Fact]
    public void Json_IsTheLastLine_WithEveryFigureInFull_AndNullForACategoryWithoutGroundTruth()
    {
        string gt = Write("gt.json", GroundTruth);
        // One miss: a car box shifted by half its width (IoU 1/3).
        string results = Write("res.json", Perfect.Replace("[10, 5, 30, 20], \"score\": 0.8", "[25, 5, 30, 20], \"score\": 0.8"));
        (int code, string output, string error) = Run("eval", "--ann", gt, "--results", results, "--json");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(13, lines.Length);

        CocoGroundTruth groundTruth = CocoGroundTruth.Load(gt);
        CocoEvaluation expected = CocoEvaluator.Evaluate(CocoResults.Load(results, groundTruth));
        using JsonDocument doc = JsonDocument.Parse(lines[^1]);
        JsonElement root = doc.RootElement;
        Assert.Equal([.. CocoSummary.Keys, "per_class"], root.EnumerateObject().Select(p => p.Name));
        for (int i = 0; i < 12; i++) Assert.Equal(expected.Summary.Stats[i], root.GetProperty(CocoSummary.Keys[i]).GetDouble());
        Assert.Equal(-1, root.GetProperty("APm").GetDouble());
        JsonElement perClass = root.GetProperty("per_class");
        Assert.Equal(["person", "car", "cat", "dog"], perClass.EnumerateObject().Select(p => p.Name)); // category id order
        Assert.Equal(0, perClass.GetProperty("car").GetDouble());
        Assert.Equal(JsonValueKind.Null, perClass.GetProperty("cat").ValueKind);
        // pycocotools' precision is tp / (tp + fp + eps): 1 / (1 + eps) is just under 1, 2 / (2 + eps) rounds to 1.
        Assert.Equal(0.9999999999999998, perClass.GetProperty("person").GetDouble());
        Assert.Equal(1.0, perClass.GetProperty("dog").GetDouble());
    }

    [Fact]
    public void Classwise_PrintsMmdetectionsTable_ThreePairsARow()
    {
        string gt = Write("gt.json", GroundTruth), results = Write("res.json", Perfect);
        (int code, string output, string error) = Run("eval", "--ann", gt, "--results", results, "--classwise", "--json");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(
        [
            "+----------+-------+----------+-------+----------+-----+",
            "| category | AP    | category | AP    | category | AP  |",
            "+----------+-------+----------+-------+----------+-----+",
            "| person   | 1.000 | car      | 1.000 | cat      | nan |",
            "| dog      | 1.000 |          |       |          |     |",
            "+----------+-------+----------+-------+----------+-----+",
        ], lines[12..^1]);
        Assert.StartsWith("{\"AP\":", lines[^1]);
    }

    [Fact]
    public void TwoCategoriesWithOneName_AreKeyedByNameAndId()
    {
        string gt = Write("gt.json", """
            {"images": [{"id": 1}], "categories": [{"id": 4, "name": "dog"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cat"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 100}]}
            """);
        string results = Write("res.json", """[{"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 1}]""");
        (int code, string output, string error) = Run("eval", "--ann", gt, "--results", results, "--json");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.EndsWith("\"per_class\":{\"dog (id 2)\":0.9999999999999998,\"cat\":null,\"dog (id 4)\":null}}\n", output);
    }

    public static TheoryData<string, string> BadResults => new()
    {
        { """[{"image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "score": 0.9}, {"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]""",
            "entry 1: 'image_id' 5 is not an image of the ground truth 'GT'" },
        { """[{"image_id": 1, "category_id": 2, "bbox": [5, 10, 20, 40], "score": 0.9}]""",
            "entry 0: 'category_id' 2 is not a category of the ground truth 'GT'" },
        { """[{"image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "score": 0.9},""",
            "entry 1: malformed JSON: " },
        { """[{"image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "score": 0.9}, {"image_id": 1, "category_id": 1, "score": 0.9}]""",
            "entry 1: missing 'bbox'" },
        { """[{"image_id": 1, "category_id": 1, "bbox": [5, 10, 20], "score": 0.9}]""",
            "entry 0: 'bbox' must be an array of 4 numbers" },
        { """{"image_id": 1}""",
            "the results must be a JSON array of {\"image_id\", \"category_id\", \"bbox\", \"score\"} objects" },
    };

    [Theory]
    [MemberData(nameof(BadResults))]
    public void BadResults_AreExit2_NamingTheFileAndTheEntry_WithNothingOnStdout(string text, string problem)
    {
        string gt = Write("gt.json", GroundTruth), results = Write("res.json", text);
        (int code, string output, string error) = Run("eval", "--ann", gt, "--results", results, "--json");
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.StartsWith($"ghm eval: {results}: {problem.Replace("GT", gt)}", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void BadGroundTruthOrMissingFiles_AreExit2()
    {
        string gt = Write("gt.json", GroundTruth), results = Write("res.json", Perfect);
        string noCategories = Write("bad-gt.json", """{"images": [{"id": 1}], "annotations": []}""");
        string badEntry = Write("bad-entry.json", """{"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 4}]}""");
        string missing = Path.Combine(_folder, "missing.json");
        (string[] Args, string Expected)[] cases =
        [
            (["--ann", noCategories, "--results", results], $"ghm eval: {noCategories}: missing 'categories' (an array of {{\"id\": ..., \"name\": ...}} objects)"),
            (["--ann", badEntry, "--results", results], $"ghm eval: {badEntry}: annotations entry 0: missing 'bbox'"),
            (["--ann", missing, "--results", results], $"ghm eval: --ann '{missing}' does not exist"),
            (["--ann", gt, "--results", missing], $"ghm eval: --results '{missing}' does not exist"),
            (["--ann", _folder, "--results", results], $"ghm eval: --ann '{_folder}' is a folder; give a COCO .json file"),
        ];
        foreach ((string[] args, string expected) in cases)
        {
            (int code, string output, string error) = Run(["eval", .. args]);
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Equal(expected, error.TrimEnd());
        }
        (int c, string o, string e) = Run("eval", "--ann", gt);
        Assert.Equal(2, c);
        Assert.Equal("", o);
        Assert.Contains("ghm eval: Option '--results' is required.", e);
    }
}
