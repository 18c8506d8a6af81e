// Shared pieces of the Trainer tests: the fixture dataset and settings of
// tools/reference/train_reference.py, runs of GhmGen.Training.Trainer on the CPU backend from the
// seeded R-50, and readers for what a run leaves behind (log.json, latest.pth, the network state).
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Models.Tests.Training;

/// <summary>One <c>{"mode": "train"}</c> line of log.json (times left out: they are not deterministic).</summary>
internal sealed record TrainLogLine(int Epoch, int Iteration, double Lr, double LossCls, double LossBbox, double Loss, double GradNorm);

/// <summary>Runs of the Trainer on <c>Fixtures/Training</c> with the settings the PyTorch fixture was made with.</summary>
internal static class TrainerHarness
{
    public const string ModelName = "retinanet-ghm-r50-fpn";

    /// <summary>Backend threads of every run (the resume tests compare runs bitwise, so all use the same count).</summary>
    public const int Threads = 2;

    public static ModelInfo Model => ModelRegistry.Get(ModelName);

    public static string FixtureDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Training");

    public static string AnnotationFile => Path.Combine(FixtureDirectory, "annotations.json");

    public static string ImageRoot => Path.Combine(FixtureDirectory, "images");

    private static readonly Lazy<JsonElement> Reference = new(() =>
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDirectory, "train_reference.json")));
        return doc.RootElement.Clone();
    });

    /// <summary>train_reference.json's root.</summary>
    public static JsonElement Fixture => Reference.Value;

    public static CocoDetectionDataset LoadDataset() => CocoDetectionDataset.Load(AnnotationFile, ImageRoot);

    /// <summary>
    /// The fixture's settings as TrainerOptions: batch 2, json order (no shuffle), flip probability 0,
    /// keep-ratio scale 128x96, lr 0.01 with a 3-iteration linear warm-up from ratio 0.1, momentum
    /// 0.9, weight decay 1e-4, clip 35, lr steps [8, 11], one log line per iteration.
    /// </summary>
    public static TrainerOptions Options(int epochs, long? maxIterations)
    {
        JsonElement s = Fixture.GetProperty("settings");
        Assert.False(s.GetProperty("shuffle").GetBoolean());
        int[] scale = [.. s.GetProperty("scale").EnumerateArray().Select(e => e.GetInt32())];
        return new TrainerOptions
        {
            BatchSize = s.GetProperty("batch").GetInt32(),
            Epochs = epochs,
            MaxIterations = maxIterations,
            LearningRate = s.GetProperty("lr").GetDouble(),
            Momentum = s.GetProperty("momentum").GetDouble(),
            WeightDecay = s.GetProperty("weight_decay").GetDouble(),
            WarmupIterations = s.GetProperty("warmup_iters").GetInt32(),
            WarmupRatio = s.GetProperty("warmup_ratio").GetDouble(),
            LearningRateSteps = [.. s.GetProperty("lr_steps").EnumerateArray().Select(e => e.GetInt32())],
            GradientClip = s.GetProperty("grad_clip").GetDouble(),
            LongEdge = scale.Max(),
            ShortEdge = scale.Min(),
            FlipProbability = s.GetProperty("flip_prob").GetDouble(),
            Shuffle = false,
            LogInterval = 1,
            DataWorkers = 2,
        };
    }

    /// <summary>The R-50 with SeededWeights (the same values as seeded_weights.py gives PyTorch).</summary>
    public static INetwork SeededNetwork()
    {
        INetwork network = Model.Create();
        SeededWeights.Fill(network);
        return network;
    }

    /// <summary>
    /// Trains <paramref name="network"/> in place: a Trainer over the fixture dataset on a
    /// <see cref="CpuBackend"/> with <see cref="Threads"/> threads, optionally resumed from a checkpoint.
    /// </summary>
    public static TrainResult Run(INetwork network, string workDir, TrainerOptions options, string? resumeFrom = null,
        IProgress<TrainIterationReport>? progress = null, CancellationToken cancellationToken = default)
    {
        ModelInfo model = Model;
        CocoDetectionDataset dataset = LoadDataset();
        using var backend = new CpuBackend(threads: Threads);
        using ITrainingWeights weights = model.PrepareTraining(network, backend);
        using var trainer = new Trainer(network, weights, dataset, options, workDir);
        if (resumeFrom is not null) trainer.Resume(resumeFrom);
        return trainer.Run(progress, cancellationToken);
    }

    public static string NewWorkDirectory(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "ghmgen-trainer-tests", $"{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }

    /// <summary>The train lines of a log.json.</summary>
    public static List<TrainLogLine> ReadLog(string workDir)
    {
        var lines = new List<TrainLogLine>();
        foreach (string line in File.ReadAllLines(Path.Combine(workDir, "log.json")))
        {
            if (line.Length == 0) continue;
            using JsonDocument doc = JsonDocument.Parse(line);
            JsonElement e = doc.RootElement;
            if (e.GetProperty("mode").GetString() != "train") continue;
            lines.Add(new TrainLogLine(e.GetProperty("epoch").GetInt32(), e.GetProperty("iter").GetInt32(), e.GetProperty("lr").GetDouble(),
                e.GetProperty("loss_cls").GetDouble(), e.GetProperty("loss_bbox").GetDouble(), e.GetProperty("loss").GetDouble(),
                e.GetProperty("grad_norm").GetDouble()));
        }
        return lines;
    }

    /// <summary>Momentum buffers by key from a checkpoint the Trainer wrote.</summary>
    public static Dictionary<string, float[]> ReadMomentumBuffers(string checkpoint, INetwork network)
    {
        string[] keys = [.. network.State.Where(t => t.Kind == StateKind.Parameter).Select(t => t.Key)];
        using TrainingCheckpoint c = TrainingCheckpoint.Read(checkpoint, keys, Model.TrainedKeys);
        return c.MomentumBuffers.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>SHA-256 of a tensor's little-endian bytes (float32 or int64).</summary>
    public static string Hash(StateTensor t) => t.ElementType == StateElementType.Int64
        ? Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(t.Int64Data.AsSpan())))
        : Hash(t.Data);

    public static string Hash(ReadOnlySpan<float> values) => Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(values)));

    /// <summary>Hashes of every state tensor by key.</summary>
    public static Dictionary<string, string> StateHashes(INetwork network) =>
        network.State.ToDictionary(t => t.Key, Hash, StringComparer.Ordinal);

    /// <summary>The keys whose hashes differ (or exist on one side only).</summary>
    public static List<string> Differences(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        [.. a.Keys.Union(b.Keys).Where(k => !a.TryGetValue(k, out string? x) || !b.TryGetValue(k, out string? y) || x != y).Order(StringComparer.Ordinal)];
}

