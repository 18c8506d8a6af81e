// `ghm demo`: the whole system on the user's machine with nothing to download. It writes the
// synthetic shapes dataset (SyntheticShapes), trains the declared ghm-demo-r18-fpn on it with
// GHM-C/GHM-R (or focal + L1, or both) through Trainer, starting from the embedded pretrained
// backbone (written to WORK/pretrained and loaded as `ghm train --pretrained` loads one; see
// docs/DEMO.md) or, with --from-scratch, from random weights; it detects the val split with
// Detector, evaluates the COCO results with CocoEvaluator, draws a few val images as `ghm detect
// --draw` does, and prints a summary (and with --json one JSON object as the last line).
// The recipe (dataset, scale, schedule) is DemoRecipe; its figures are measured in README.md.
// Test: tests/GhmGen.Cli.Tests/Commands/DemoCommandTests.cs (a shortened run end to end).
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using GhmGen.Backends;
using GhmGen.Datasets;
using GhmGen.Detection;
using GhmGen.Evaluation;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models;
using GhmGen.Training;

namespace GhmGen.Cli.Commands;

/// <summary>What <c>ghm demo</c> generates and how it trains, by default (the README's measured run).</summary>
internal static class DemoRecipe
{
    /// <summary>The registered model the demo trains.</summary>
    public const string Model = "ghm-demo-r18-fpn";

    /// <summary>Training images of the generated dataset.</summary>
    public const int TrainImages = 400;

    /// <summary>Validation images.</summary>
    public const int ValImages = 100;

    /// <summary>Val images drawn with their detections.</summary>
    public const int DrawnImages = 4;

    /// <summary>The integer magnification that brings an image's shorter side to at least 384 pixels in its drawing (1 for larger images).</summary>
    public static int DrawMagnification(RgbImage image) => Math.Max(1, (384 + Math.Min(image.Width, image.Height) - 1) / Math.Min(image.Width, image.Height));

    /// <summary>Detections at or above this score are drawn (the evaluation uses mmdetection's 0.05).</summary>
    public const float DrawScoreThreshold = 0.3f;

    /// <summary>The dataset: the generator's defaults but for the seed and the image counts.</summary>
    public static SyntheticShapesOptions Dataset(int seed, int trainImages, int valImages) => new()
    {
        Seed = seed,
        TrainImages = trainImages,
        ValImages = valImages,
    };

    /// <summary>The training recipe for batch 2 on two cores.</summary>
    public static TrainerOptions Training(int seed, DetectionLossKind loss, int epochs, long? maxIterations) => new()
    {
        BatchSize = 2,
        Epochs = epochs,
        MaxIterations = maxIterations,
        Optimizer = TrainingOptimizerKind.AdamW,
        LearningRate = LearningRate,
        WeightDecay = WeightDecay,
        WarmupIterations = 100,
        LearningRateSteps = LrSteps(epochs),
        LongEdge = 192,
        ShortEdge = 160,
        Seed = seed,
        Loss = loss,
        DataWorkers = 1,
        LogInterval = 50,
        MaxKeptCheckpoints = 1, // epoch_N.pth of the last epoch and latest.pth, not 27 MB per epoch
    };

    /// <summary>
    /// mmdetection's initialisation (<see cref="DetectorInitialization.Initialize"/>), then the
    /// head's tower convolutions (<c>cls_convs</c>, <c>reg_convs</c>) scaled from N(0, 0.01) to
    /// Kaiming's N(0, 2 / fan_in). A network without working batch norm trained from scratch needs
    /// this: 64-channel 3x3 convs of std 0.01 shrink the signal 4x each, so the outputs and the
    /// gradients reaching the neck and backbone start almost at zero.
    /// </summary>
    public static void Initialize(INetwork network, int seed)
    {
        DetectorInitialization.Initialize(network, seed);
        foreach (StateTensor t in network.State)
        {
            if (t.Role != StateRole.ConvWeight || !t.Key.StartsWith("bbox_head.", StringComparison.Ordinal)
                || !(t.Key.Contains(".cls_convs.", StringComparison.Ordinal) || t.Key.Contains(".reg_convs.", StringComparison.Ordinal))) continue;
            int fanIn = t.Shape[1] * t.Shape[2] * t.Shape[3];
            float factor = (float)(Math.Sqrt(2.0 / fanIn) / 0.01);
            foreach (ref float v in t.Data.AsSpan()) v *= factor;
        }
    }

