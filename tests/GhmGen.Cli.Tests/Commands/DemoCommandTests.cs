using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Cli.Commands;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models;
using GhmGen.Training;

namespace GhmGen.Cli.Tests.Commands;

/// <summary>
/// <c>ghm demo</c> shortened with its hidden test options (4 train and 2 val images, 2 iterations):
/// every stage runs end to end, the JSON line names files that exist, <c>ghm eval</c> of those
/// files gives the AP the demo reported, the drawings are the val images, and the same seed and
/// thread count give the same results file.
/// </summary>
public sealed class DemoCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static string[] Shortened(string work, params string[] more) =>
        ["demo", "--work-dir", work, "--seed", "3", "--threads", "2", "--device", "cpu", "--train-images", "4", "--val-images", "2", "--epochs", "1", .. more];

    private static readonly string[] JsonKeys = ["AP", "AP50", "APs", "APm", "APl", "train_images_per_s", "wall_s", "work_dir", "val_ann", "val_results"];

    [Fact]
    public void A_shortened_demo_trains_evaluates_draws_and_prints_the_json_line()
    {
        string root = Path.Combine(Path.GetTempPath(), $"ghm-demo-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        try
        {
            string work = Path.Combine(root, "demo");
            (int code, string output, string error) = Run(Shortened(work, "--json"));
            Assert.True(code == 0, error);

            string last = output.TrimEnd('\n').Split('\n')[^1];
            using JsonDocument doc = JsonDocument.Parse(last);
            JsonElement r = doc.RootElement;
            Assert.Equal(JsonKeys, r.EnumerateObject().Select(p => p.Name));
            foreach (string key in (string[])["AP", "AP50", "APs", "APm", "APl"])
            {
                double v = r.GetProperty(key).GetDouble();
                Assert.True(v == -1 || v is >= 0 and <= 1, $"{key} {v}");
            }
            Assert.True(r.GetProperty("train_images_per_s").GetDouble() > 0);
            Assert.True(r.GetProperty("wall_s").GetDouble() > 0);
            Assert.Equal(Path.GetFullPath(work), r.GetProperty("work_dir").GetString());
            string valAnn = r.GetProperty("val_ann").GetString()!, valResults = r.GetProperty("val_results").GetString()!;
            Assert.True(File.Exists(valAnn), valAnn);
            Assert.True(File.Exists(valResults), valResults);

            // The files it names are what it evaluated: ghm eval of them reports the same AP.
            (int evalCode, string evalOutput, string evalError) = Run("eval", "--ann", valAnn, "--results", valResults, "--json");
            Assert.True(evalCode == 0, evalError);
            using JsonDocument eval = JsonDocument.Parse(evalOutput.TrimEnd('\n').Split('\n')[^1]);
            foreach ((string demoKey, string evalKey) in (ReadOnlySpan<(string, string)>)[("AP", "AP"), ("AP50", "AP50"), ("APs", "APs"), ("APm", "APm"), ("APl", "APl")])
                Assert.Equal(eval.RootElement.GetProperty(evalKey).GetDouble(), r.GetProperty(demoKey).GetDouble());

            // Both val images are drawn, magnified to a shorter side of 384 or more; the training run left its checkpoint and log.
            string[] drawings = Directory.GetFiles(Path.Combine(work, "ghm", "drawn"), "*.png").Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(["000001.png", "000002.png"], drawings.Select(Path.GetFileName));
            foreach (string drawing in drawings)
            {
                RgbImage drawn = ImageDecoder.Decode(drawing), original = ImageDecoder.Decode(Path.Combine(work, "data", "val", Path.GetFileName(drawing)));
                int k = DemoRecipe.DrawMagnification(original);
                Assert.True(k * Math.Min(original.Width, original.Height) >= 384 && (k - 1) * Math.Min(original.Width, original.Height) < 384, $"magnification {k}");
                Assert.Equal((original.Width * k, original.Height * k), (drawn.Width, drawn.Height));
                // Away from the boxes and tags the drawing is the image, each pixel a k x k square:
                // most of the magnified pixels equal their source pixel.
                int same = 0;
                for (int y = 0; y < drawn.Height; y++)
                    for (int x = 0; x < drawn.Width; x++)
                        if (drawn.Rgb.AsSpan((y * drawn.Width + x) * 3, 3).SequenceEqual(original.Rgb.AsSpan(((y / k) * original.Width + x / k) * 3, 3))) same++;
                Assert.True(same > drawn.Width * drawn.Height / 2, $"{same} of {drawn.Width * drawn.Height} pixels are the source's");
            }
            Assert.True(File.Exists(Path.Combine(work, "ghm", "latest.pth")));
            string[] log = File.ReadAllLines(Path.Combine(work, "ghm", "log.json"));
            using (JsonDocument line = JsonDocument.Parse(Assert.Single(log))) // 2 iterations, one line at the epoch's end
                Assert.Equal(2, line.RootElement.GetProperty("iter").GetInt32());
            Assert.Contains("AP50", output);
            Assert.Contains(valResults, output);

            // Same seed and threads: the same results, byte for byte.
            string again = Path.Combine(root, "again");
            (code, _, error) = Run(Shortened(again));
            Assert.True(code == 0, error);
            Assert.Equal(File.ReadAllBytes(valResults), File.ReadAllBytes(Path.Combine(again, "ghm", "val_results.json")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Compare_trains_both_losses_and_prints_them_side_by_side()
    {
        string work = Path.Combine(Path.GetTempPath(), $"ghm-demo-{Guid.NewGuid():N}");
        try
        {
            (int code, string output, string error) = Run(Shortened(work, "--compare", "--json"));
            Assert.True(code == 0, error);
            string[] lines = output.TrimEnd('\n').Split('\n');
            string header = lines.Single(l => l.Contains("GHM-C/GHM-R", StringComparison.Ordinal));
            Assert.True(header.IndexOf("GHM-C/GHM-R", StringComparison.Ordinal) < header.IndexOf("focal/L1", StringComparison.Ordinal), header);
            using JsonDocument doc = JsonDocument.Parse(lines[^1]);
            foreach (string loss in (string[])["ghm", "focal"])
            {
                JsonElement run = doc.RootElement.GetProperty(loss);
                Assert.Equal(JsonKeys, run.EnumerateObject().Select(p => p.Name));
                Assert.True(File.Exists(run.GetProperty("val_results").GetString()));
                Assert.True(File.Exists(Path.Combine(work, loss, "latest.pth")));
            }
            Assert.True(doc.RootElement.GetProperty("wall_s").GetDouble() > 0);
            // Different losses train different weights.
            Assert.NotEqual(File.ReadAllBytes(Path.Combine(work, "ghm", "latest.pth")), File.ReadAllBytes(Path.Combine(work, "focal", "latest.pth")));
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public void The_embedded_backbone_loads_into_every_backbone_tensor_of_the_demo_model()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm-backbone-{Guid.NewGuid():N}.pth");
        try
        {
            DemoRecipe.WritePretrainedBackbone(path);
            Assert.False(File.Exists(path + ".tmp"));
            INetwork network = ModelRegistry.Get(DemoRecipe.Model).Create();
            DemoRecipe.Initialize(network, 0);
            LoadReport report = DetectorInitialization.LoadPretrainedBackbone(network, path);
            StateTensor[] backbone = [.. network.State.Where(t => t.Key.StartsWith("backbone.", StringComparison.Ordinal))];
            Assert.Equal(backbone.Length, report.Loaded.Count);
            using TorchCheckpoint file = TorchCheckpoint.Read(path);
            Assert.All(file.Tensors, t => Assert.True(t.DType is CheckpointDType.Float16 or CheckpointDType.Int64, $"{t.Key} is {t.DType}"));
            // Values arrive as the file's float16 widened to float32, not as the initialisation.
            StateTensor conv = backbone.Single(t => t.Key == "backbone.layer4.1.conv2.weight");
            float[] expected = file.Find("layer4.1.conv2.weight")!.ReadFloat32();
            Assert.Equal(expected, conv.Data);
            // A trained backbone: zero_init_residual's zeros are gone.
            Assert.Contains(backbone.Single(t => t.Key == "backbone.layer1.0.bn2.weight").Data, v => v != 0);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void From_scratch_writes_no_backbone_and_trains_other_weights()
    {
        string root = Path.Combine(Path.GetTempPath(), $"ghm-demo-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(root);
            string pretrained = Path.Combine(root, "pretrained"), scratch = Path.Combine(root, "scratch");
            (int code, string output, string error) = Run(Shortened(pretrained));
            Assert.True(code == 0, error);
            Assert.Contains("from a pretrained backbone", output);
            string backbone = Path.Combine(pretrained, "pretrained", DemoRecipe.PretrainedBackboneFile);
            Assert.True(File.Exists(backbone));
            (code, output, error) = Run(Shortened(scratch, "--from-scratch"));
            Assert.True(code == 0, error);
            Assert.Contains("from scratch", output);
            Assert.False(Directory.Exists(Path.Combine(scratch, "pretrained")));

            // Two warm-up iterations barely move the weights: the pretrained run's backbone is
            // still the file's, the from-scratch run's is not.
            using TorchCheckpoint file = TorchCheckpoint.Read(backbone);
            float[] start = file.Find("layer3.0.conv1.weight")!.ReadFloat32();
            double Distance(string work)
            {
                using TorchCheckpoint trained = TorchCheckpoint.Read(Path.Combine(work, "ghm", "latest.pth"));
                float[] w = trained.Find("backbone.layer3.0.conv1.weight")!.ReadFloat32();
                double d = 0, n = 0;
                for (int i = 0; i < w.Length; i++) { d += (w[i] - start[i]) * (double)(w[i] - start[i]); n += start[i] * (double)start[i]; }
                return Math.Sqrt(d / n);
            }
            Assert.True(Distance(pretrained) < 0.01, $"pretrained run moved {Distance(pretrained)}");
            Assert.True(Distance(scratch) > 0.5, $"from-scratch run is {Distance(scratch)} from the file");
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("--compare", "--compare", "--loss", "focal")]
    [InlineData("--lr", "--lr", "0")]
    [InlineData("--train-images", "--train-images", "0")]
    public void Bad_options_are_usage_errors_before_any_work(string named, params string[] args)
    {
        string work = Path.Combine(Path.GetTempPath(), $"ghm-demo-{Guid.NewGuid():N}");
        (int code, string output, string error) = Run(["demo", "--work-dir", work, .. args]);
        Assert.Equal(2, code);
        Assert.Empty(output);
        Assert.Contains(named, error);
        Assert.False(Directory.Exists(work));
    }
}
