using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Distributed;
using GhmGen.Layers;
using GhmGen.Models;
using GhmGen.Training;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm train</c>: mmdetection's GHM recipe on a COCO-format dataset (a thin layer over <see cref="Trainer"/>).</summary>
internal static class TrainCommand
{
    /// <summary>Exit code of a run stopped by a loss that became NaN or infinite (the last good checkpoint is kept).</summary>
    public const int Diverged = 4;

    /// <summary>Exit code of a run interrupted by Ctrl+C after writing a resumable <c>latest.pth</c>.</summary>
    public const int Interrupted = 130;

    /// <summary>Exit code of a data-parallel job ended because a rank died or a collective timed out (<see cref="MpiCommunicator.LostRankExitCode"/>).</summary>
    public const int LostRank = MpiCommunicator.LostRankExitCode;

    public static Command Create()
    {
        Option<string> model = CommonOptions.Model();
        var trainAnn = new Option<string>("--train-ann") { Description = "COCO-format annotation file of the training set", Required = true };
        var trainImages = new Option<string>("--train-images") { Description = "Folder the annotation file's file_name entries are relative to", Required = true };
        var workDir = new Option<string>("--work-dir") { Description = "Where log.json and the checkpoints go (created if missing; its parent must exist)", Required = true };
        var loadFrom = new Option<string?>("--load-from") { Description = "Start from a full checkpoint's weights (mmdetection's load_from)" };
        var pretrained = new Option<string?>("--pretrained") { Description = "A torchvision ResNet/ResNeXt classification checkpoint for the backbone" };
        var resume = new Option<string?>("--resume") { Description = "Continue a run of ours from its checkpoint (weights, optimiser state, GHM state, position)" };
        Option<int> batch = CommonOptions.Int("--batch", "Images per iteration", 2, 1, 256);
        Option<int> epochs = CommonOptions.Int("--epochs", "Epochs", 12, 1, 100_000);
        Option<int> maxIters = CommonOptions.Int("--max-iters", "Stop after this many iterations in total (0: no limit)", 0, 0, int.MaxValue);
        var lr = Double("--lr", "Learning rate as given (mmdetection's 0.01 is for 16 images per iteration)", 0.01, 0, 10);
        var optimizer = new Option<string>("--optimizer")
        {
            Description = "sgd (mmdetection's recipe: momentum, L2 weight decay) or adamw (torch's AdamW: betas 0.9/0.999, eps 1e-8, decoupled weight decay)",
            DefaultValueFactory = _ => "sgd",
        };
        optimizer.AcceptOnlyFromAmong("sgd", "adamw");
        var momentum = Double("--momentum", "SGD momentum (not with --optimizer adamw)", 0.9, 0, 1);
        var weightDecay = Double("--weight-decay", "Weight decay on every trained parameter: L2 on the gradient for sgd, decoupled for adamw", 1e-4, 0, 1);
        Option<int> warmupIters = CommonOptions.Int("--warmup-iters", "Linear warm-up iterations", 500, 0, int.MaxValue);
        var warmupRatio = Double("--warmup-ratio", "Warm-up start ratio", 0.001, 0, 1);
        var lrSteps = new Option<string>("--lr-steps") { Description = "Epochs after which lr is multiplied by 0.1, e.g. 8,11 (empty: none)", DefaultValueFactory = _ => "8,11" };
        var gradClip = Double("--grad-clip", "Maximum global gradient L2 norm (0: no clipping)", 35, 0, 1e12);
        var scale = new Option<string>("--scale") { Description = "Keep-ratio resize target LONGxSHORT", DefaultValueFactory = _ => "1333x800" };
        var flipProb = Double("--flip-prob", "Horizontal flip probability", 0.5, 0, 1);
        var noShuffle = new Option<bool>("--no-shuffle") { Description = "Keep the annotation file's image order" };
        Option<int> seed = CommonOptions.Int("--seed", "Seed of the data order, the flips and the initial weights", 0, 0, int.MaxValue);
        Option<int> logInterval = CommonOptions.Int("--log-interval", "Iterations per log.json line", 50, 1, int.MaxValue);
        Option<int> checkpointInterval = CommonOptions.Int("--checkpoint-interval", "Write iter_N.pth every N iterations (0: at epoch ends only)", 0, 0, int.MaxValue);
        Option<int> maxKeepCkpts = CommonOptions.Int("--max-keep-ckpts", "Keep only the newest N epoch_N.pth (and iter_N.pth) files, deleting older ones (0: keep all)", 0, 0, int.MaxValue);
        var loss = new Option<string>("--loss") { Description = "ghm (GHM-C + GHM-R) or focal (focal + L1, the RetinaNet baseline)", DefaultValueFactory = _ => "ghm" };
        loss.AcceptOnlyFromAmong("ghm", "focal");
        Option<int> threads = CommonOptions.Threads();
        Option<int> workers = CommonOptions.Int("--workers", "Background threads that decode and transform images", 2, 1, 64);
        Option<string> device = CommonOptions.Device();
        var valAnn = new Option<string?>("--val-ann") { Description = "COCO-format annotation file to evaluate on after every --val-interval epochs" };
        var valImages = new Option<string?>("--val-images") { Description = "Folder of the validation images" };
        Option<int> valInterval = CommonOptions.Int("--val-interval", "Evaluate after every this many epochs", 1, 1, 100_000);
        Option<int> distTimeout = CommonOptions.Int("--dist-timeout", "Under mpirun: seconds any rank waits for the others before the job is aborted (exit code 5)", 1800, 1, 86_400);
        Option<int> bucketMb = CommonOptions.Int("--dist-bucket-mb", "Under mpirun: MiB of gradients per all-reduce at most (PyTorch DDP's bucket_cap_mb; the first bucket is at most 1 MiB)", 25, 1, 2047);
        var noOverlap = new Option<bool>("--dist-no-overlap") { Description = "Under mpirun: all-reduce the gradients after the backward pass instead of overlapped with it (same weights; for comparison)" };
        var rankCheckpoints = new Option<bool>("--rank-checkpoints") { Description = "Under mpirun: every rank R > 0 also writes its final state as WORK_DIR/rank_R_latest.pth (to compare ranks)" };
        var command = new Command("train", "Train a GHM detector on a COCO-format dataset (mmdetection's configs/ghm recipe)")
        {
            model, trainAnn, trainImages, workDir, loadFrom, pretrained, resume, batch, epochs, maxIters, lr, optimizer, momentum, weightDecay,
            warmupIters, warmupRatio, lrSteps, gradClip, scale, flipProb, noShuffle, seed, logInterval, checkpointInterval, maxKeepCkpts, loss,
            threads, workers, device, valAnn, valImages, valInterval, distTimeout, bucketMb, noOverlap, rankCheckpoints,
        };
        command.SetAction(parse =>
        {
            (int longEdge, int shortEdge) = ParseScale(parse.GetValue(scale)!);
            TrainingOptimizerKind optimizerKind = parse.GetValue(optimizer) == "adamw" ? TrainingOptimizerKind.AdamW : TrainingOptimizerKind.Sgd;
            if (optimizerKind == TrainingOptimizerKind.AdamW && parse.GetResult(momentum) is { Implicit: false })
                throw new UsageException("--momentum cannot be combined with --optimizer adamw: AdamW has no momentum (its betas are torch's 0.9 and 0.999); drop --momentum, or train with --optimizer sgd");
            var options = new TrainerOptions
            {
                Optimizer = optimizerKind,
                BatchSize = parse.GetValue(batch),
                Epochs = parse.GetValue(epochs),
                MaxIterations = parse.GetValue(maxIters) is > 0 and int m ? m : null,
                LearningRate = parse.GetValue(lr),
                Momentum = parse.GetValue(momentum),
                WeightDecay = parse.GetValue(weightDecay),
                WarmupIterations = parse.GetValue(warmupIters),
                WarmupRatio = parse.GetValue(warmupRatio),
                LearningRateSteps = ParseSteps(parse.GetValue(lrSteps)!),
                GradientClip = parse.GetValue(gradClip),
                LongEdge = longEdge,
                ShortEdge = shortEdge,
                FlipProbability = parse.GetValue(flipProb),
                Shuffle = !parse.GetValue(noShuffle),
                Seed = parse.GetValue(seed),
                LogInterval = parse.GetValue(logInterval),
                CheckpointInterval = parse.GetValue(checkpointInterval),
                MaxKeptCheckpoints = parse.GetValue(maxKeepCkpts),
                Loss = parse.GetValue(loss) == "focal" ? DetectionLossKind.Focal : DetectionLossKind.Ghm,
                DataWorkers = parse.GetValue(workers),
                ValidationInterval = parse.GetValue(valInterval),
                OverlapGradientReduction = !parse.GetValue(noOverlap),
            };
            var arguments = new TrainArguments(parse.GetValue(model)!, parse.GetValue(trainAnn)!, parse.GetValue(trainImages)!, parse.GetValue(workDir)!,
                parse.GetValue(loadFrom), parse.GetValue(pretrained), parse.GetValue(resume), parse.GetValue(device)!, parse.GetValue(threads), options,
                parse.GetValue(valAnn), parse.GetValue(valImages), parse.GetValue(rankCheckpoints));
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            if (!MpiCommunicator.LaunchedWithSeveralRanks()) return Run(arguments, output, error, SingleProcessReducer.Instance);
            return RunDistributed(arguments, output, error, TimeSpan.FromSeconds(parse.GetValue(distTimeout)), parse.GetValue(bucketMb) << 20);
        });
        return command;
    }

