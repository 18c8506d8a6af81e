// The training loop of mmdetection's GHM recipe (docs/TRAINING.md): batches from a
// TrainDataLoader -> a generated training session's Forward -> targets over the batch's valid
// anchors -> GHM-C/GHM-R (or focal + L1) loss and the gradient of the head outputs -> the
// session's Backward -> clip_grad_norm_ -> SGD with momentum and weight decay (or AdamW, with
// TrainerOptions.Optimizer) -> the prepared weights updated once (one ITrainingWeights, shared by the sessions of every padded batch size).
// Logs (log.json), checkpoints (epoch_N.pth, iter_N.pth, latest.pth) and exact resume.
// Reference tests: tests/GhmGen.Models.Tests/Training/TrainerTests.cs (shared sessions),
// TrainerPyTorchTests.cs (two iterations against PyTorch), TrainerResumeTests.cs (resume, cancel).
// Data parallel (an IGradientReducer of N > 1 ranks; docs/DISTRIBUTED.md): rank 0's state is
// broadcast at the start, each rank trains on its shard of every batch (TrainDataLoader), the
// logged losses are averaged and the gradients averaged before clipping, so every rank makes the
// same step; each rank's GHM acc_sum follows its own images; only rank 0 writes log.json and the
// checkpoints (its acc_sum). Tests: tests/GhmGen.Distributed.Tests (mpirun -n 2 against PyTorch).
using System.Diagnostics;
using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Layers;
using GhmGen.Losses;

namespace GhmGen.Training;

/// <summary>Which losses train the head.</summary>
public enum DetectionLossKind
{
    /// <summary>GHM-C + GHM-R (the GHM recipe).</summary>
    Ghm,

    /// <summary>Focal + L1 (plain RetinaNet, the paper's baseline).</summary>
    Focal,
}

/// <summary>The settings of a training run; defaults are mmdetection's <c>retinanet_ghm_r50_fpn_1x_coco</c> for one device.</summary>
public sealed record TrainerOptions
{
    /// <summary>Images per iteration.</summary>
    public int BatchSize { get; init; } = 2;

    /// <summary>Epochs to train.</summary>
    public int Epochs { get; init; } = 12;

    /// <summary>Stop after this many iterations in total (null: run every epoch).</summary>
    public long? MaxIterations { get; init; }

    /// <summary>Base learning rate, as given (mmdetection's 0.01 is for 16 images per iteration).</summary>
    public double LearningRate { get; init; } = 0.01;

    /// <summary>
    /// The optimiser: mmdetection's SGD (default) or AdamW (mmdetection's
    /// <c>optimizer=dict(type='AdamW', ...)</c>, torch's <c>AdamW</c> with <see cref="AdamWBeta1"/>,
    /// <see cref="AdamWBeta2"/> and <see cref="AdamWEpsilon"/>). A checkpoint resumes only with the
    /// optimiser that wrote it.
    /// </summary>
    public TrainingOptimizerKind Optimizer { get; init; } = TrainingOptimizerKind.Sgd;

    /// <summary>SGD momentum (not used by AdamW).</summary>
    public double Momentum { get; init; } = SgdOptimizer.MmdetectionMomentum;

    /// <summary>
    /// Weight decay on every trained parameter, for either optimiser: SGD adds it times the weight
    /// to the gradient (L2); AdamW multiplies the weight by <c>1 - lr * WeightDecay</c> each step (decoupled).
    /// </summary>
    public double WeightDecay { get; init; } = SgdOptimizer.MmdetectionWeightDecay;

    /// <summary>AdamW's <c>betas[0]</c> (torch's default; not used by SGD).</summary>
    public double AdamWBeta1 { get; init; } = AdamWOptimizer.DefaultBeta1;

    /// <summary>AdamW's <c>betas[1]</c> (torch's default; not used by SGD).</summary>
    public double AdamWBeta2 { get; init; } = AdamWOptimizer.DefaultBeta2;

    /// <summary>AdamW's <c>eps</c> (torch's default; not used by SGD).</summary>
    public double AdamWEpsilon { get; init; } = AdamWOptimizer.DefaultEpsilon;

    /// <summary>Linear warm-up iterations, counted from 0 over the run.</summary>
    public int WarmupIterations { get; init; } = StepLrSchedule.MmdetectionWarmupIterations;

    /// <summary>Warm-up start ratio.</summary>
    public double WarmupRatio { get; init; } = StepLrSchedule.MmdetectionWarmupRatio;

    /// <summary>Epochs after which the learning rate is multiplied by 0.1.</summary>
    public IReadOnlyList<int> LearningRateSteps { get; init; } = StepLrSchedule.Schedule1xSteps;

    /// <summary>Maximum global L2 norm of the gradients; 0 or less: no clipping (the norm is still logged).</summary>
    public double GradientClip { get; init; } = GradientClipping.MmdetectionMaxNorm;

    /// <summary>Keep-ratio resize target, long edge.</summary>
    public int LongEdge { get; init; } = 1333;

    /// <summary>Keep-ratio resize target, short edge.</summary>
    public int ShortEdge { get; init; } = 800;

    /// <summary>Horizontal flip probability.</summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>Seeded shuffling per epoch (false: the annotation file's image order).</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Seed of the data order and the flips.</summary>
    public long Seed { get; init; }

    /// <summary>Iterations per log.json line (values averaged over them, as mmcv does).</summary>
    public int LogInterval { get; init; } = 50;

    /// <summary>Write iter_N.pth every this many iterations (0: only at epoch ends).</summary>
    public int CheckpointInterval { get; init; }

