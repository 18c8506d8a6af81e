using System.Text.Json;
using GhmGen.Datasets;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Tests.Commands;

/// <summary>
/// <c>ghm test</c> end to end on three fixture images with a checkpoint of seeded (untrained)
/// weights: the figures are meaningless, but the run, the results file and the evaluation of it
/// are checked. Images are resized to fit 160x96 (<c>--scale</c>) to keep the tests fast.
/// </summary>
public sealed class TestCommandTests : IClassFixture<DetectCommandTests.SeededCheckpoint>
{
    private const string R50 = "retinanet-ghm-r50-fpn";

    // COCO category names and ids: the detector's labels map to them by name. Image order in the
    // file (3, 1, 2) is not id order, so the results must follow the file.
    private const string GroundTruth = """
        {"images": [{"id": 3, "file_name": "img53x37.png", "width": 53, "height": 37},
                    {"id": 1, "file_name": "sub/img40x61.png", "width": 40, "height": 61},
                    {"id": 2, "file_name": "img53x37.jpg", "width": 53, "height": 37}],
         "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 10, 20, 40], "area": 800, "iscrowd": 0},
                         {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 5, 30, 20], "area": 600, "iscrowd": 0},
                         {"id": 3, "image_id": 3, "category_id": 18, "bbox": [0, 0, 53, 37], "area": 1961, "iscrowd": 0}]}
        """;

    private readonly DetectCommandTests.SeededCheckpoint _checkpoint;