    /// <summary>
    /// AdamW's base learning rate. From the pretrained backbone the PyTorch probe
    /// (tools/reference/demo_recipe_probe.py, docs/DEMO.md) reached val AP 0.393 with AdamW at 1e-3
    /// against 0.279 with SGD at 0.0025 (the old default, best of the SGD rates tried) and 0.235
    /// with AdamW at 2e-3 half-way.
    /// </summary>
    public const double LearningRate = 1e-3;

    /// <summary>AdamW's decoupled weight decay (0.05, as mmdetection's AdamW configs use).</summary>
    public const double WeightDecay = 0.05;

    /// <summary>
    /// Epochs of the default run: 20 (4,000 iterations), which a quiet 2-core machine trains and
    /// evaluates in about 3.5 minutes (6 epochs took 65 s and reached half the AP).
    /// </summary>
    public const int Epochs = 20;

    // lr x0.1 for the last two epochs, whatever the count.
    private static int[] LrSteps(int epochs) => epochs >= 3 ? [epochs - 2, epochs - 1] : [];

    /// <summary>File name of the pretrained backbone written to WORK/pretrained (embedded in this assembly as NAME.gz).</summary>
    public const string PretrainedBackboneFile = "ghm-demo-r18-backbone.pth";

    /// <summary>
    /// Writes the embedded pretrained backbone of <see cref="Model"/> (torchvision's key layout,
    /// float16; made by tools/reference/pretrain_demo_backbone.py from a demo detector trained on
    /// 4,000 synthetic images of seed 1000; embedded gzip-compressed) to <paramref name="path"/>
    /// through a temporary file.
    /// </summary>
    public static void WritePretrainedBackbone(string path)
    {
        using Stream resource = typeof(DemoRecipe).Assembly.GetManifestResourceStream("GhmGen.Cli." + PretrainedBackboneFile + ".gz")
            ?? throw new InvalidOperationException($"this build of ghm has no embedded {PretrainedBackboneFile}.gz");
        OutputTargets.WriteReplacing(path, file =>
        {
            using var gzip = new GZipStream(resource, CompressionMode.Decompress);
            gzip.CopyTo(file);
        });
    }
}