    /// <summary>
    /// How many of the newest epoch_N.pth files (and, separately, iter_N.pth files) to keep; older
    /// ones are deleted after each new one is written (mmcv's <c>CheckpointHook(max_keep_ckpts)</c>).
    /// 0 or less: keep all, as mmdetection's default. latest.pth and best_bbox_mAP.pth are always kept.
    /// </summary>
    public int MaxKeptCheckpoints { get; init; }

    /// <summary>The head's losses.</summary>
    public DetectionLossKind Loss { get; init; } = DetectionLossKind.Ghm;

    /// <summary>Background threads that decode and transform images.</summary>
    public int DataWorkers { get; init; } = 2;

    /// <summary>Validate after every this many epochs (when a validation callback is given).</summary>
    public int ValidationInterval { get; init; } = 1;

    /// <summary>Class names the network predicts, by label (null: the dataset's categories).</summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>
    /// The head's anchor settings (null: RetinaNet's, octave base scale 4); 9 anchors per cell
    /// (<see cref="AnchorGenerator.AnchorsPerCell"/>). Pass the model's <c>Head.Anchors</c>, so
    /// training assigns targets to the anchors that detection decodes from.
    /// </summary>
    public RetinaAnchors? Anchors { get; init; }

    /// <summary>
    /// Training sessions (one per batch shape) kept for reuse. They share the prepared weights and
    /// one set of activation buffers (grown to the largest shape), and each holds its anchors (and,
    /// on a backend whose tensors are not in host memory, host copies of its outputs and their
    /// gradients), so a new shape costs neither weight preparation nor a second set of activations.
    /// </summary>
    public int CachedSessions { get; init; } = 3;

    /// <summary>
    /// Tests only: the losses read host copies of the outputs and write host arrays of gradients even when
    /// the backend's tensors are in host memory (the path a GPU backend takes).
    /// </summary>
    internal bool HostCopiesOfOutputs { get; init; }

    /// <summary>
    /// Data parallel, with an <see cref="IOverlappingGradientReducer"/>: reduce the gradients in
    /// buckets while the backward pass still runs (PyTorch DDP's overlap). False: after it, with
    /// <see cref="IGradientReducer.AverageGradients"/>. The weights are bitwise the same either way.
    /// </summary>
    public bool OverlapGradientReduction { get; init; } = true;
}

/// <summary>What one finished iteration reports (for a progress bar).</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="IterationInEpoch">1-based position in the epoch.</param>
/// <param name="IterationsPerEpoch">Batches per epoch.</param>
/// <param name="Iteration">Iterations done in the run (global).</param>
/// <param name="TotalIterations">Iterations the run will do.</param>
/// <param name="LearningRate">The iteration's learning rate.</param>
/// <param name="LossCls">Its classification loss.</param>
/// <param name="LossBbox">Its box loss.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="ImagesPerSecond">Images per second over the run so far.</param>
/// <param name="SkippedImages">Images skipped so far (missing or corrupt).</param>
/// <param name="NewSkips">The images skipped since the previous report, with the reason (for warnings).</param>
public sealed record TrainIterationReport(
    int Epoch, int IterationInEpoch, int IterationsPerEpoch, long Iteration, long TotalIterations,
    double LearningRate, float LossCls, float LossBbox, float GradNorm, double ImagesPerSecond, int SkippedImages,
    IReadOnlyList<ImageSkip> NewSkips);

/// <summary>How a run ended.</summary>
/// <param name="Iterations">Iterations done in total (including those before a resume).</param>
/// <param name="Cancelled">Stopped by the cancellation token (a resumable checkpoint was written).</param>
/// <param name="LastCheckpoint">The newest checkpoint written, if any.</param>
/// <param name="SkippedImages">Images skipped (missing or corrupt).</param>
/// <param name="ImagesPerSecond">Training images per second over this run.</param>
public sealed record TrainResult(long Iterations, bool Cancelled, string? LastCheckpoint, int SkippedImages, double ImagesPerSecond);

/// <summary>A loss that was not finite: the run stops, keeping the last good checkpoint.</summary>
public sealed class NonFiniteLossException(string message) : Exception(message);