    /// <summary>AdamW learning rates above this get a note (mmdetection's AdamW configs stay at or below 1e-3).</summary>
    internal const double AdamWLearningRateNote = 0.003;

    private sealed record TrainArguments(string Model, string TrainAnn, string TrainImages, string WorkDir, string? LoadFrom, string? Pretrained,
        string? Resume, string Device, int Threads, TrainerOptions Options, string? ValAnn, string? ValImages, bool RankCheckpoints);

    // One rank of `mpirun -n N ghm train` (docs/DISTRIBUTED.md). Any failure on any rank ends the
    // whole job with MPI_Abort and the exit code the one-process run would have had, so no rank is
    // left waiting; only rank 0 writes to standard output and error, except for errors.
    private static int RunDistributed(TrainArguments a, TextWriter output, TextWriter error, TimeSpan timeout, int bucketBytes)
    {
        MpiCommunicator mpi;
        try
        {
            mpi = MpiCommunicator.Initialize(timeout, bucketBytes);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or InvalidOperationException)
        {
            throw new UsageException($"started by an MPI launcher, but MPI could not be initialised: {e.Message}", e);
        }
        string prefix = $"ghm train: rank {mpi.Rank} of {mpi.WorldSize}";
        int code;
        try
        {
            code = Run(a, mpi.Rank == 0 ? output : TextWriter.Null, mpi.Rank == 0 ? error : TextWriter.Null, mpi, mpi);
        }
        catch (UsageException e)
        {
            mpi.Abort(ExitCodes.Usage, $"{prefix}: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (Exception e)
        {
            mpi.Abort(ExitCodes.Internal, $"{prefix}: internal error: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ").Trim()}");
            return ExitCodes.Internal;
        }
        mpi.Dispose();
        return code;
    }

    private static int Run(TrainArguments a, TextWriter output, TextWriter error, IGradientReducer reducer, MpiCommunicator? mpi = null)
    {
        if (a.Resume is not null && (a.LoadFrom is not null || a.Pretrained is not null))
            throw new UsageException("--resume continues a run with its own weights: do not combine it with --load-from or --pretrained");
        string workDir = OutputTargets.CheckFolder("--work-dir", a.WorkDir);
        foreach ((string option, string? path) in (ReadOnlySpan<(string, string?)>)[("--train-ann", a.TrainAnn), ("--load-from", a.LoadFrom), ("--pretrained", a.Pretrained), ("--resume", a.Resume)])
            if (path is not null && !File.Exists(path)) throw new UsageException($"{option} '{path}': no such file");
        if (!Directory.Exists(a.TrainImages)) throw new UsageException($"--train-images '{a.TrainImages}': no such folder");
        if ((a.ValAnn is null) != (a.ValImages is null)) throw new UsageException("--val-ann and --val-images go together");
        Validation? validation = a.ValAnn is null ? null : Validation.Load(a.ValAnn, a.ValImages!);

        ModelInfo model = ModelRegistry.Get(a.Model);
        CocoDetectionDataset dataset;
        try
        {
            // An 80-class head learns the COCO categories (by name); any other head learns every
            // category of the file, labelled in json order, and its checkpoints' CLASSES are theirs.
            CocoDatasetOptions? datasetOptions = model.Head.Classes == CocoCategoriesCount ? null
                : new CocoDatasetOptions(ClassNames: [.. CocoFiles.LoadGroundTruth("--train-ann", a.TrainAnn).Categories.Select(c => c.Name).Distinct(StringComparer.Ordinal)]);
            dataset = CocoDetectionDataset.Load(a.TrainAnn, a.TrainImages, datasetOptions);
        }
        catch (DatasetFormatException e)
        {
            throw new UsageException(e.Message, e);
        }
        if (dataset.Count == 0)
            throw new UsageException($"--train-ann '{a.TrainAnn}': no image is left for training (none has an annotation of a known category and a side of at least 32 px)");

        INetwork network = model.Create();
        DetectorInitialization.Initialize(network, a.Options.Seed);
        try
        {
            if (a.Pretrained is not null) DetectorInitialization.LoadPretrainedBackbone(network, a.Pretrained);
            if (a.LoadFrom is not null)
            {
                using TorchCheckpoint checkpoint = TorchCheckpoint.Read(a.LoadFrom);
                StateDictLoader.Load(network, checkpoint, strict: true);
            }
        }
        catch (Exception e) when (e is CheckpointFormatException or CheckpointMismatchException)
        {
            throw new UsageException(e.Message, e);
        }

        int perIteration = a.Options.BatchSize * reducer.WorldSize; // images per iteration over all ranks
        if (a.Options.Optimizer == TrainingOptimizerKind.Sgd && (perIteration * 4 < 16 || perIteration > 64))
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ghm train: note: mmdetection's lr 0.01 is for 16 images per iteration; the linear scaling rule gives {0.01 * perIteration / 16:G3} for {perIteration} images per iteration (--lr is used as given: {a.Options.LearningRate:G6})"));
        if (a.Options.Optimizer == TrainingOptimizerKind.AdamW && a.Options.LearningRate > AdamWLearningRateNote)
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ghm train: note: --lr {a.Options.LearningRate:G6} with --optimizer adamw: AdamW moves each weight by about lr per step whatever the gradient's size, so rates suited to SGD are large for it; mmdetection's AdamW configs use 1e-4 to 1e-3 (ghm demo: 0.001). --lr is used as given"));

        using IBackend backend = Devices.Create(a.Device, a.Threads);
        if (backend is not ITrainingBackend training)
            throw new UsageException($"--device {a.Device}: the {backend.Name} backend cannot train");
        if (model.Head.Classes < dataset.Categories.Count)
            throw new UsageException($"--model {model.Name} predicts {model.Head.Classes} classes; --train-ann '{a.TrainAnn}' has {dataset.Categories.Count} categories");
        // The checkpoint's CLASSES: the dataset's category names when the head has one class per
        // category (any count); COCO's for an 80-class head trained on fewer categories.
        var options = a.Options with
        {
            Anchors = model.Head.Anchors,
            ClassNames = model.Head.Classes == dataset.Categories.Count ? null
                : model.Head.Classes == CocoCategoriesCount ? GhmGen.Detection.CocoCategories.Names : null,
        };
        // Prepared once (batch norm folded, packed); the trainer's sessions for every padded batch size share them.
        using ITrainingWeights weights = model.PrepareTraining(network, training);
        using var trainer = new Trainer(network, weights, dataset, options, workDir, reducer);
        if (a.Resume is not null)
        {
            try
            {
                trainer.Resume(a.Resume);
            }
            catch (Exception e) when (e is CheckpointFormatException or CheckpointMismatchException or ArgumentException)
            {
                throw new UsageException($"--resume: {e.Message}", e);
            }
        }

        error.WriteLine($"ghm train: {model.Name}, {dataset.Count} images, {trainer.IterationsPerEpoch} iterations per epoch, {trainer.TotalIterations} in total" +
            (trainer.Progress.Iteration > 0 ? $", resuming after iteration {trainer.Progress.Iteration}" : "") + $"; writing to {workDir}");
        if (mpi is not null)
            error.WriteLine($"ghm train: data parallel over {mpi.WorldSize} ranks ({mpi.LibraryVersion}), --batch {a.Options.BatchSize} per rank: " +
                $"{mpi.WorldSize * a.Options.BatchSize} images per iteration; only rank 0 writes");
        long startIteration = trainer.Progress.Iteration;
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // finish the iteration, write latest.pth, then exit
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var reporter = new TrainProgressWriter(error, new ProgressBar("ghm train", error).Shown, a.Options.LogInterval);
        TrainResult result;
        try
        {
            result = trainer.Run(reporter, cancel.Token, validation is null ? null : (epoch, ct) =>
            {
                reporter.Finish();
                return validation.Evaluate(model, network, backend, a.Options, error);
            });
        }
        catch (NonFiniteLossException e)
        {
            reporter.Finish();
            error.WriteLine($"ghm train: {e.Message}");
            return Diverged; // every rank sees the same losses, so all of them stop here
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        reporter.Finish();
        if (mpi is not null)
        {
            long iterations = Math.Max(1, result.Iterations - startIteration);
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ghm train: all-reduce: {mpi.GradientBytes / iterations / 1e6:F2} MB of gradients per iteration and rank in {mpi.GradientAllReduces / iterations} buckets, " +
                $"{(double)mpi.OverlappedAllReduces / iterations:F2} of them per iteration started during backward ({(a.Options.OverlapGradientReduction ? "overlapped" : "--dist-no-overlap")}); " +
                $"per iteration {mpi.GradientTime.TotalMilliseconds / iterations:F1} ms averaging gradients, of which {mpi.GradientWaitTime.TotalMilliseconds / iterations:F1} ms waiting in MPI_Waitall"));
            if (a.RankCheckpoints && mpi.Rank > 0)
            {
                Directory.CreateDirectory(workDir); // on another machine than rank 0's it may not exist yet
                trainer.SaveCheckpoint(Path.Combine(workDir, $"rank_{mpi.Rank}_latest.pth"));
            }
        }
        if (result.SkippedImages > 0) error.WriteLine($"ghm train: {result.SkippedImages} images were skipped (missing or corrupt; see the warnings above)");
        string ranks = reducer.WorldSize > 1 ? $" over {reducer.WorldSize} ranks (rank 0's x {reducer.WorldSize})" : "";
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(result.Cancelled ? "interrupted" : "done")}: {result.Iterations} iterations, {result.ImagesPerSecond * reducer.WorldSize:F2} images/s{ranks}, checkpoint {result.LastCheckpoint}"));
        if (result.Cancelled)
        {
            error.WriteLine($"ghm train: interrupted; continue with --resume {result.LastCheckpoint}");
            return Interrupted;
        }
        return result.SkippedImages > 0 ? ExitCodes.Incomplete : ExitCodes.Success;
    }

    /// <summary>The validation set of <c>--val-ann</c>: detected with the current weights and evaluated as <c>ghm test</c> does.</summary>
    private sealed class Validation
    {
        private readonly GhmGen.Evaluation.CocoGroundTruth _groundTruth;
        private readonly AnnotationImages _images;
        private readonly string[] _paths;
        private readonly string _annotationFile;

        private Validation(string annotationFile, GhmGen.Evaluation.CocoGroundTruth groundTruth, AnnotationImages images, string[] paths)
        {
            _annotationFile = annotationFile;
            _groundTruth = groundTruth;
            _images = images;
            _paths = paths;
        }

        public static Validation Load(string annotationFile, string imageFolder)
        {
            if (!Directory.Exists(imageFolder)) throw new UsageException($"--val-images '{imageFolder}': no such folder");
            GhmGen.Evaluation.CocoGroundTruth groundTruth = CocoFiles.LoadGroundTruth("--val-ann", annotationFile);
            AnnotationImages images = CocoFiles.LoadImages("--val-ann", annotationFile);
            return new Validation(annotationFile, groundTruth, images, [.. images.Images.Select(i => Path.Combine(imageFolder, i.FileName))]);
        }

        // mmdetection's CocoDataset.evaluate keys: bbox_mAP, bbox_mAP_50, ... (stats[0..5]).
        public IReadOnlyList<KeyValuePair<string, double>> Evaluate(ModelInfo model, INetwork network, IBackend backend, TrainerOptions options, TextWriter error)
        {
            using var detector = new Detector(model, network, backend, maxConcurrentForwards: 1,
                preprocess: new GhmGen.Imaging.PreprocessOptions(options.LongEdge, options.ShortEdge));
            CategoryMapping mapping = CategoryMapping.Create(detector.ClassNames, _groundTruth, _images.CategoryIds);
            var progress = new ProgressBar("ghm train (val)", error);
            TestCommand.Outcome outcome = TestCommand.DetectAll(detector, _images.Images, _paths, 1, GhmGen.Detection.PostProcessOptions.Default, progress);
            progress.Finish(_paths.Length);
            List<GhmGen.Evaluation.CocoDetection> detections = TestCommand.ToCocoDetections(outcome, _images.Images, mapping);
            GhmGen.Evaluation.CocoSummary summary = GhmGen.Evaluation.CocoEvaluator.Evaluate(
                GhmGen.Evaluation.CocoResults.Create(_groundTruth, detections, _annotationFile + " (validation)")).Summary;
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ghm train: val bbox_mAP {summary.AP:F3} bbox_mAP_50 {summary.AP50:F3} bbox_mAP_75 {summary.AP75:F3} (s {summary.APSmall:F3}, m {summary.APMedium:F3}, l {summary.APLarge:F3})"));
            return
            [
                new("bbox_mAP", summary.AP), new("bbox_mAP_50", summary.AP50), new("bbox_mAP_75", summary.AP75),
                new("bbox_mAP_s", summary.APSmall), new("bbox_mAP_m", summary.APMedium), new("bbox_mAP_l", summary.APLarge),
            ];
        }
    }

    private const int CocoCategoriesCount = GhmGen.Detection.CocoCategories.Count;

    private static Option<double> Double(string name, string description, double defaultValue, double min, double max) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            string? text = result.Tokens.Count == 0 ? null : result.Tokens[0].Value;
            if (text is null) return defaultValue;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
                result.AddError($"{name} '{text}' is not a number");
            else if (value < min || value > max)
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} {text} is out of range: it must be between {min} and {max}"));
            return value;
        },
    };

    private static (int Long, int Short) ParseScale(string text)
    {
        string[] parts = text.Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int a)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int b) || a < 32 || b < 32 || a > 8192 || b > 8192)
            throw new UsageException($"--scale '{text}' must be LONGxSHORT with both between 32 and 8192, e.g. 1333x800");
        return (Math.Max(a, b), Math.Min(a, b));
    }

    private static int[] ParseSteps(string text)
    {
        if (text.Trim().Length == 0) return [];
        string[] parts = text.Split(',');
        var steps = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out steps[i]) || steps[i] < 1 || i > 0 && steps[i] <= steps[i - 1])
                throw new UsageException($"--lr-steps '{text}' must be increasing epoch numbers, e.g. 8,11");
        }
        return steps;
    }

    /// <summary>A progress bar on a terminal; otherwise one plain line per log interval.</summary>
    internal sealed class TrainProgressWriter(TextWriter error, bool terminal, int logInterval) : IProgress<TrainIterationReport>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _first = -1;
        private bool _drawn;

        public void Report(TrainIterationReport r)
        {
            foreach (ImageSkip skip in r.NewSkips)
            {
                if (_drawn) error.WriteLine();
                _drawn = false;
                error.WriteLine($"ghm train: warning: skipped '{skip.FileName}' (epoch {skip.Epoch + 1}, batch {skip.BatchIndex + 1}): {skip.Reason}");
            }
            if (_first < 0) _first = r.Iteration - 1;
            double elapsed = _clock.Elapsed.TotalSeconds;
            double perIteration = elapsed / Math.Max(r.Iteration - _first, 1);
            TimeSpan eta = TimeSpan.FromSeconds(perIteration * (r.TotalIterations - r.Iteration));
            string line = string.Create(CultureInfo.InvariantCulture,
                $"epoch {r.Epoch} iter {r.IterationInEpoch}/{r.IterationsPerEpoch} loss_cls {r.LossCls:F4} loss_bbox {r.LossBbox:F4} lr {r.LearningRate:G4} {r.ImagesPerSecond:F2} img/s ETA {eta:hh\\:mm\\:ss}");
            if (terminal)
            {
                error.Write($"\r{ProgressBar.Bar((int)Math.Min(r.Iteration, int.MaxValue), (int)Math.Min(r.TotalIterations, int.MaxValue))} {line}   ");
                _drawn = true;
            }
            else if (r.IterationInEpoch % logInterval == 0 || r.IterationInEpoch == r.IterationsPerEpoch || r.Iteration == r.TotalIterations)
            {
                error.WriteLine(line);
            }
        }

        public void Finish()
        {
            if (_drawn) error.WriteLine();
            _drawn = false;
        }
    }
}
