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

    [Fact]
    public void DetectsWritesRawOutputsAndDrawings_AndSkipsABadImage()
    {
        string bad = Path.Combine(_checkpoint.Directory, "broken.png");
        File.WriteAllText(bad, "not an image");
        string raw = Path.Combine(_checkpoint.Directory, "raw"), drawn = Path.Combine(_checkpoint.Directory, "drawn");
        (int code, string output, string error) = Run("detect", "--model", "retinanet-ghm-r50-fpn", "--checkpoint", _checkpoint.Path_,
            "--device", "cpu", "--save-raw", raw, "--draw", drawn, Fixture("img40x61.png"), bad);

        Assert.Equal(1, code); // the bad image is reported, the other one still detected
        Assert.Contains("broken.png", error);
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
        Assert.Equal(10, Directory.GetFiles(Path.Combine(raw, "img40x61"), "*.npy").Length);
        byte[] png = File.ReadAllBytes(Path.Combine(drawn, "img40x61.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
    }

    [Fact]
    public void UnknownModel_StopsWithExitCode2()
    {
        (int code, _, string error) = Run("detect", "--model", "retinanet-r50", "--checkpoint", _checkpoint.Path_, Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Contains("unknown model 'retinanet-r50'", error);
    }

    [Fact]
    public void CheckpointOfAnotherModel_StopsWithTheMismatch()
    {
        (int code, _, string error) = Run("detect", "--model", "retinanet-ghm-r101-fpn", "--checkpoint", _checkpoint.Path_, Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Contains("missing", error);
    }

    [Fact]
    public void NotACheckpoint_StopsNamingTheFile()
    {
        (int code, _, string error) = Run("detect", "--model", "retinanet-ghm-r50-fpn", "--checkpoint", Fixture("img40x61.png"), Fixture("img40x61.png"));
        Assert.Equal(2, code);
        Assert.Contains("img40x61.png", error);
    }
}