/// <summary><c>ghm demo</c>: generate, train, evaluate and draw in one command.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var workDir = new Option<string>("--work-dir") { Description = "Where the dataset, checkpoints, results and drawings go: DIR/data is rewritten, DIR/ghm or DIR/focal replaced, on every run (created if missing; its parent must exist)", DefaultValueFactory = _ => "ghm-demo" };
        Option<int> seed = CommonOptions.Int("--seed", "Seed of the dataset, the initial weights, the data order and the flips", 0, 0, int.MaxValue);
        Option<int> threads = CommonOptions.Threads();
        Option<string> device = CommonOptions.Device();
        var json = new Option<bool>("--json") { Description = "Also print the figures as one JSON object, the last line of standard output" };
        var loss = new Option<string>("--loss") { Description = "ghm (GHM-C + GHM-R) or focal (focal + L1, the RetinaNet baseline)", DefaultValueFactory = _ => "ghm" };
        loss.AcceptOnlyFromAmong("ghm", "focal");
        var compare = new Option<bool>("--compare") { Description = "Train with both losses, one after the other, and print them side by side" };
        var fromScratch = new Option<bool>("--from-scratch") { Description = "Start the backbone from random weights (mmdetection's initialisation) instead of the embedded pretrained one" };
        // Test-only (hidden from --help, documented in README.md): shrink the run to seconds.
        Option<int> trainImages = Hidden(CommonOptions.Int("--train-images", "Training images", DemoRecipe.TrainImages, 1, 100_000));
        Option<int> valImages = Hidden(CommonOptions.Int("--val-images", "Validation images", DemoRecipe.ValImages, 1, 100_000));
        Option<int> epochs = Hidden(CommonOptions.Int("--epochs", "Epochs", DemoRecipe.Epochs, 1, 10_000));
        var lr = new Option<double>("--lr") { Description = "Base learning rate", DefaultValueFactory = _ => DemoRecipe.LearningRate, Hidden = true };
        lr.Validators.Add(result =>
        {
            double value = result.GetValueOrDefault<double>();
            if (!(value > 0 && value <= 10)) result.AddError(string.Create(CultureInfo.InvariantCulture, $"--lr {value} is out of range: it must be in (0, 10]"));
        });
        Option<int> maxIters = Hidden(CommonOptions.Int("--max-iters", "Stop after this many iterations (0: every epoch)", 0, 0, int.MaxValue));
        var command = new Command("demo", $"Generate a synthetic shapes dataset, train {DemoRecipe.Model} on it with GHM-C/GHM-R from a pretrained backbone, evaluate it (COCO AP) and draw its detections")
        {
            workDir, seed, threads, device, json, loss, compare, fromScratch, trainImages, valImages, epochs, maxIters, lr,
        };
        command.SetAction(parse =>
        {
            DetectionLossKind[] losses = parse.GetValue(compare) ? [DetectionLossKind.Ghm, DetectionLossKind.Focal]
                : [parse.GetValue(loss) == "focal" ? DetectionLossKind.Focal : DetectionLossKind.Ghm];
            if (parse.GetValue(compare) && parse.GetResult(loss) is { Implicit: false })
                throw new UsageException("--compare trains with both losses: do not give --loss with it");
            var settings = new Settings(parse.GetValue(workDir)!, parse.GetValue(seed), parse.GetValue(threads), parse.GetValue(device)!,
                parse.GetValue(json), losses, parse.GetValue(fromScratch), parse.GetValue(trainImages), parse.GetValue(valImages), parse.GetValue(epochs),
                parse.GetValue(maxIters) is > 0 and int m ? m : null, parse.GetValue(lr));
            return Run(settings, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
        });
        return command;
    }

    private static Option<int> Hidden(Option<int> option)
    {
        option.Hidden = true;
        return option;
    }

    private sealed record Settings(string WorkDir, int Seed, int Threads, string Device, bool Json, DetectionLossKind[] Losses, bool FromScratch,
        int TrainImages, int ValImages, int Epochs, long? MaxIterations, double LearningRate);

    /// <summary>What one trained and evaluated detector gave.</summary>
    private sealed record RunResult(DetectionLossKind Loss, CocoSummary Summary, double ImagesPerSecond, double Seconds, long Iterations,
        string Checkpoint, string ValResults, IReadOnlyList<string> Drawings);

    private static int Run(Settings s, TextWriter output, TextWriter error)
    {
        var clock = Stopwatch.StartNew();
        string workDir = OutputTargets.CheckFolder("--work-dir", s.WorkDir);
        Directory.CreateDirectory(workDir);
        string dataDir = Path.Combine(workDir, "data");

        // 1. The dataset.
        SyntheticShapesOptions datasetOptions = DemoRecipe.Dataset(s.Seed, s.TrainImages, s.ValImages);
        var bar = new ProgressBar("ghm demo", error);
        int totalImages = s.TrainImages + s.ValImages;
        SyntheticShapesSummary data;
        try
        {
            data = SyntheticShapes.Write(dataDir, datasetOptions, new CountProgress(bar, totalImages));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--work-dir '{s.WorkDir}' cannot be written: {OutputTargets.Reason(e, dataDir)}", e);
        }
        bar.Finish(totalImages);
        error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ghm demo: dataset in {dataDir}: {Describe(data.Train)}; {Describe(data.Val)} ({clock.Elapsed.TotalSeconds:F1} s)"));

        // 2. The pretrained backbone, as a file a user can pass to `ghm train --pretrained`.
        string? backbone = null;
        if (!s.FromScratch)
        {
            backbone = Path.Combine(workDir, "pretrained", DemoRecipe.PretrainedBackboneFile);
            try
            {
                DemoRecipe.WritePretrainedBackbone(backbone);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--work-dir '{s.WorkDir}' cannot be written: {OutputTargets.Reason(e, backbone)}", e);
            }
        }

        ModelInfo model = ModelRegistry.Get(DemoRecipe.Model);
        CocoDetectionDataset train = CocoDetectionDataset.Load(data.Train.AnnotationFile, data.Train.ImageDirectory,
            new CocoDatasetOptions(ClassNames: [.. data.Train.Categories.Select(c => c.Name)]));
        CocoGroundTruth valTruth = CocoFiles.LoadGroundTruth("the val annotations", data.Val.AnnotationFile);
        AnnotationImages valImages = CocoFiles.LoadImages("the val annotations", data.Val.AnnotationFile);

        using IBackend backend = Devices.Create(s.Device, s.Threads);
        if (backend is not ITrainingBackend training)
            throw new UsageException($"--device {s.Device}: the {backend.Name} backend cannot train");
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // stop after the iteration under way
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var results = new List<RunResult>();
        try
        {
            foreach (DetectionLossKind loss in s.Losses)
            {
                RunResult? result = TrainAndEvaluate(s, loss, model, backbone, train, valTruth, valImages, data.Val, training, workDir, error, cancel.Token);
                if (result is null)
                {
                    error.WriteLine("ghm demo: interrupted");
                    return TrainCommand.Interrupted;
                }
                results.Add(result);
            }
        }
        catch (NonFiniteLossException e)
        {
            error.WriteLine($"ghm demo: {e.Message}");
            return TrainCommand.Diverged;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        double wall = clock.Elapsed.TotalSeconds;
        WriteSummary(output, results, data, model, backbone, s, wall);
        if (s.Json) output.WriteLine(Json(results, workDir, data.Val.AnnotationFile, wall));
        return ExitCodes.Success;
    }

    // Trains one detector into WORK/ghm or WORK/focal, evaluates and draws it; null when cancelled.
    private static RunResult? TrainAndEvaluate(Settings s, DetectionLossKind loss, ModelInfo model, string? backbone, CocoDetectionDataset train,
        CocoGroundTruth valTruth, AnnotationImages valImages, SyntheticSplitSummary val, ITrainingBackend backend, string workDir,
        TextWriter error, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        string runDir = Path.Combine(workDir, LossName(loss));
        if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true); // a fresh log.json and no stale drawings
        TrainerOptions options = DemoRecipe.Training(s.Seed, loss, s.Epochs, s.MaxIterations) with { LearningRate = s.LearningRate, Anchors = model.Head.Anchors };
        INetwork network = model.Create();
        DemoRecipe.Initialize(network, s.Seed);
        if (backbone is not null) DetectorInitialization.LoadPretrainedBackbone(network, backbone);
        TrainResult trained;
        IReadOnlyList<string> classNames;
        using (ITrainingWeights weights = model.PrepareTraining(network, backend))
        using (var trainer = new Trainer(network, weights, train, options, runDir))
        {
            error.WriteLine($"ghm demo: training {model.Name} {(backbone is null ? "from scratch" : "from the pretrained backbone")} with {Title(loss)}: {train.Count} images, batch {options.BatchSize}, " +
                $"{trainer.TotalIterations} iterations, scale {options.LongEdge}x{options.ShortEdge}; writing to {runDir}");
            var reporter = new TrainCommand.TrainProgressWriter(error, new ProgressBar("ghm demo", error).Shown, options.LogInterval);
            try
            {
                trained = trainer.Run(reporter, cancellationToken);
            }
            finally
            {
                reporter.Finish();
            }
            classNames = trainer.ClassNames;
        }
        if (trained.Cancelled) return null;

        // Detect the val split (mmdetection's test_cfg) and evaluate the COCO results file.
        using var detector = new Detector(model, network, (IBackend)backend, classNames, maxConcurrentForwards: 1,
            preprocess: new PreprocessOptions(options.LongEdge, options.ShortEdge));
        string[] paths = [.. valImages.Images.Select(i => Path.Combine(val.ImageDirectory, i.FileName))];
        var progress = new ProgressBar("ghm demo (val)", error);
        TestCommand.Outcome outcome = TestCommand.DetectAll(detector, valImages.Images, paths, 1, PostProcessOptions.Default, progress);
        progress.Finish(paths.Length);
        if (outcome.Skipped > 0) throw new InvalidOperationException($"{outcome.Skipped} of the demo's own val images could not be read");
        CategoryMapping mapping = CategoryMapping.Create(detector.ClassNames, valTruth, valImages.CategoryIds);
        List<CocoDetection> detections = TestCommand.ToCocoDetections(outcome, valImages.Images, mapping);
        string resultsPath = Path.Combine(runDir, "val_results.json");
        using (CocoResultsFile file = CocoResultsFile.Open("--work-dir", resultsPath)) file.Commit(detections);
        CocoEvaluation evaluation = CocoEvaluator.Evaluate(CocoResults.Create(valTruth, detections, resultsPath), s.Threads);

        // Draw the first val images with their confident detections.
        string drawDir = Path.Combine(runDir, "drawn");
        var drawings = new List<string>();
        for (int i = 0; i < Math.Min(DemoRecipe.DrawnImages, paths.Length); i++)
        {
            DetectedObject[] confident = [.. outcome.Objects[i]!.Where(o => o.Score >= DemoRecipe.DrawScoreThreshold)];
            string drawing = Path.Combine(drawDir, Path.GetFileNameWithoutExtension(valImages.Images[i].FileName) + ".png");
            RgbImage image = ImageDecoder.Decode(paths[i]);
            BoxDrawing.Save(drawing, image, confident, detector.ClassNames, DemoRecipe.DrawMagnification(image));
            drawings.Add(drawing);
        }
        CocoSummary m = evaluation.Summary;
        error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ghm demo: {Title(loss)}: val AP {m.AP:F3} AP50 {m.AP50:F3} ({clock.Elapsed.TotalSeconds:F1} s)"));
        return new RunResult(loss, m, trained.ImagesPerSecond, clock.Elapsed.TotalSeconds, trained.Iterations,
            trained.LastCheckpoint!, resultsPath, drawings);
    }

    private static void WriteSummary(TextWriter output, IReadOnlyList<RunResult> results, SyntheticShapesSummary data, ModelInfo model, string? backbone, Settings s, double wall)
    {
        output.WriteLine($"ghm demo: {model.Name} ({model.TotalParameters / 1e6:F2} M parameters) trained {(backbone is null ? "from scratch" : "from a pretrained backbone")} on {data.Train.Images} synthetic images, evaluated on {data.Val.Images}");
        string F(double v) => v < 0 ? "  -  " : v.ToString("F3", CultureInfo.InvariantCulture);
        var rows = new (string Name, Func<RunResult, string> Value)[]
        {
            ("AP", r => F(r.Summary.AP)), ("AP50", r => F(r.Summary.AP50)), ("AP75", r => F(r.Summary.AP75)),
            ("APs", r => F(r.Summary.APSmall)), ("APm", r => F(r.Summary.APMedium)), ("APl", r => F(r.Summary.APLarge)),
            ("iterations", r => r.Iterations.ToString(CultureInfo.InvariantCulture)),
            ("train images/s", r => r.ImagesPerSecond.ToString("F1", CultureInfo.InvariantCulture)),
            ("train + eval s", r => r.Seconds.ToString("F1", CultureInfo.InvariantCulture)),
        };
        const int labelWidth = 16, columnWidth = 14;
        output.WriteLine("  " + "".PadRight(labelWidth) + string.Concat(results.Select(r => Title(r.Loss).PadLeft(columnWidth))));
        foreach ((string name, Func<RunResult, string> value) in rows)
            output.WriteLine("  " + name.PadRight(labelWidth) + string.Concat(results.Select(r => value(r).PadLeft(columnWidth))));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  wall time {wall:F1} s ({TimeSpan.FromSeconds(wall):m\\:ss}), {(s.Threads == 0 ? Environment.ProcessorCount : s.Threads)} threads, seed {s.Seed}"));
        output.WriteLine($"  dataset      {data.Train.AnnotationFile}, {data.Val.AnnotationFile} (images in {data.Train.ImageDirectory}, {data.Val.ImageDirectory})");
        if (backbone is not null) output.WriteLine($"  backbone     {backbone}");
        foreach (RunResult r in results)
        {
            string tag = results.Count > 1 ? $" ({LossName(r.Loss)})" : "";
            output.WriteLine($"  checkpoint{tag}   {r.Checkpoint}");
            output.WriteLine($"  val results{tag}  {r.ValResults}");
            output.WriteLine($"  drawings{tag}     {string.Join(", ", r.Drawings)}");
        }
    }

    // The issue's object for one run; with --compare, {"ghm": {...}, "focal": {...}, "wall_s"}.
    private static string Json(IReadOnlyList<RunResult> results, string workDir, string valAnn, double wall)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            if (results.Count == 1) WriteRun(writer, results[0], workDir, valAnn, wall);
            else
            {
                foreach (RunResult r in results)
                {
                    writer.WriteStartObject(LossName(r.Loss));
                    WriteRun(writer, r, workDir, valAnn, r.Seconds);
                    writer.WriteEndObject();
                }
                writer.WriteNumber("wall_s", wall);
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteRun(Utf8JsonWriter writer, RunResult r, string workDir, string valAnn, double wall)
    {
        writer.WriteNumber("AP", r.Summary.AP);
        writer.WriteNumber("AP50", r.Summary.AP50);
        writer.WriteNumber("APs", r.Summary.APSmall);
        writer.WriteNumber("APm", r.Summary.APMedium);
        writer.WriteNumber("APl", r.Summary.APLarge);
        writer.WriteNumber("train_images_per_s", r.ImagesPerSecond);
        writer.WriteNumber("wall_s", wall);
        writer.WriteString("work_dir", workDir);
        writer.WriteString("val_ann", valAnn);
        writer.WriteString("val_results", r.ValResults);
    }

    private static string LossName(DetectionLossKind loss) => loss == DetectionLossKind.Ghm ? "ghm" : "focal";

    private static string Title(DetectionLossKind loss) => loss == DetectionLossKind.Ghm ? "GHM-C/GHM-R" : "focal/L1";

    private static string Describe(SyntheticSplitSummary split) =>
        $"{split.Name} {split.Images} images, {split.Objects} objects (small {split.Small}, medium {split.Medium}, large {split.Large})";

    // Progress<T> would post reports to the thread pool, out of order and after Finish.
    private sealed class CountProgress(ProgressBar bar, int total) : IProgress<int>
    {
        public void Report(int value) => bar.Update(value, total, "images");
    }
}
