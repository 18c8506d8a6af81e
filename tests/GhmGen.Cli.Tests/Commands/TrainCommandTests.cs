using System.Text.Json;
using GhmGen.Datasets;

namespace GhmGen.Cli.Tests.Commands;

/// <summary><c>ghm train</c> end to end on a tiny synthetic set (COCO class names), R-50 at a small scale.</summary>
public sealed class TrainCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GhmCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    // Four training and two validation images whose categories are renamed to COCO classes.
    private static string MakeDataset()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ghm-train-{Guid.NewGuid():N}");
        SyntheticShapes.Write(dir, new SyntheticShapesOptions { Seed = 5, TrainImages = 4, ValImages = 2, MinImageSide = 96, MaxImageSide = 128 });
        foreach (string split in (string[])["train", "val"])
        {
            string path = Path.Combine(dir, SyntheticShapes.AnnotationPath(split));
            string json = File.ReadAllText(path).Replace("\"circle\"", "\"person\"").Replace("\"square\"", "\"bicycle\"")
                .Replace("\"triangle\"", "\"car\"").Replace("\"star\"", "\"motorcycle\"");
            File.WriteAllText(path, json);
        }
        return dir;
    }

    [Fact]
    public void Trains_logs_validates_and_writes_checkpoints()
    {
        string data = MakeDataset();
        string work = Path.Combine(data, "work");
        try
        {
            (int code, string output, string error) = Run("train", "--model", "retinanet-ghm-r50-fpn",
                "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
                "--val-ann", Path.Combine(data, "annotations", "instances_val.json"), "--val-images", Path.Combine(data, "val"),
                "--work-dir", work, "--scale", "128x96", "--epochs", "1", "--log-interval", "1", "--no-shuffle", "--device", "cpu", "--threads", "2");

            Assert.True(code == 0, error);
            Assert.StartsWith("done: 2 iterations", output.Trim());
            string[] lines = File.ReadAllLines(Path.Combine(work, "log.json"));
            Assert.Equal(3, lines.Length);
            using JsonDocument first = JsonDocument.Parse(lines[0]);
            JsonElement r = first.RootElement;
            Assert.Equal("train", r.GetProperty("mode").GetString());
            Assert.Equal(1, r.GetProperty("epoch").GetInt32());
            Assert.Equal(1, r.GetProperty("iter").GetInt32());
            Assert.Equal(1.000000000000001e-05, r.GetProperty("lr").GetDouble()); // warm-up iteration 0
            foreach (string key in (string[])["loss_cls", "loss_bbox", "loss", "grad_norm", "time", "data_time"])
                Assert.True(double.IsFinite(r.GetProperty(key).GetDouble()), key);
            Assert.Equal(r.GetProperty("loss_cls").GetDouble() + r.GetProperty("loss_bbox").GetDouble(), r.GetProperty("loss").GetDouble(), 1e-5);
            using JsonDocument val = JsonDocument.Parse(lines[2]);
            Assert.Equal("val", val.RootElement.GetProperty("mode").GetString());
            Assert.True(val.RootElement.TryGetProperty("bbox_mAP", out _));
            foreach (string file in (string[])["epoch_1.pth", "latest.pth", "best_bbox_mAP.pth"])
                Assert.True(File.Exists(Path.Combine(work, file)), file);
            Assert.Empty(Directory.GetFiles(work, "*.tmp*"));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void The_demo_model_trains_on_the_synthetic_categories_and_its_checkpoint_detects_and_tests_with_them()
    {
        string data = Path.Combine(Path.GetTempPath(), $"ghm-train-demo-{Guid.NewGuid():N}");
        SyntheticShapes.Write(data, new SyntheticShapesOptions { Seed = 5, TrainImages = 4, ValImages = 2, MinImageSide = 96, MaxImageSide = 128 });
        string work = Path.Combine(data, "work");
        try
        {
            (int code, string output, string error) = Run("train", "--model", "ghm-demo-r18-fpn",
                "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
                "--val-ann", Path.Combine(data, "annotations", "instances_val.json"), "--val-images", Path.Combine(data, "val"),
                "--work-dir", work, "--scale", "128x96", "--epochs", "1", "--no-shuffle", "--device", "cpu", "--threads", "2");
            Assert.True(code == 0, error);
            Assert.StartsWith("done: 2 iterations", output.Trim());
            string checkpoint = Path.Combine(work, "latest.pth");
            using (var read = GhmGen.Checkpoints.TorchCheckpoint.Read(checkpoint))
                Assert.Equal(["circle", "square", "triangle", "star"], read.ClassNames!);

            (code, output, error) = Run("detect", "--model", "ghm-demo-r18-fpn", "--checkpoint", checkpoint, "--score-thr", "0",
                "--device", "cpu", "--threads", "2", Path.Combine(data, "val"));
            Assert.True(code == 0, error);
            using JsonDocument detections = JsonDocument.Parse(output);
            Assert.NotEmpty(detections.RootElement.EnumerateArray());
            foreach (JsonElement d in detections.RootElement.EnumerateArray())
            {
                string label = d.GetProperty("label").GetString()!;
                int index = Array.IndexOf((string[])["circle", "square", "triangle", "star"], label);
                Assert.True(index >= 0, label);
                Assert.Equal(index + 1, d.GetProperty("category_id").GetInt32());
            }

            (code, output, error) = Run("test", "--model", "ghm-demo-r18-fpn", "--checkpoint", checkpoint,
                "--ann", Path.Combine(data, "annotations", "instances_val.json"), "--images", Path.Combine(data, "val"),
                "--scale", "128x96", "--device", "cpu", "--threads", "2", "--classwise");
            Assert.True(code == 0, error);
            Assert.Contains("| circle", output, StringComparison.Ordinal);
            Assert.Contains("| star", output, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task Sigint_writes_latest_pth_exits_130_and_the_run_resumes_from_it()
    {
        // A real process and a real SIGINT (what Ctrl+C sends), not a cancelled token.
        string data = Path.Combine(Path.GetTempPath(), $"ghm-train-sigint-{Guid.NewGuid():N}");
        SyntheticShapes.Write(data, new SyntheticShapesOptions { Seed = 5, TrainImages = 4, ValImages = 1, MinImageSide = 96, MaxImageSide = 128 });
        string work = Path.Combine(data, "work");
        string[] common = ["train", "--model", "ghm-demo-r18-fpn",
            "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
            "--work-dir", work, "--scale", "128x96", "--epochs", "1000", "--log-interval", "1", "--device", "cpu", "--threads", "1"];
        System.Diagnostics.Process? ghm = null;
        try
        {
            ghm = StartGhm(common);
            // Drained from the start, so a full pipe never blocks the run, and kept for the failure messages.
            Task<string> stdout = ghm.StandardOutput.ReadToEndAsync(), stderr = ghm.StandardError.ReadToEndAsync();
            string log = Path.Combine(work, "log.json");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!(File.Exists(log) && new FileInfo(log).Length > 0) && !ghm.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2))
                await Task.Delay(50);
            if (ghm.HasExited) Assert.Fail("ghm train ended before it was interrupted: " + await stderr);
            using (System.Diagnostics.Process kill = System.Diagnostics.Process.Start("kill", ["-INT", ghm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                kill.WaitForExit();
            if (!ghm.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                ghm.Kill(entireProcessTree: true);
                Assert.Fail($"ghm train did not stop within 2 minutes of SIGINT; its standard error:\n{await stderr}");
            }
            Assert.Equal(130, ghm.ExitCode);
            Assert.StartsWith("interrupted: ", (await stdout).Trim());
            string latest = Path.Combine(work, "latest.pth");
            Assert.Contains($"continue with --resume {latest}", await stderr);
            Assert.Empty(Directory.GetFiles(work, "*.tmp*"));

            long done;
            using (var read = GhmGen.Checkpoints.TorchCheckpoint.Read(latest))
                done = read.Meta!["iter"]!.AsInt64;
            Assert.True(done >= 1, $"latest.pth is at iteration {done}");
            (int code, string output, string error) = Run([.. common, "--resume", latest, "--max-iters", (done + 2).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.True(code == 0, error);
            Assert.Contains($"resuming after iteration {done}", error);
            Assert.StartsWith($"done: {done + 2} iterations", output.Trim());
        }
        finally
        {
            if (ghm is { HasExited: false }) ghm.Kill(entireProcessTree: true); // a failed assertion must not leave it training
            ghm?.Dispose();
            Directory.Delete(data, recursive: true);
        }
    }

    private static System.Diagnostics.Process StartGhm(string[] args)
    {
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        string[] command = [dotnet, Path.Combine(AppContext.BaseDirectory, "ghm.dll"), .. args];
        // A process started in the background by a non-interactive shell (`cmd &`, nohup) has SIGINT
        // ignored, children inherit that, and .NET then leaves it ignored (as a shell's background job
        // should be). Then the child is started through python3 with SIGINT back at its default.
        if (SigintIgnored())
            command = ["python3", "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])", .. command];
        var start = new System.Diagnostics.ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in command[1..]) start.ArgumentList.Add(arg);
        return System.Diagnostics.Process.Start(start)!;
    }

    // Whether this process ignores SIGINT (bit 1 of SigIgn in /proc/self/status).
    private static bool SigintIgnored()
    {
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 0x2) != 0;
    }

    [Fact]
    public void A_malformed_annotation_file_is_exit_2_naming_the_file_and_the_entry()
    {
        string data = MakeDataset();
        try
        {
            string ann = Path.Combine(data, "annotations", "instances_train.json");
            File.WriteAllText(ann, File.ReadAllText(ann).Replace("\"bbox\":[", "\"bbox\":[\"x\","));
            (int code, string output, string error) = Run("train", "--model", "retinanet-ghm-r50-fpn", "--train-ann", ann,
                "--train-images", Path.Combine(data, "train"), "--work-dir", Path.Combine(data, "work"), "--device", "cpu");

            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Contains("instances_train.json", error);
            Assert.Contains("annotations[0].bbox", error);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void A_loss_that_is_not_finite_stops_the_run_with_exit_4_and_keeps_no_bad_checkpoint()
    {
        string data = MakeDataset();
        string work = Path.Combine(data, "work");
        try
        {
            // Weights whose classification bias is NaN: the first loss is NaN.
            GhmGen.Layers.INetwork network = GhmGen.Models.ModelRegistry.Get("retinanet-ghm-r50-fpn").Create();
            GhmGen.Layers.SeededWeights.Fill(network);
            network.State.Single(t => t.Key == "bbox_head.retina_cls.bias").Data[5] = float.NaN;
            string checkpoint = Path.Combine(data, "nan.pth");
            GhmGen.Checkpoints.TorchCheckpoint.Write(checkpoint, network);

            (int code, string output, string error) = Run("train", "--model", "retinanet-ghm-r50-fpn",
                "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
                "--load-from", checkpoint, "--work-dir", work, "--scale", "128x96", "--epochs", "1", "--device", "cpu", "--threads", "2");

            Assert.Equal(4, code);
            Assert.Equal("", output);
            Assert.Contains("iteration 1 (epoch 1, batch 1): the network's outputs are not finite", error);
            Assert.Empty(Directory.GetFiles(work, "*.pth"));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void A_missing_image_is_a_warning_the_run_goes_on_and_exits_1()
    {
        string data = MakeDataset();
        string work = Path.Combine(data, "work");
        try
        {
            File.Delete(Path.Combine(data, "train", "000002.png"));
            (int code, string output, string error) = Run("train", "--model", "retinanet-ghm-r50-fpn",
                "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
                "--work-dir", work, "--scale", "128x96", "--epochs", "1", "--no-shuffle", "--device", "cpu", "--threads", "2");

            Assert.Equal(1, code);
            Assert.StartsWith("done: 2 iterations", output.Trim());
            Assert.Contains("ghm train: warning: skipped '000002.png' (epoch 1, batch 1)", error);
            Assert.Contains("1 images were skipped", error);
            Assert.True(File.Exists(Path.Combine(work, "epoch_1.pth")));
            // log.json counts the skip on the line of the interval it happened in, and only there.
            string[] lines = File.ReadAllLines(Path.Combine(work, "log.json"));
            Assert.Equal(1, lines.Sum(l => System.Text.Json.JsonDocument.Parse(l).RootElement.TryGetProperty("skipped_images", out var n) ? n.GetInt32() : 0));
            Assert.Contains("\"skipped_images\":1", lines[0]);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void AdamW_trains_resumes_bit_for_bit_and_refuses_a_resume_with_sgd()
    {
        string data = Path.Combine(Path.GetTempPath(), $"ghm-train-adamw-{Guid.NewGuid():N}");
        SyntheticShapes.Write(data, new SyntheticShapesOptions { Seed = 5, TrainImages = 4, ValImages = 1, MinImageSide = 96, MaxImageSide = 128 });
        string whole = Path.Combine(data, "whole"), split = Path.Combine(data, "split");
        string[] Args(string work, string optimizer, int epochs, params string[] more) =>
        [
            "train", "--model", "ghm-demo-r18-fpn",
            "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
            "--work-dir", work, "--scale", "128x96", "--epochs", epochs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--lr", "0.001", "--weight-decay", "0.05", "--warmup-iters", "0", "--optimizer", optimizer, "--device", "cpu", "--threads", "2", .. more,
        ];
        try
        {
            (int code, string output, string error) = Run(Args(whole, "adamw", 2));
            Assert.True(code == 0, error);
            Assert.DoesNotContain("linear scaling rule", error); // SGD's lr note
            Assert.DoesNotContain("with --optimizer adamw:", error); // 0.001 is an AdamW rate
            int perEpoch = int.Parse(System.Text.RegularExpressions.Regex.Match(error, @"(\d+) iterations per epoch").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.StartsWith($"done: {2 * perEpoch} iterations", output.Trim());
            (code, output, error) = Run(Args(split, "adamw", 1));
            Assert.True(code == 0, error);
            Assert.StartsWith($"done: {perEpoch} iterations", output.Trim());
            string latest = Path.Combine(split, "latest.pth");

            // An SGD-sized rate with AdamW gets a note (and is used as given).
            string[] large = Args(Path.Combine(data, "large"), "adamw", 1, "--max-iters", "1");
            large[Array.IndexOf(large, "--lr") + 1] = "0.01";
            (code, output, error) = Run(large);
            Assert.True(code == 0, error);
            Assert.Contains("note: --lr 0.01 with --optimizer adamw:", error);

            (code, output, error) = Run(Args(split, "sgd", 2, "--resume", latest));
            Assert.Equal(2, code);
            Assert.Contains(latest, error);
            Assert.Contains("the run trained with AdamW; resume it with the same optimiser (--optimizer adamw, not sgd)", error);

            string[] otherDecay = Args(split, "adamw", 2, "--resume", latest);
            otherDecay[Array.IndexOf(otherDecay, "0.05")] = "0.01";
            (code, output, error) = Run(otherDecay);
            Assert.Equal(2, code);
            Assert.Contains("latest.pth' was trained with betas (0.9, 0.999), eps 1E-08 and weight decay 0.05; this optimiser has (0.9, 0.999), 1E-08 and 0.01", error);

            (code, output, error) = Run(Args(split, "adamw", 2, "--resume", latest));
            Assert.True(code == 0, error);
            Assert.Contains($"resuming after iteration {perEpoch}", error);
            Assert.StartsWith($"done: {2 * perEpoch} iterations", output.Trim());

            GhmGen.Models.ModelInfo model = GhmGen.Models.ModelRegistry.Get("ghm-demo-r18-fpn");
            string[] keys = [.. model.Create().State.Where(t => t.Kind == GhmGen.Layers.StateKind.Parameter).Select(t => t.Key)];
            using GhmGen.Training.TrainingCheckpoint a = GhmGen.Training.TrainingCheckpoint.Read(Path.Combine(whole, "latest.pth"), keys, model.TrainedKeys);
            using GhmGen.Training.TrainingCheckpoint b = GhmGen.Training.TrainingCheckpoint.Read(latest, keys, model.TrainedKeys);
            Assert.Equal(GhmGen.Training.TrainingOptimizerKind.AdamW, b.OptimizerKind);
            Assert.Equal(0.05, b.WeightDecay);
            Assert.Equal(model.TrainedKeys.Order(), b.AdamWStates.Keys.Order());
            Assert.Equal(a.Progress, b.Progress);
            foreach (GhmGen.Checkpoints.CheckpointTensor t in a.Weights.Tensors)
            {
                GhmGen.Checkpoints.CheckpointTensor u = b.Weights.Find(t.Key)!;
                if (t.DType == GhmGen.Checkpoints.CheckpointDType.Int64) Assert.Equal(t.ReadInt64(), u.ReadInt64());
                else Assert.True(t.ReadFloat32().AsSpan().SequenceEqual(u.ReadFloat32()), $"{t.Key} differs after the resume");
            }
            foreach ((string key, GhmGen.Training.AdamWParameterState s) in a.AdamWStates)
            {
                GhmGen.Training.AdamWParameterState r = b.AdamWStates[key];
                Assert.Equal(2f * perEpoch, s.Step);
                Assert.Equal(s.Step, r.Step);
                Assert.True(s.ExpAvg.AsSpan().SequenceEqual(r.ExpAvg) && s.ExpAvgSq.AsSpan().SequenceEqual(r.ExpAvgSq), $"the moments of {key} differ after the resume");
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Theory]
    [InlineData(new[] { "--scale", "12x8" }, "--scale '12x8' must be LONGxSHORT")]
    [InlineData(new[] { "--lr-steps", "11,8" }, "--lr-steps '11,8' must be increasing")]
    [InlineData(new[] { "--val-ann", "x.json" }, "--val-ann and --val-images go together")]
    [InlineData(new[] { "--optimizer", "adamw", "--momentum", "0.9" }, "--momentum cannot be combined with --optimizer adamw")]
    [InlineData(new[] { "--momentum", "0.8", "--optimizer", "adamw" }, "--momentum cannot be combined with --optimizer adamw")]
    [InlineData(new[] { "--optimizer", "adam" }, "Argument 'adam' not recognized")]
    public void Bad_settings_are_exit_2_before_any_work(string[] options, string message)
    {
        string data = MakeDataset();
        try
        {
            (int code, string output, string error) = Run(["train", "--model", "retinanet-ghm-r50-fpn",
                "--train-ann", Path.Combine(data, "annotations", "instances_train.json"), "--train-images", Path.Combine(data, "train"),
                "--work-dir", Path.Combine(data, "work"), .. options]);

            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Contains(message, error);
            Assert.False(Directory.Exists(Path.Combine(data, "work")));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}