/// <summary>
/// Trains a declared RetinaNet-style network with mmdetection's recipe. Not thread-safe: one
/// <see cref="Run"/> at a time. The network's state (weights and GHM buffers) is changed in place.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly INetwork _network;
    private readonly ITrainingWeights _weights;
    private readonly IBackend _backend;
    private readonly string[] _trainedKeys;
    private readonly TrainerOptions _options;
    private readonly string _workDir;
    private readonly TrainDataLoader _loader;
    private readonly TrainingOptimizer _optimizer;
    private readonly StepLrSchedule _schedule;
    private readonly IDetectionLoss _loss;
    private readonly IReadOnlyList<string> _classNames;
    private readonly LinkedList<CachedSession> _sessions = [];
    private readonly StateTensor[] _parameters;
    private readonly ParameterWithGradient[] _gradients;
    private readonly float[][] _gradientData;
    private readonly IGradientReducer _reducer;
    private double _bestMap = double.NegativeInfinity;
    private TrainingProgress _progress = new(0, 0);

    /// <summary>Prepares a run of <paramref name="network"/> on <paramref name="dataset"/>, writing into <paramref name="workDir"/>.</summary>
    /// <param name="network">The network, its weights already initialized or loaded.</param>
    /// <param name="weights">
    /// The network's weights prepared for training (the generated <c>PrepareTraining</c>, or
    /// <c>ModelInfo.PrepareTraining</c>) from its current values. The trainer makes its sessions for
    /// every (batch, padded height, padded width) from them, trains the parameters of their
    /// <see cref="ITrainingWeights.Gradients"/>, and calls <see cref="ITrainingWeights.UpdateWeights"/>
    /// once per step and after <see cref="Resume"/>. The caller keeps ownership: dispose them (and
    /// their backend) after the trainer, and use no other session of them while it runs.
    /// </param>
    /// <param name="dataset">The training images and boxes.</param>
    /// <param name="options">The recipe.</param>
    /// <param name="workDir">Where log.json and the checkpoints go (created if missing).</param>
    public Trainer(INetwork network, ITrainingWeights weights, CocoDetectionDataset dataset, TrainerOptions options, string workDir)
        : this(network, weights, dataset, options, workDir, SingleProcessReducer.Instance)
    {
    }

    /// <summary>
    /// Prepares rank <see cref="IGradientReducer.Rank"/> of a synchronous data-parallel run over
    /// <paramref name="reducer"/>'s ranks (docs/DISTRIBUTED.md): every rank constructs its trainer
    /// with the same arguments (its own network, weights and backend), <see cref="TrainerOptions.BatchSize"/>
    /// is per rank, and only rank 0 writes into <paramref name="workDir"/>.
    /// </summary>
    /// <param name="network">This rank's network (its values are replaced by rank 0's when the run starts).</param>
    /// <param name="weights">This rank's prepared weights (as for the one-process constructor).</param>
    /// <param name="dataset">The training images, the same on every rank.</param>
    /// <param name="options">The recipe, the same on every rank.</param>
    /// <param name="workDir">Where rank 0 writes log.json and the checkpoints.</param>
    /// <param name="reducer">The group; <see cref="SingleProcessReducer.Instance"/> for one process.</param>
    public Trainer(INetwork network, ITrainingWeights weights, CocoDetectionDataset dataset, TrainerOptions options, string workDir, IGradientReducer reducer)
    {
        _reducer = reducer ?? throw new ArgumentNullException(nameof(reducer));
        _network = network ?? throw new ArgumentNullException(nameof(network));
        _weights = weights ?? throw new ArgumentNullException(nameof(weights));
        _backend = weights.Backend;
        ArgumentNullException.ThrowIfNull(dataset);
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _workDir = workDir ?? throw new ArgumentNullException(nameof(workDir));
        if (options.Epochs < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Epochs, "epochs must be at least 1");
        if (options.LogInterval < 1) throw new ArgumentOutOfRangeException(nameof(options), options.LogInterval, "log interval must be at least 1");
        if (options.Anchors is { AnchorsPerCell: not AnchorGenerator.AnchorsPerCell } anchors)
            throw new ArgumentOutOfRangeException(nameof(options), anchors.AnchorsPerCell, $"the anchor settings must give {AnchorGenerator.AnchorsPerCell} anchors per cell");
        if (options.CachedSessions < 1) throw new ArgumentOutOfRangeException(nameof(options), options.CachedSessions, "at least one session must be cached");
        _loader = new TrainDataLoader(dataset, new TrainLoaderOptions(
            options.BatchSize, options.Shuffle, options.Seed, options.DataWorkers, PrefetchBatches: 4,
            new TrainPipelineOptions(options.LongEdge, options.ShortEdge, options.FlipProbability), reducer.Rank, reducer.WorldSize));
        _classNames = [.. dataset.Categories.Select(c => c.Name)];
        // Every parameter, frozen ones included, so the optimiser state indexes as mmdetection's.
        _parameters = [.. network.State.Where(t => t.Kind == StateKind.Parameter)];
        _optimizer = options.Optimizer switch
        {
            TrainingOptimizerKind.Sgd => new SgdOptimizer(_parameters, options.LearningRate, options.Momentum, options.WeightDecay),
            TrainingOptimizerKind.AdamW => new AdamWOptimizer(_parameters, options.LearningRate, options.WeightDecay, options.AdamWBeta1, options.AdamWBeta2, options.AdamWEpsilon),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Optimizer, "unknown optimiser"),
        };
        // The trained parameters and their gradient arrays are the weights' (the same arrays every step).
        IReadOnlyList<ParameterGradient> gradients = weights.Gradients;
        foreach (ParameterGradient g in gradients)
            if (_optimizer.IndexOf(g.Parameter) < 0)
                throw new ArgumentException($"the training weights' parameter '{g.Key}' is not one of {network.Name}'s: prepare them from this network", nameof(weights));
        _trainedKeys = [.. gradients.Select(g => g.Key)];
        _gradients = [.. gradients.Select(g => new ParameterWithGradient(g.Parameter, g.Data))];
        _gradientData = [.. gradients.Select(g => g.Data)];
        _schedule = new StepLrSchedule(options.LearningRate, options.LearningRateSteps, StepLrSchedule.MmdetectionGamma, options.WarmupIterations, options.WarmupRatio);
        _loss = options.Loss == DetectionLossKind.Ghm ? GhmLossState.CreateLosses(network) : new RetinaBaselineLosses();
    }

    /// <summary>
    /// Class names by label, saved as the checkpoints' <c>CLASSES</c>: the dataset's categories in
    /// label order, or <see cref="TrainerOptions.ClassNames"/> when given (e.g. the 80 COCO names of
    /// a COCO model trained on a subset).
    /// </summary>
    public IReadOnlyList<string> ClassNames => _options.ClassNames ?? _classNames;

    /// <summary>Batches per epoch.</summary>
    public int IterationsPerEpoch => _loader.BatchesPerEpoch;

    /// <summary>Iterations the whole run does (epochs x batches, or the maximum).</summary>
    public long TotalIterations => Math.Min((long)_options.Epochs * IterationsPerEpoch, _options.MaxIterations ?? long.MaxValue);

    /// <summary>Where the run stands: completed epochs, iterations, position in the epoch.</summary>
    public TrainingProgress Progress => _progress;

    /// <summary>
    /// Continues a run of ours from <paramref name="checkpointPath"/>: weights, GHM state, optimiser
    /// state (SGD momentum buffers or AdamW moments) and the position in the data (same seed and
    /// batch size), so the run goes on as if it had not stopped.
    /// </summary>
    /// <exception cref="ArgumentException">The file was written with another optimiser, optimiser settings, seed or number of ranks.</exception>
    public void Resume(string checkpointPath)
    {
        ArgumentNullException.ThrowIfNull(checkpointPath);
        string[] keys = [.. _parameters.Select(p => p.Key)];
        using TrainingCheckpoint checkpoint = TrainingCheckpoint.Read(checkpointPath, keys, _trainedKeys);
        if (checkpoint.OptimizerKind != _optimizer.Kind)
        {
            string file = TrainingCheckpoint.Name(checkpoint.OptimizerKind), run = TrainingCheckpoint.Name(_optimizer.Kind);
            throw new ArgumentException($"{checkpointPath}: the run trained with {file}; resume it with the same optimiser (--optimizer {file.ToLowerInvariant()}, not {run.ToLowerInvariant()})", nameof(checkpointPath));
        }
        StateDictLoader.Load(_network, checkpoint.Weights, strict: true);
        try
        {
            checkpoint.RestoreOptimizer(_optimizer);
        }
        catch (InvalidOperationException e)
        {
            throw new ArgumentException(e.Message, nameof(checkpointPath), e); // other momentum, betas, eps or weight decay: a setting, not a bug
        }
        if (checkpoint.Progress.DataSeed is { } seed && seed != _options.Seed)
            throw new ArgumentException($"{checkpointPath}: the run used seed {seed}; resume it with the same --seed (not {_options.Seed})", nameof(checkpointPath));
        if (checkpoint.Weights.Meta?[WorldSizeMetaKey] is { Kind: PickleValueKind.Int } saved && saved.AsInt64 != _reducer.WorldSize)
            throw new ArgumentException($"{checkpointPath}: the run had {saved.AsInt64} ranks; resume it with as many (not {_reducer.WorldSize}): the data plan depends on it", nameof(checkpointPath));
        _progress = checkpoint.Progress;
        _weights.UpdateWeights();
    }

    /// <summary>The checkpoint meta entry holding the run's number of ranks (absent: one).</summary>
    public const string WorldSizeMetaKey = "ghmgen_world_size";

    /// <summary>
    /// Writes this rank's current state (weights, GHM state, optimiser state, position) as a resumable
    /// checkpoint at <paramref name="path"/>, on any rank (diagnostics: compare ranks' states).
    /// </summary>
    public void SaveCheckpoint(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        TrainingCheckpoint.Write(path, _network.State, _optimizer, _progress, CheckpointMeta());
    }

    /// <summary>
    /// Trains until the last epoch or <see cref="TrainerOptions.MaxIterations"/>, or until
    /// <paramref name="cancellationToken"/> is cancelled: then the iteration under way finishes, a
    /// resumable <c>latest.pth</c> is written and the result says so.
    /// </summary>
    /// <exception cref="NonFiniteLossException">A loss became NaN or infinite (the last good checkpoint is kept).</exception>
    /// <param name="progress">
    /// Told after every iteration, synchronously on the thread that runs <see cref="Run"/> (a
    /// <see cref="Progress{T}"/> made on a UI thread posts the reports there instead).
    /// </param>
    /// <param name="cancellationToken">Stops the run after the iteration under way, with a resumable checkpoint.</param>
    /// <param name="validate">
    /// Called after every <see cref="TrainerOptions.ValidationInterval"/> epochs with the 1-based
    /// epoch: returns the metrics to log as a <c>{"mode": "val"}</c> line (mmdetection's names,
    /// e.g. <c>bbox_mAP</c>); the best <c>bbox_mAP</c> so far is kept as <c>best_bbox_mAP.pth</c>.
    /// </param>
    public TrainResult Run(IProgress<TrainIterationReport>? progress = null, CancellationToken cancellationToken = default,
        Func<int, CancellationToken, IReadOnlyList<KeyValuePair<string, double>>>? validate = null)
    {
        bool writer = _reducer.Rank == 0; // only rank 0 writes the log and the checkpoints
        if (writer) Directory.CreateDirectory(_workDir);
        string logPath = Path.Combine(_workDir, "log.json");
        using TrainingLogWriter? log = !writer ? null
            : _progress.Iteration == 0 && !File.Exists(logPath)
            ? TrainingLogWriter.Create(logPath)
            : TrainingLogWriter.Append(logPath, _progress);
        int perEpoch = IterationsPerEpoch;
        long total = TotalIterations;
        string? lastCheckpoint = null;
        long startIteration = _progress.Iteration;
        bool distributed = _reducer.WorldSize > 1;
        if (distributed) StartTogether(total);
        if (startIteration >= total) return new TrainResult(startIteration, false, null, 0, 0);

        var clock = Stopwatch.StartNew();
        long images = 0;
        var window = new LogWindow();
        // Ranks stop together: a cancellation is passed on in the next iteration's sums, not acted on alone.
        using var cancelLoading = distributed ? new CancellationTokenSource() : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using TrainBatchStream stream = _loader.Open(_progress.Epoch, _progress.IterationInEpoch, _options.Epochs, cancelLoading.Token);
        bool cancelled = false;
        int reportedSkips = 0, loggedSkips = 0;
        TrainBatch? pending = null;
        bool exhausted = false;
        while (_progress.Iteration < total)
        {
            if (cancellationToken.IsCancellationRequested && !distributed)
            {
                cancelled = true;
                break;
            }
            var iterationClock = Stopwatch.StartNew();
            if (pending is null && !exhausted)
            {
                try
                {
                    if (stream.TryTakeNext(out TrainBatch? next)) pending = next;
                    else exhausted = true;
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    cancelled = true;
                    break;
                }
            }
            // One process: the next batch (a batch whose images were all skipped is passed over).
            // Data parallel: the next position of the plan, which every rank trains together; a rank
            // whose shard of it was skipped takes part without images (see Step).
            if (pending is null && !distributed) break;
            (int epoch, int batchIndex) = distributed ? (_progress.Epoch, _progress.IterationInEpoch) : (pending!.Epoch, pending.BatchIndex);
            TrainBatch? batch = pending is not null && pending.Epoch == epoch && pending.BatchIndex == batchIndex ? pending : null;
            if (batch is not null) pending = null;
            double lr = _schedule.LearningRate(epoch, _progress.Iteration);
            (float lossCls, float lossBox, float gradNorm, bool stopRequested) = Step(batch, epoch, batchIndex, lr, cancellationToken.IsCancellationRequested);
            images += batch?.Count ?? 0;
            long iteration = _progress.Iteration + 1;
            bool epochEnd = batchIndex + 1 == perEpoch;
            _progress = epochEnd
                ? new TrainingProgress(epoch + 1, iteration, 0, _options.Seed)
                : new TrainingProgress(epoch, iteration, batchIndex + 1, _options.Seed);
            double seconds = iterationClock.Elapsed.TotalSeconds;
            window.Add(lr, lossCls, lossBox, gradNorm, seconds, batch?.DataTime.TotalSeconds ?? 0);
            if (window.Count == _options.LogInterval || epochEnd || iteration == total)
            {
                log?.WriteTrain(window.Entry(epoch + 1, batchIndex + 1) with { SkippedImages = stream.SkippedImageCount - loggedSkips });
                loggedSkips = stream.SkippedImageCount;
                window = new LogWindow();
            }
            IReadOnlyList<ImageSkip> skips = stream.SkippedImages;
            ImageSkip[] newSkips = [.. skips.Skip(reportedSkips)];
            reportedSkips = skips.Count;
            progress?.Report(new TrainIterationReport(epoch + 1, batchIndex + 1, perEpoch, iteration, total, lr, lossCls, lossBox, gradNorm,
                images / Math.Max(clock.Elapsed.TotalSeconds, 1e-9), stream.SkippedImageCount, newSkips));
            if (_options.CheckpointInterval > 0 && iteration % _options.CheckpointInterval == 0)
            {
                lastCheckpoint = Save($"iter_{iteration}.pth");
                RemoveOldCheckpoints("iter_", iteration, _options.CheckpointInterval);
            }
            if (epochEnd)
            {
                lastCheckpoint = Save($"epoch_{epoch + 1}.pth");
                RemoveOldCheckpoints("epoch_", epoch + 1, 1);
            }
            if (writer && epochEnd && validate is not null && (epoch + 1) % _options.ValidationInterval == 0)
            {
                IReadOnlyList<KeyValuePair<string, double>> metrics = validate(epoch + 1, cancellationToken);
                log!.WriteValidation(epoch + 1, perEpoch, lr, metrics);
                foreach (KeyValuePair<string, double> m in metrics)
                {
                    if (m.Key != "bbox_mAP" || !(m.Value > _bestMap)) continue;
                    _bestMap = m.Value;
                    File.Copy(Path.Combine(_workDir, $"epoch_{epoch + 1}.pth"), Path.Combine(_workDir, "best_bbox_mAP.pth.tmp"), overwrite: true);
                    File.Move(Path.Combine(_workDir, "best_bbox_mAP.pth.tmp"), Path.Combine(_workDir, "best_bbox_mAP.pth"), overwrite: true);
                }
            }
            if (stopRequested && _progress.Iteration < total)
            {
                cancelled = true; // every rank saw some rank's request in the same iteration's sums
                break;
            }
        }
        if (lastCheckpoint is null || cancelled || _progress.Iteration == total && !File.Exists(Path.Combine(_workDir, "latest.pth")))
            lastCheckpoint = Save(null);
        return new TrainResult(_progress.Iteration, cancelled, lastCheckpoint, stream.SkippedImageCount,
            images / Math.Max(clock.Elapsed.TotalSeconds, 1e-9));
    }

    // Data parallel: every rank takes rank 0's state (parameters and buffers; the same checkpoint
    // on resume) and checks that all ranks are at the same point of the same plan.
    private void StartTogether(long total)
    {
        foreach (StateTensor t in _network.State)
            _reducer.Broadcast(t.ElementType == StateElementType.Int64
                ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Int64Data.AsSpan())
                : System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Data.AsSpan()));
        _weights.UpdateWeights();
        // Equal on all ranks iff N x sum(x^2) == (sum x)^2 for each (exact in doubles at these sizes).
        double[] own = [_progress.Iteration, total, IterationsPerEpoch, _gradientData.Length];
        Span<double> sums = stackalloc double[2 * own.Length];
        for (int i = 0; i < own.Length; i++) (sums[2 * i], sums[2 * i + 1]) = (own[i], own[i] * own[i]);
        _reducer.Sum(sums);
        for (int i = 0; i < own.Length; i++)
            if (_reducer.WorldSize * sums[2 * i + 1] != sums[2 * i] * sums[2 * i])
                throw new InvalidOperationException($"rank {_reducer.Rank}: the {_reducer.WorldSize} ranks do not agree on " +
                    new[] { "the resume position", "the total iterations", "the batches per epoch", "the trained parameters" }[i] +
                    $" (this rank: {own[i]}); start every rank with the same arguments and checkpoint");
    }

    // One iteration on one batch: forward, loss, backward, (all-reduce,) clip, SGD, weights to the backend.
    // A null batch (data parallel only): this rank's whole shard of the batch was skipped; it takes
    // part with no loss and a zero gradient, so that every rank makes the same step.
    private (float LossCls, float LossBox, float GradNorm, bool Stop) Step(TrainBatch? batch, int epoch, int batchIndex, double learningRate, bool stopRequested)
    {
        float lossCls = 0, lossBox = 0;
        bool finiteOutputs = true;
        DetectionLossResult? loss = null;
        CachedSession? entry = null;
        if (batch is not null)
        {
            (entry, loss, finiteOutputs) = ForwardAndLoss(batch);
            (lossCls, lossBox) = (loss.ClassificationLoss, loss.BoxLoss);
        }
        if (_reducer.WorldSize > 1)
        {
            // mmdetection's _parse_losses: logged losses are the mean over the ranks (here over
            // the ranks that had images). One rank's non-finite outputs or stop request reaches
            // every rank here, so all stop together.
            Span<double> sums = [lossCls, lossBox, finiteOutputs ? 0 : 1, stopRequested ? 1 : 0, batch is null ? 0 : 1];
            _reducer.Sum(sums);
            lossCls = (float)(sums[0] / Math.Max(sums[4], 1));
            lossBox = (float)(sums[1] / Math.Max(sums[4], 1));
            finiteOutputs = sums[2] == 0;
            stopRequested = sums[3] > 0;
        }
        if (!float.IsFinite(lossCls) || !float.IsFinite(lossBox) || !finiteOutputs)
            throw new NonFiniteLossException($"iteration {_progress.Iteration + 1} (epoch {epoch + 1}, batch {batchIndex + 1}): " +
                (finiteOutputs ? "" : "the network's outputs are not finite, ") +
                $"loss_cls {lossCls}, loss_bbox {lossBox}; stopped, the last checkpoint in {_workDir} is the last good state");

        // Data parallel, overlapped: the reduction of each bucket of gradients starts as soon as
        // Backward has written them (a rank without images reports its zeros at once).
        IOverlappingGradientReducer? overlapping = _reducer.WorldSize > 1 && _options.OverlapGradientReduction ? _reducer as IOverlappingGradientReducer : null;
        IGradientReadySink? ready = overlapping?.BeginAverageGradients(_gradientData);
        if (entry is not null && loss is not null)
        {
            entry.UploadGradients(_backend);
            entry.Session.Backward(ready);
        }
        else
        {
            foreach (float[] g in _gradientData) Array.Clear(g);
            for (int i = _gradientData.Length - 1; i >= 0; i--) ready?.GradientReady(i);
        }
        // DDP: mean over the ranks, before clipping.
        if (overlapping is not null) overlapping.EndAverageGradients();
        else if (_reducer.WorldSize > 1) _reducer.AverageGradients(_gradientData);

        float gradNorm = _options.GradientClip > 0
            ? GradientClipping.ClipGradNorm(_gradients, _options.GradientClip)
            : GradientClipping.TotalNorm(_gradientData);
        if (!float.IsFinite(gradNorm))
            throw new NonFiniteLossException($"iteration {_progress.Iteration + 1} (epoch {epoch + 1}, batch {batchIndex + 1}): the gradient norm is {gradNorm}; stopped before the update, the last checkpoint in {_workDir} is the last good state");
        _optimizer.LearningRate = learningRate;
        _optimizer.Step(_gradients);
        _weights.UpdateWeights(); // once, for every cached session
        return (lossCls, lossBox, gradNorm, stopRequested);
    }

    // Forward, targets and loss of one batch (its head-output gradients in the result).
    private (CachedSession Entry, DetectionLossResult Loss, bool FiniteOutputs) ForwardAndLoss(TrainBatch batch)
    {
        CachedSession entry = Session(batch.Count, batch.Height, batch.Width);
        entry.Session.Forward(batch.Tensor);
        entry.RefreshViews();
        entry.DownloadOutputs(_backend);
        int classes = entry.ClassTensors[0].C / AnchorGenerator.AnchorsPerCell;
        // mmdetection's labels: the index, in json order, of the categories whose names are class
        // names; a network with more classes than the dataset has categories trains the first ones.
        if (classes < _classNames.Count)
            throw new InvalidOperationException($"the network predicts {classes} classes; the dataset has {_classNames.Count} categories");

        entry.SetLevels(batch.FeatureSizes, _options.Anchors);
        RetinaTargets targets = RetinaTargets.Build(entry.Anchors, entry.LevelCounts, batch.GtBoxes, batch.GtLabels, classes,
            AnchorGenerator.AnchorsPerCell, validFlagsPerImage: batch.ValidFlags);
        DetectionLossResult loss = entry.Loss;
        _loss.Compute(entry.ClassOutputs, entry.BoxOutputs, targets, loss);
        // GHM gives elements whose gradient norm is NaN no bin and so no weight: a NaN output can
        // leave the loss finite, so the outputs are checked too (mmdetection's loss would be NaN).
        bool finiteOutputs = entry.ClassOutputs.All(AllFinite) && entry.BoxOutputs.All(AllFinite);
        return (entry, loss, finiteOutputs);
    }

    private static bool AllFinite(ReadOnlyMemory<float> values)
    {
        foreach (float v in values.Span)
            if (!float.IsFinite(v)) return false;
        return true;
    }

    // The cached session for the batch shape, most recently used first; a new shape evicts the least recently used.
    private CachedSession Session(int batch, int height, int width)
    {
        for (LinkedListNode<CachedSession>? node = _sessions.First; node is not null; node = node.Next)
        {
            CachedSession cached = node.Value;
            if (cached.Session.Batch != batch || cached.Session.Height != height || cached.Session.Width != width) continue;
            if (node != _sessions.First)
            {
                _sessions.Remove(node);
                _sessions.AddFirst(node);
            }
            return cached;
        }
        // The sessions share the weights' activation buffers (grown to the largest shape yet), so
        // an evicted one gives back only its host copies of the outputs and their gradients.
        while (_sessions.Count >= _options.CachedSessions)
        {
            _sessions.Last!.Value.Session.Dispose();
            _sessions.RemoveLast();
        }
        var created = new CachedSession(_weights.CreateSession(batch, height, width), _options.HostCopiesOfOutputs);
        _sessions.AddFirst(created);
        return created;
    }

    // Writes OUT/name (when given) and OUT/latest.pth; returns the path written last.
    private PickleValue CheckpointMeta()
    {
        List<KeyValuePair<string, PickleValue>> entries =
        [
            new("CLASSES", PickleValue.NewTuple(ClassNames.Select(PickleValue.FromString))),
            new("ghmgen_model", PickleValue.FromString(_network.Name)),
        ];
        if (_reducer.WorldSize > 1) entries.Add(new(WorldSizeMetaKey, PickleValue.FromInt64(_reducer.WorldSize)));
        return PickleValue.NewDict(entries);
    }

    // mmcv's CheckpointHook with max_keep_ckpts: after PREFIX{current}.pth, delete PREFIX{current - k*interval}.pth
    // for k >= MaxKeptCheckpoints, going back until one is missing. Rank 0 only, as it alone writes.
    private void RemoveOldCheckpoints(string prefix, long current, long interval)
    {
        if (_reducer.Rank != 0 || _options.MaxKeptCheckpoints <= 0) return;
        for (long step = current - _options.MaxKeptCheckpoints * interval; step > 0; step -= interval)
        {
            string path = Path.Combine(_workDir, $"{prefix}{step}.pth");
            if (!File.Exists(path)) break;
            File.Delete(path);
        }
    }

    // Rank 0 only (others write nothing and return null).
    private string? Save(string? name)
    {
        if (_reducer.Rank != 0) return null;
        PickleValue meta = CheckpointMeta();
        string latest = Path.Combine(_workDir, "latest.pth");
        if (name is not null)
        {
            string path = Path.Combine(_workDir, name);
            TrainingCheckpoint.Write(path, _network.State, _optimizer, _progress, meta);
            File.Copy(path, latest + ".tmp", overwrite: true);
            File.Move(latest + ".tmp", latest, overwrite: true);
            return path;
        }
        TrainingCheckpoint.Write(latest, _network.State, _optimizer, _progress, meta);
        return latest;
    }

    /// <summary>Releases the training sessions (not the network or backend).</summary>
    public void Dispose()
    {
        foreach (CachedSession entry in _sessions) entry.Session.Dispose();
        _sessions.Clear();
    }

    // A session of one batch shape with the host memory of its steps: the outputs the loss reads, the
    // gradients it writes, and the anchors of its feature sizes. When the backend keeps tensors in host
    // memory (the CPU backend's HostBuffer) and no output gradient overlaps an output, the loss reads the
    // outputs and writes the gradients in the session's own buffers: no copies, and nothing per session
    // beyond the activation buffers that all sessions share. Otherwise (a GPU) they are copied to and
    // from host arrays of this session's, reused while it is cached.
    private sealed class CachedSession
    {
        private FeatureSize[] _levels = [];
        private readonly int[] _cls, _box;
        private readonly Memory<float>[] _classGradients, _boxGradients;
        private float[][]? _classCopies, _boxCopies, _classGradientCopies, _boxGradientCopies;

        private readonly bool _copies;

        public CachedSession(ITrainingSession session, bool copies)
        {
            Session = session;
            _copies = copies;
            IReadOnlyList<(string Name, TensorView Tensor)> outputs = session.Outputs;
            var cls = new List<int>();
            var box = new List<int>();
            for (int i = 0; i < outputs.Count; i++) (outputs[i].Name.StartsWith("cls", StringComparison.Ordinal) ? cls : box).Add(i);
            if (cls.Count == 0 || cls.Count != box.Count)
                throw new ArgumentException($"a RetinaNet-style network has as many cls_* as box outputs, at least one; this one has {cls.Count} and {box.Count}");
            _cls = [.. cls];
            _box = [.. box];
            ClassTensors = new TensorView[_cls.Length];
            BoxTensors = new TensorView[_box.Length];
            ClassGradientTensors = new TensorView[_cls.Length];
            BoxGradientTensors = new TensorView[_box.Length];
            ClassOutputs = new ReadOnlyMemory<float>[_cls.Length];
            BoxOutputs = new ReadOnlyMemory<float>[_box.Length];
            _classGradients = new Memory<float>[_cls.Length];
            _boxGradients = new Memory<float>[_box.Length];
            RefreshViews();
        }

        public ITrainingSession Session { get; }

        // Views of the session's outputs and their gradients, valid from its last Forward (which
        // rebinds them when a session of a larger shape grew the shared activation buffers).
        public TensorView[] ClassTensors { get; }

        public TensorView[] BoxTensors { get; }

        public TensorView[] ClassGradientTensors { get; }

        public TensorView[] BoxGradientTensors { get; }

        // Whether the loss works in the session's buffers (see the class comment).
        public bool InPlace { get; private set; }

        // What the loss reads (the outputs) and writes (Loss's gradients), per level.
        public ReadOnlyMemory<float>[] ClassOutputs { get; }

        public ReadOnlyMemory<float>[] BoxOutputs { get; }

        public DetectionLossResult Loss { get; private set; } = null!;

        // Reads the views again and binds the loss's memory to them: call after each Forward.
        public void RefreshViews()
        {
            IReadOnlyList<(string Name, TensorView Tensor)> outputs = Session.Outputs, gradients = Session.OutputGradients;
            for (int l = 0; l < _cls.Length; l++)
            {
                ClassTensors[l] = outputs[_cls[l]].Tensor;
                BoxTensors[l] = outputs[_box[l]].Tensor;
                ClassGradientTensors[l] = gradients[_cls[l]].Tensor;
                BoxGradientTensors[l] = gradients[_box[l]].Tensor;
            }
            TensorView[] read = [.. ClassTensors, .. BoxTensors], written = [.. ClassGradientTensors, .. BoxGradientTensors];
            InPlace = !_copies && read.Concat(written).All(t => t.Buffer is HostBuffer) && !read.Any(r => written.Any(w => r.Overlaps(w)));
            bool changed = Loss is null;
            for (int l = 0; l < _cls.Length; l++)
            {
                ClassOutputs[l] = InPlace ? Host(ClassTensors[l]) : Copy(ref _classCopies, ClassTensors, l);
                BoxOutputs[l] = InPlace ? Host(BoxTensors[l]) : Copy(ref _boxCopies, BoxTensors, l);
                changed |= Rebind(ref _classGradients[l], InPlace ? Host(ClassGradientTensors[l]) : Copy(ref _classGradientCopies, ClassGradientTensors, l));
                changed |= Rebind(ref _boxGradients[l], InPlace ? Host(BoxGradientTensors[l]) : Copy(ref _boxGradientCopies, BoxGradientTensors, l));
            }
            if (changed) Loss = new DetectionLossResult(_classGradients, _boxGradients);
        }

        // Host copies of the outputs (unless the loss reads them in place).
        public void DownloadOutputs(IBackend backend)
        {
            if (InPlace) return;
            for (int l = 0; l < _cls.Length; l++)
            {
                backend.Download(ClassTensors[l], _classCopies![l]);
                backend.Download(BoxTensors[l], _boxCopies![l]);
            }
        }

        // The loss's gradients into the session's output gradients (unless it wrote them there).
        public void UploadGradients(IBackend backend)
        {
            if (InPlace) return;
            for (int l = 0; l < _cls.Length; l++)
            {
                backend.Upload(_classGradientCopies![l], ClassGradientTensors[l]);
                backend.Upload(_boxGradientCopies![l], BoxGradientTensors[l]);
            }
        }

        private static Memory<float> Host(TensorView t) => HostBuffer.MemoryOf(t);

        // This session's host array for views[l], made on first use (the views' shapes are fixed per session).
        private static float[] Copy(ref float[][]? copies, TensorView[] views, int l)
        {
            copies ??= [.. views.Select(t => new float[t.ElementCount])];
            return copies[l];
        }

        private static bool Rebind(ref Memory<float> slot, Memory<float> memory)
        {
            if (slot.Equals(memory)) return false;
            slot = memory;
            return true;
        }

        public float[] Anchors { get; private set; } = [];

        public int[] LevelCounts { get; private set; } = [];

        // The anchors of the batch's feature sizes (the same for every batch of this shape).
        public void SetLevels(IReadOnlyList<FeatureSize> levels, RetinaAnchors? anchors)
        {
            bool same = levels.Count == _levels.Length;
            for (int l = 0; same && l < _levels.Length; l++) same = levels[l] == _levels[l];
            if (same) return;
            _levels = [.. levels];
            Anchors = AnchorGenerator.AllAnchors(_levels, anchors);
            LevelCounts = [.. _levels.Select(l => l.Height * l.Width * AnchorGenerator.AnchorsPerCell)];
        }
    }

    // Sums of one log interval (mmcv's LogBuffer averages every figure over the interval).
    private sealed class LogWindow
    {
        private double _lr, _cls, _box, _norm, _time, _data;

        public int Count { get; private set; }

        public void Add(double lr, float cls, float box, float norm, double time, double data)
        {
            _lr = lr; // mmcv logs the current lr, not an average
            _cls += cls;
            _box += box;
            _norm += norm;
            _time += time;
            _data += data;
            Count++;
        }

        public TrainLogEntry Entry(int epoch, int iteration)
        {
            float cls = (float)(_cls / Count), box = (float)(_box / Count);
            return new TrainLogEntry(epoch, iteration, _lr, cls, box, cls + box, (float)(_norm / Count), _time / Count, _data / Count);
        }
    }
}
