using System.Text.Json;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm detect</c> end to end on fixture images with a checkpoint of seeded weights.</summary>
public sealed class DetectCommandTests : IClassFixture<DetectCommandTests.SeededCheckpoint>
{
    private readonly SeededCheckpoint _checkpoint;

    public DetectCommandTests(SeededCheckpoint checkpoint) => _checkpoint = checkpoint;

    /// <summary>One R-50 checkpoint with seeded weights, written once by <c>ghm checkpoint seed</c>.</summary>
    public sealed class SeededCheckpoint : IDisposable
    {
        public SeededCheckpoint()
        {
            Directory = Path.Combine(Path.GetTempPath(), "ghm-detect-" + Guid.NewGuid().ToString("N"));
            System.IO.Directory.CreateDirectory(Directory);
            Path_ = System.IO.Path.Combine(Directory, "r50.pth");
            int code = GhmCommand.Run(["checkpoint", "seed", "--model", "retinanet-ghm-r50-fpn", "--out", Path_], new StringWriter(), new StringWriter());
            if (code != 0) throw new InvalidOperationException("ghm checkpoint seed failed");
        }

        public string Directory { get; }

        public string Path_ { get; }

        public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name);

    private (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private const string R50 = "retinanet-ghm-r50-fpn";

    /// <summary>A fresh folder under the fixture's, for one test's inputs and outputs.</summary>
    private string NewFolder()
    {
        string folder = Path.Combine(_checkpoint.Directory, Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static string Copy(string fixture, string folder, string name)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, name);
        File.Copy(Fixture(fixture), path);
        return path;
    }

    [Fact]
    public void DetectsWritesRawOutputsAndDrawings_AndSkipsABadImage()
    {
        string work = NewFolder();
        string bad = Path.Combine(work, "broken.png");
        File.WriteAllText(bad, "not an image");
        string raw = Path.Combine(work, "raw"), drawn = Path.Combine(work, "drawn");
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", _checkpoint.Path_,
            "--device", "cpu", "--save-raw", raw, "--draw", drawn, Fixture("img40x61.png"), bad);

        Assert.Equal(1, code); // the bad image is reported, the other one still detected
        Assert.Contains($"ghm detect: skipped '{bad}': image file '{bad}' is neither a JPEG nor a PNG file", error);
        Assert.Contains("ghm detect: 1 of 2 images skipped", error);
        using JsonDocument doc = JsonDocument.Parse(output);
        JsonElement[] detections = doc.RootElement.EnumerateArray().ToArray();
        Assert.Equal(100, detections.Length); // seeded weights score far above 0.05 everywhere: max_per_img
        Assert.All(detections, d => Assert.Equal("img40x61.png", d.GetProperty("image").GetString()));
        double[] scores = detections.Select(d => d.GetProperty("score").GetDouble()).ToArray();
        Assert.Equal(scores.OrderByDescending(s => s), scores);
        foreach (JsonElement d in detections)
        {
            double[] box = d.GetProperty("bbox").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.True(box[0] >= 0 && box[1] >= 0 && box[0] + box[2] <= 40.01 && box[1] + box[3] <= 61.01, "box outside the 40x61 image");
            Assert.True(box[2] > 0 && box[3] > 0);
        }
        Assert.Equal(10, Directory.GetFiles(Path.Combine(raw, "img40x61.png"), "*.npy").Length);
        byte[] png = File.ReadAllBytes(Path.Combine(drawn, "img40x61.png.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        Assert.Equal(["img40x61.png.png"], Directory.GetFileSystemEntries(drawn).Select(Path.GetFileName));
    }

    [Fact]
    public void UnknownModel_StopsWithExitCode2()
    {
        (int code, string output, string error) = Run("detect", "--model", "retinanet-r50", "--checkpoint", _checkpoint.Path_, Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("ghm detect: unknown model 'retinanet-r50'; known models: retinanet-ghm-r50-fpn, ", error);
        Assert.DoesNotContain("(Parameter", error);
    }

    [Fact]
    public void CheckpointOfAnotherModel_GetsASummaryAndTheModelItFits()
    {
        (int code, string output, string error) = Run("detect", "--model", "retinanet-ghm-r101-fpn", "--checkpoint", _checkpoint.Path_, Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Equal("", output);
        string[] lines = error.TrimEnd().Split(Environment.NewLine);
        Assert.Equal("ghm detect: checkpoint 'r50.pth' does not fit network 'retinanet-ghm-r101-fpn': 358 loaded, 306 missing, 0 unexpected, 0 mismatched", lines[0]);
        Assert.Equal(5, lines.Count(l => l.StartsWith("  missing in checkpoint: backbone.layer3.", StringComparison.Ordinal)));
        Assert.Contains("  ... and 301 more missing", lines);
        Assert.Contains("  the file is a checkpoint of retinanet-ghm-r50-fpn: use --model retinanet-ghm-r50-fpn", lines);
        Assert.True(lines.Length <= 10, $"{lines.Length} lines:\n{error}");
    }

    [Fact]
    public void NotACheckpoint_StopsNamingTheFile()
    {
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", Fixture("img40x61.png"), Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("ghm detect: checkpoint 'img40x61.png': ", error);
    }

    [Fact]
    public void BadOutputPaths_StopBeforeTheCheckpointIsRead()
    {
        // The checkpoint does not exist: each output problem must be found before it is opened.
        string work = NewFolder();
        string missing = Path.Combine(work, "no-such-folder");
        string file = Path.Combine(work, "file.txt");
        File.WriteAllText(file, "");
        string[][] cases =
        [
            ["--out", Path.Combine(missing, "r.json")],
            ["--out", work],
            ["--draw", Path.Combine(missing, "drawn")],
            ["--draw", file],
            ["--save-raw", Path.Combine(missing, "raw")],
            ["--save-raw", file],
        ];
        string[] expected =
        [
            $"ghm detect: --out '{Path.Combine(missing, "r.json")}': the folder '{missing}' does not exist",
            $"ghm detect: --out '{work}' is a folder; give a file name",
            $"ghm detect: --draw '{Path.Combine(missing, "drawn")}': its parent folder '{missing}' does not exist (only the last level is created)",
            $"ghm detect: --draw '{file}' is a file; give a folder",
            $"ghm detect: --save-raw '{Path.Combine(missing, "raw")}': its parent folder '{missing}' does not exist (only the last level is created)",
            $"ghm detect: --save-raw '{file}' is a file; give a folder",
        ];
        for (int i = 0; i < cases.Length; i++)
        {
            (int code, string output, string error) = Run(["detect", "--model", R50, "--checkpoint", Path.Combine(missing, "x.pth"), .. cases[i], Fixture("img40x61.png")]);
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Equal(expected[i], error.TrimEnd());
        }
        Assert.False(Directory.Exists(missing));
        Assert.Equal(["file.txt"], Directory.GetFileSystemEntries(work).Select(Path.GetFileName));
    }

    [Fact]
    public void OutputsThatWouldOverwriteAnInputOrEachOther_AreRefused()
    {
        string work = NewFolder();
        Copy("img40x61.png", work, "x.png");
        Copy("img40x61.png", work, "x.png.png"); // what drawing x.png into the same folder would write
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", "missing.pth", "--draw", work, work);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains($"the drawing of '{Path.Combine(work, "x.png")}' and input image '{Path.Combine(work, "x.png.png")}' would both be", error);

        string sub = Path.Combine(work, "sub");
        string y = Copy("img40x61.png", sub, "y.png"), yy = Copy("img40x61.png", sub, "y.png.png");
        string outputs = Path.Combine(work, "outputs");
        Directory.CreateDirectory(Path.Combine(outputs, "y.png"));
        (code, output, error) = Run("detect", "--model", R50, "--checkpoint", "missing.pth", "--draw", outputs, "--save-raw", outputs, sub);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains($"the raw-output folder of '{yy}' and the drawing of '{y}' would both be '{Path.Combine(outputs, "y.png.png")}'", error);

        string inside = Path.Combine(outputs, "y.png", "r.json");
        (code, output, error) = Run("detect", "--model", R50, "--checkpoint", "missing.pth", "--out", inside, "--save-raw", outputs, y);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains($"--out '{inside}' ('{inside}') would be inside the raw-output folder of '{y}'", error);

        (code, output, error) = Run("detect", "--model", R50, "--checkpoint", "missing.pth", sub, y);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains($"image '{y}' is given twice", error);
        Assert.Equal(["outputs", "sub", "x.png", "x.png.png"], Directory.GetFileSystemEntries(work).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(["y.png"], Directory.GetFileSystemEntries(outputs).Select(Path.GetFileName));
    }

    [Fact]
    public void SameFileNameInTwoFolders_AndSameStemTwice_GetDistinctNamesAndDrawings()
    {
        string work = NewFolder();
        Copy("img40x61.png", Path.Combine(work, "a"), "x.png");
        Copy("img53x37.png", Path.Combine(work, "b"), "x.png");
        Copy("img53x37.jpg", Path.Combine(work, "b"), "x.jpg");
        string drawn = Path.Combine(work, "drawn"), results = Path.Combine(work, "results.json");
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", _checkpoint.Path_, "--device", "cpu",
            "--out", results, "--draw", drawn, Path.Combine(work, "a"), Path.Combine(work, "b"));

        Assert.Equal(0, code);
        Assert.Equal("", output);
        Assert.Equal("", error);
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(results));
        string[] names = doc.RootElement.EnumerateArray().Select(d => d.GetProperty("image").GetString()!).Distinct().ToArray();
        Assert.Equal(["a/x.png", "b/x.jpg", "b/x.png"], names);
        Assert.Equal(["a/x.png.png", "b/x.jpg.png", "b/x.png.png"],
            Directory.GetFiles(drawn, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(drawn, f)).Order(StringComparer.Ordinal));
        // The atomic .json leaves no temporary file behind.
        Assert.Equal(["a", "b", "drawn", "results.json"], Directory.GetFileSystemEntries(work).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void JsonLines_HasOneObjectPerLine_AndATruncatedJpegAndEndlessFileAreReported()
    {
        string work = NewFolder();
        byte[] jpeg = File.ReadAllBytes(Fixture("img53x37.jpg"));
        string cut = Path.Combine(work, "cut.jpg");
        File.WriteAllBytes(cut, jpeg[..(jpeg.Length * 3 / 4)]);
        string results = Path.Combine(work, "results.jsonl");
        List<string> images = [cut];
        if (File.Exists("/dev/zero")) images.Add("/dev/zero");
        (int code, string output, string error) = Run(["detect", "--model", R50, "--checkpoint", _checkpoint.Path_, "--device", "cpu",
            "--out", results, .. images]);

        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains($"ghm detect: warning: JPEG image '{cut}' is truncated: its data ends at byte {jpeg.Length * 3 / 4} without an end-of-image marker", error);
        Assert.Contains("ghm detect: 1 of " + images.Count + " images decoded with warnings", error);
        if (images.Count == 2)
            Assert.Contains("ghm detect: skipped '/dev/zero': image file '/dev/zero' is neither a JPEG nor a PNG file", error);
        string[] lines = File.ReadAllLines(results);
        Assert.Equal(100, lines.Length);
        foreach (string line in lines)
        {
            using JsonDocument d = JsonDocument.Parse(line);
            Assert.Equal("cut.jpg", d.RootElement.GetProperty("image").GetString());
            Assert.Equal(4, d.RootElement.GetProperty("bbox").GetArrayLength());
        }
    }

    [Fact]
    public void ADrawingThatCannotBeWritten_IsReported_AndTheResultsKept()
    {
        string work = NewFolder();
        string image = Copy("img40x61.png", work, "x.png");
        string drawn = Path.Combine(work, "drawn");
        Directory.CreateDirectory(Path.Combine(drawn, "x.png.png")); // a folder where the drawing goes
        (int code, string output, string error) = Run("detect", "--model", R50, "--checkpoint", _checkpoint.Path_, "--device", "cpu",
            "--draw", drawn, image);

        Assert.Equal(1, code);
        Assert.Contains($"ghm detect: could not write the drawing of '{image}' to '{Path.Combine(drawn, "x.png.png")}': a folder of that name is in the way", error);
        Assert.Contains("ghm detect: 1 drawings or raw outputs could not be written", error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(100, doc.RootElement.GetArrayLength());
        Assert.Equal(["x.png.png"], Directory.GetFileSystemEntries(drawn).Select(Path.GetFileName)); // no temporary file left
    }
}
