using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Datasets;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// The Trainer over one <see cref="ITrainingWeights"/> shared by the sessions of every padded batch
/// size: R-50 on the CPU backend, a few synthetic images whose batches pad to different sizes.
/// </summary>
public sealed class TrainerTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "ghm-trainer-tests-" + Guid.NewGuid().ToString("N"));

    public TrainerTests()
    {
        SyntheticShapes.Write(_directory, new SyntheticShapesOptions { Seed = 3, TrainImages = 8, ValImages = 1, MaxDegreeOfParallelism = 1 });
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void SessionsOfSeveralSizes_CachedOrMadeAgain_TrainTheSame()
    {
        CocoDetectionDataset dataset = CocoDetectionDataset.Load(
            Path.Combine(_directory, SyntheticShapes.AnnotationPath(SyntheticShapes.TrainSplit)), Path.Combine(_directory, SyntheticShapes.TrainSplit),
            new CocoDatasetOptions(ClassNames: [.. SyntheticShapeKinds.All.Select(SyntheticShapeKinds.Name)]));
        Assert.Equal(8, dataset.Count);
        var options = new TrainerOptions
        {
            BatchSize = 2, Epochs = 1, LongEdge = 160, ShortEdge = 96, LearningRate = 0.02, WarmupIterations = 0,
            LogInterval = 1, DataWorkers = 1, Seed = 5,
        };

        // The batches pad to more than one size, and a size comes back after another one.
        var loader = new TrainDataLoader(dataset, new TrainLoaderOptions(options.BatchSize, options.Shuffle, options.Seed, 1, 1,
            new TrainPipelineOptions(options.LongEdge, options.ShortEdge, options.FlipProbability)));
        (int, int)[] shapes = [.. Enumerable.Range(0, loader.BatchesPerEpoch).Select(i => loader.LoadBatch(0, i, out _)!).Select(b => (b.Height, b.Width))];
        Assert.True(shapes.Distinct().Count() >= 2, $"batch sizes {string.Join(", ", shapes)}");
        Assert.Contains(Enumerable.Range(2, Math.Max(0, shapes.Length - 2)), i => shapes[i] == shapes[i - 2] && shapes[i] != shapes[i - 1]);

        // One cached session (every change of size makes a new one on the shared weights) against three.
        List<TrainIterationReport> fresh = Train(dataset, options with { CachedSessions = 1 }, "one");
        List<TrainIterationReport> cached = Train(dataset, options with { CachedSessions = 3 }, "three");
        // And the losses on host copies of the outputs (a GPU backend's path) against in place in the CPU backend's buffers.
        List<TrainIterationReport> copies = Train(dataset, options with { CachedSessions = 3, HostCopiesOfOutputs = true }, "copies");
        Assert.Equal(shapes.Length, fresh.Count);
        Assert.Equal(fresh.Select(r => (r.LossCls, r.LossBbox, r.GradNorm)), cached.Select(r => (r.LossCls, r.LossBbox, r.GradNorm)));
        Assert.Equal(fresh.Select(r => (r.LossCls, r.LossBbox, r.GradNorm)), copies.Select(r => (r.LossCls, r.LossBbox, r.GradNorm)));
        Assert.All(fresh, r => Assert.True(float.IsFinite(r.LossCls) && float.IsFinite(r.LossBbox) && r.GradNorm > 0));
    }

    [Fact]
    public void MaxKeptCheckpoints_KeepsTheNewestEpochAndIterationFiles_AsMmcv()
    {
        CocoDetectionDataset dataset = CocoDetectionDataset.Load(
            Path.Combine(_directory, SyntheticShapes.AnnotationPath(SyntheticShapes.TrainSplit)), Path.Combine(_directory, SyntheticShapes.TrainSplit),
            new CocoDatasetOptions(ClassNames: [.. SyntheticShapeKinds.All.Select(SyntheticShapeKinds.Name)]));
        ModelInfo model = ModelRegistry.Get("ghm-demo-r18-fpn");
        string Run(int kept)
        {
            INetwork network = model.Create();
            DetectorInitialization.Initialize(network, seed: 1);
            using var backend = new CpuBackend(2);
            using ITrainingWeights weights = model.PrepareTraining(network, backend);
            string work = Path.Combine(_directory, $"kept-{kept}");
            var options = new TrainerOptions
            {
                BatchSize = 4, Epochs = 4, LongEdge = 128, ShortEdge = 96, WarmupIterations = 0, LogInterval = 1, DataWorkers = 1,
                CheckpointInterval = 1, MaxKeptCheckpoints = kept, Anchors = model.Head.Anchors,
            };
            using var trainer = new Trainer(network, weights, dataset, options, work);
            TrainResult result = trainer.Run();
            Assert.Equal(8, result.Iterations); // 8 images, batch 4, 4 epochs
            return work;
        }
        string[] Files(string work) => [.. Directory.GetFiles(work, "*.pth").Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

        // mmcv's CheckpointHook(max_keep_ckpts=2): the two newest of each kind, latest.pth always.
        Assert.Equal(["epoch_3.pth", "epoch_4.pth", "iter_7.pth", "iter_8.pth", "latest.pth"], Files(Run(2)));
        Assert.Equal(["epoch_4.pth", "iter_8.pth", "latest.pth"], Files(Run(1)));
        // 0: mmdetection's default, every one kept.
        Assert.Equal(13, Files(Run(0)).Length);
    }

    private List<TrainIterationReport> Train(CocoDetectionDataset dataset, TrainerOptions options, string name)
    {
        ModelInfo model = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        INetwork network = model.Create();
        DetectorInitialization.Initialize(network, seed: 1);
        using var backend = new CpuBackend(2);
        using ITrainingWeights weights = model.PrepareTraining(network, backend);
        using var trainer = new Trainer(network, weights, dataset, options, Path.Combine(_directory, name));
        var reports = new Reports();
        TrainResult result = trainer.Run(reports);
        Assert.False(result.Cancelled);

        // After the last step the backend holds the trained host weights: a session of the shared
        // weights computes what the host weights prepared afresh compute.
        const int height = 96, width = 128;
        float[] input = new float[3 * height * width];
        SeededWeights.FillInput(input);
        using ITrainingSession check = weights.CreateSession(1, height, width);
        using IForwardSession fresh = model.CreateSession(network, backend, 1, height, width);
        check.Forward(input);
        fresh.Forward(input);
        for (int o = 0; o < fresh.Outputs.Count; o++)
        {
            float[] want = new float[fresh.Outputs[o].Tensor.ElementCount], got = new float[want.Length];
            backend.Download(fresh.Outputs[o].Tensor, want);
            backend.Download(check.Outputs[o].Tensor, got);
            Assert.True(want.AsSpan().SequenceEqual(got), $"{fresh.Outputs[o].Name} differs from the trained weights prepared afresh");
        }
        return reports.List;
    }

    private sealed class Reports : IProgress<TrainIterationReport>
    {
        public List<TrainIterationReport> List { get; } = [];

        public void Report(TrainIterationReport value) => List.Add(value);
    }
}