/// <summary>What a run leaves: its work folder, its network's state hashes, its momentum buffers' hashes and its log.</summary>
internal sealed record RunOutcome(string WorkDir, TrainResult Result, Dictionary<string, string> State, Dictionary<string, string> Momentum, List<TrainLogLine> Log)
{
    public static RunOutcome Of(string workDir, TrainResult result, INetwork network) => new(workDir, result,
        TrainerHarness.StateHashes(network),
        TrainerHarness.ReadMomentumBuffers(Path.Combine(workDir, "latest.pth"), network).ToDictionary(kv => kv.Key, kv => TrainerHarness.Hash(kv.Value), StringComparer.Ordinal),
        TrainerHarness.ReadLog(workDir));
}

/// <summary>The tests that share <see cref="TrainerRuns"/> (run one after another).</summary>
[CollectionDefinition(Name)]
public sealed class TrainerRunsCollection : ICollectionFixture<TrainerRuns>
{
    public const string Name = "Trainer runs";
}

/// <summary>
/// The runs several tests share (xunit collection fixture): the first two iterations (the PyTorch
/// comparison and the first half of the resume test) and four iterations in one go (2 epochs of 2).
/// </summary>
public sealed class TrainerRuns : IDisposable
{
    private readonly Lazy<(RunOutcome Outcome, INetwork Network)> _firstTwo;
    private readonly Lazy<RunOutcome> _allFour;
    private readonly List<string> _dirs = [];

    public TrainerRuns()
    {
        _firstTwo = new(() =>
        {
            string dir = NewDir("first-two");
            INetwork network = TrainerHarness.SeededNetwork();
            TrainResult result = TrainerHarness.Run(network, dir, TrainerHarness.Options(epochs: 2, maxIterations: 2));
            return (RunOutcome.Of(dir, result, network), network);
        });
        _allFour = new(() =>
        {
            string dir = NewDir("all-four");
            INetwork network = TrainerHarness.SeededNetwork();
            TrainResult result = TrainerHarness.Run(network, dir, TrainerHarness.Options(epochs: 2, maxIterations: null));
            return RunOutcome.Of(dir, result, network);
        });
    }

    /// <summary>Iterations 1-2 (epoch 1) with the network they trained.</summary>
    internal (RunOutcome Outcome, INetwork Network) FirstTwo => _firstTwo.Value;

    /// <summary>Iterations 1-4 (epochs 1-2) in one run.</summary>
    internal RunOutcome AllFour => _allFour.Value;

    internal string NewDir(string name)
    {
        string dir = TrainerHarness.NewWorkDirectory(name);
        lock (_dirs) _dirs.Add(dir);
        return dir;
    }

    public void Dispose()
    {
        foreach (string dir in _dirs)
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