    public TestCommandTests(DetectCommandTests.SeededCheckpoint checkpoint) => _checkpoint = checkpoint;

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name);

    /// <summary>A fresh folder with the three images (one in a subfolder) and <c>gt.json</c>.</summary>
    private string NewDataset(string groundTruth = GroundTruth)
    {
        string folder = Path.Combine(_checkpoint.Directory, Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path.Combine(folder, "images", "sub"));
        File.Copy(Fixture("img53x37.png"), Path.Combine(folder, "images", "img53x37.png"));
        File.Copy(Fixture("img40x61.png"), Path.Combine(folder, "images", "sub", "img40x61.png"));
        File.Copy(Fixture("img53x37.jpg"), Path.Combine(folder, "images", "img53x37.jpg"));
        File.WriteAllText(Path.Combine(folder, "gt.json"), groundTruth);
        return folder;
    }

    private string[] TestArgs(string folder, params string[] more) =>
    [
        "test", "--model", R50, "--checkpoint", _checkpoint.Path_, "--ann", Path.Combine(folder, "gt.json"),
        "--images", Path.Combine(folder, "images"), "--device", "cpu", "--scale", "160x96", .. more,
    ];

    [Fact]
    public void DetectsEveryImage_WritesCocoResults_AndPrintsTheirEvaluation()
    {
        string folder = NewDataset();
        string results = Path.Combine(folder, "res.json");
        (int code, string output, string error) = Run(TestArgs(folder, "--out", results, "--json"));

        Assert.Equal(0, code);
        Assert.Contains("ghm test: note: '" + Path.Combine(folder, "gt.json") + "' has 3 of the detector's 80 classes (matched by name); detections of the other 77 are left out", error);
        Assert.Matches(@"ghm test: 3 images detected in \d+\.\d\d s \(\d+\.\d{3} s per image, batch 1\), \d+ detections", error);
        Assert.Equal(["gt.json", "images", "res.json"], Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // A valid results file of this ground truth, in file order of the images, best first within each.
        CocoGroundTruth groundTruth = CocoGroundTruth.Load(Path.Combine(folder, "gt.json"));
        CocoResults loaded = CocoResults.Load(results, groundTruth);
        Assert.NotEmpty(loaded.Detections);
        long[] order = [3, 1, 2];
        int[] positions = loaded.Detections.Select(d => Array.IndexOf(order, d.ImageId)).ToArray();
        Assert.DoesNotContain(-1, positions);
        Assert.Equal(positions.Order(), positions);
        Assert.All(loaded.Detections, d => Assert.Contains(d.CategoryId, new long[] { 1, 3, 18 }));
        Assert.All(loaded.Detections, d => Assert.True(d.Score >= 0.05 && d.Box.Width > 0 && d.Box.Height > 0));
        foreach (IGrouping<long, CocoDetection> image in loaded.Detections.GroupBy(d => d.ImageId))
        {
            Assert.True(image.Count() <= 100);
            Assert.Equal(image.Select(d => d.Score).OrderDescending(), image.Select(d => d.Score));
        }
        using (JsonDocument file = JsonDocument.Parse(File.ReadAllText(results)))
            Assert.All(file.RootElement.EnumerateArray(), e => Assert.Equal(["image_id", "category_id", "bbox", "score"], e.EnumerateObject().Select(p => p.Name)));

        // The summary, then the JSON line, equal to evaluating the written file.
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(13, lines.Length);
        Assert.StartsWith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = ", lines[0]);
        Assert.StartsWith(" Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = ", lines[11]);
        CocoEvaluation expected = CocoEvaluator.Evaluate(loaded);
        Assert.Equal(expected.Summary.Format(), string.Join("\n", lines[..12]) + "\n");
        using JsonDocument json = JsonDocument.Parse(lines[12]);
        for (int i = 0; i < 12; i++) Assert.Equal(expected.Summary.Stats[i], json.RootElement.GetProperty(CocoSummary.Keys[i]).GetDouble());
        JsonElement perClass = json.RootElement.GetProperty("per_class");
        Assert.Equal(["person", "car", "dog"], perClass.EnumerateObject().Select(p => p.Name));
        for (int k = 0; k < 3; k++) Assert.Equal(expected.PerCategory[k].AP, perClass.GetProperty(expected.PerCategory[k].Category.Name).GetDouble());

        // ghm eval of the written file prints the same.
        (int evalCode, string evalOutput, string evalError) = Run("eval", "--ann", Path.Combine(folder, "gt.json"), "--results", results, "--json");
        Assert.Equal(0, evalCode);
        Assert.Equal("", evalError);
        Assert.Equal(output, evalOutput);
    }

    [Fact]
    public void TwoImagesInFlight_GiveTheSameResultsInTheSameOrder()
    {
        string folder = NewDataset();
        string one = Path.Combine(folder, "one.json"), two = Path.Combine(folder, "two.json");
        (int code1, string output1, _) = Run(TestArgs(folder, "--out", one, "--batch", "1"));
        (int code2, string output2, string error2) = Run(TestArgs(folder, "--out", two, "--batch", "2", "--classwise"));
        Assert.Equal(0, code1);
        Assert.Equal(0, code2);
        Assert.Contains("batch 2)", error2);
        Assert.Equal(File.ReadAllText(one), File.ReadAllText(two));
        Assert.StartsWith(output1, output2);
        Assert.Contains("| category | AP    | category | AP    | category | AP    |", output2);
    }

    [Fact]
    public void ACorruptOrMissingImage_IsReportedAndSkipped_AndTheOthersEvaluated_Exit1()
    {
        string withBroken = GroundTruth
            .Replace("""{"id": 2, "file_name": "img53x37.jpg", "width": 53, "height": 37}""",
                """{"id": 2, "file_name": "img53x37.jpg", "width": 53, "height": 37}, {"id": 9, "file_name": "broken.png"}, {"id": 10, "file_name": "gone.jpg"}""");
        string folder = NewDataset(withBroken);
        string broken = Path.Combine(folder, "images", "broken.png"), gone = Path.Combine(folder, "images", "gone.jpg");
        File.WriteAllText(broken, "not an image");
        string results = Path.Combine(folder, "res.json");
        (int code, string output, string error) = Run(TestArgs(folder, "--out", results, "--json", "--batch", "2"));

        Assert.Equal(1, code);
        Assert.Contains($"ghm test: skipped image id 9 '{broken}': image file '{broken}' is neither a JPEG nor a PNG file", error);
        Assert.Contains($"ghm test: skipped image id 10 '{gone}': image file '{gone}' does not exist", error);
        Assert.Contains("ghm test: 2 of 5 images skipped", error);
        Assert.Contains("ghm test: 3 images detected in ", error);
        CocoGroundTruth groundTruth = CocoGroundTruth.Load(Path.Combine(folder, "gt.json"));
        CocoResults loaded = CocoResults.Load(results, groundTruth);
        Assert.Equal([3, 1, 2], loaded.Detections.Select(d => d.ImageId).Distinct());

        // The other images' results are those of a run without the bad ones.
        string clean = NewDataset();
        string cleanResults = Path.Combine(clean, "res.json");
        Assert.Equal(0, Run(TestArgs(clean, "--out", cleanResults)).Code);
        Assert.Equal(File.ReadAllText(cleanResults), File.ReadAllText(results));
        string[] lines = output.TrimEnd('\n').Split('\n');
        Assert.Equal(13, lines.Length);
        using JsonDocument json = JsonDocument.Parse(lines[12]);
        Assert.Equal(CocoEvaluator.Evaluate(loaded).Summary.AP, json.RootElement.GetProperty("AP").GetDouble());
    }

    [Fact]
    public void CategoriesThatAreNotClassNames_AreMappedByPosition()
    {
        // A synthetic shapes val split: circle, square, triangle, star (ids 1 to 4).
        string folder = Path.Combine(_checkpoint.Directory, Guid.NewGuid().ToString("N")[..8]);
        SyntheticShapesSummary set = SyntheticShapes.Write(folder, new SyntheticShapesOptions
        {
            Seed = 5, TrainImages = 0, ValImages = 3, MinImageSide = 64, MaxImageSide = 96, MaxDegreeOfParallelism = 1,
        });
        (int code, string output, string error) = Run("test", "--model", R50, "--checkpoint", _checkpoint.Path_,
            "--ann", set.Val.AnnotationFile, "--images", set.Val.ImageDirectory, "--device", "cpu", "--scale", "96x64", "--json");

        Assert.Equal(0, code);
        Assert.Contains($"ghm test: note: the category names of '{set.Val.AnnotationFile}' are not all class names of the detector; " +
            "label k is written as the k-th of its 4 categories (file order), detections of labels 4 to 79 are left out", error);
        string[] lines = output.TrimEnd('\n').Split('\n');
        using JsonDocument json = JsonDocument.Parse(lines[^1]);
        Assert.Equal(["circle", "square", "triangle", "star"], json.RootElement.GetProperty("per_class").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void BadAnnotationFileOrOutputs_AreExit2_BeforeTheCheckpointIsRead()
    {
        string folder = NewDataset();
        string noFileName = Path.Combine(folder, "no-file-name.json");
        File.WriteAllText(noFileName, GroundTruth.Replace("""{"id": 1, "file_name": "sub/img40x61.png", """, """{"id": 1, """));
        string malformed = Path.Combine(folder, "malformed.json");
        File.WriteAllText(malformed, GroundTruth[..200]);
        string gt = Path.Combine(folder, "gt.json"), images = Path.Combine(folder, "images");
        string missingFolder = Path.Combine(folder, "no-such");
        string noCheckpoint = Path.Combine(folder, "missing.pth"); // reading it would fail: every case stops before
        (string[] Args, string Expected)[] cases =
        [
            (["--ann", noFileName, "--images", images], $"ghm test: {noFileName}: images entry 1: missing 'file_name' (the image's path relative to --images)"),
            (["--ann", malformed, "--images", images], $"ghm test: {malformed}: malformed JSON in images entry 2: "),
            (["--ann", Path.Combine(folder, "none.json"), "--images", images], $"ghm test: --ann '{Path.Combine(folder, "none.json")}' does not exist"),
            (["--ann", gt, "--images", missingFolder], $"ghm test: --images '{missingFolder}' does not exist"),
            (["--ann", gt, "--images", images, "--out", Path.Combine(missingFolder, "r.json")],
                $"ghm test: --out '{Path.Combine(missingFolder, "r.json")}': the folder '{missingFolder}' does not exist"),
            (["--ann", gt, "--images", images, "--out", gt], $"ghm test: --out '{gt}' and --ann '{gt}' would both be '{gt}'"),
            (["--ann", gt, "--images", images, "--out", Path.Combine(images, "img53x37.jpg")],
                $"ghm test: --out '{Path.Combine(images, "img53x37.jpg")}' and image '{Path.Combine(images, "img53x37.jpg")}' would both be"),
        ];
        foreach ((string[] args, string expected) in cases)
        {
            (int code, string output, string error) = Run(["test", "--model", R50, "--checkpoint", noCheckpoint, .. args]);
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.StartsWith(expected, error);
        }
        Assert.Equal(["gt.json", "images", "malformed.json", "no-file-name.json"], Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
