using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// <see cref="Trainer"/> with batch norms trained on batch statistics (ghm-demo-r18-fpn,
/// NormEval = false) on the fixture dataset (seeded weights, 2 iterations per epoch, CPU backend
/// with the same thread count throughout): every iteration updates every running_mean,
/// running_var and num_batches_tracked; the checkpoints carry them; four iterations in one run
/// equal two, a resume from the first run's latest.pth and two more, bitwise in every state tensor
/// (the running statistics included) and every log value.
/// </summary>
public sealed class TrainerBatchStatisticsTests
{
    private const string ModelName = "ghm-demo-r18-fpn";

    private static INetwork Seeded(ModelInfo model)
    {
        INetwork network = model.Create();
        SeededWeights.Fill(network);
        return network;
    }

    private static TrainResult Run(ModelInfo model, INetwork network, string workDir, long? maxIterations, string? resumeFrom = null)
    {
        CocoDetectionDataset dataset = TrainerHarness.LoadDataset();
        using var backend = new CpuBackend(threads: TrainerHarness.Threads);
        using ITrainingWeights weights = model.PrepareTraining(network, backend);
        TrainerOptions options = TrainerHarness.Options(epochs: 2, maxIterations) with { Anchors = model.Head.Anchors };
        using var trainer = new Trainer(network, weights, dataset, options, workDir);
        if (resumeFrom is not null) trainer.Resume(resumeFrom);
        return trainer.Run(null, CancellationToken.None);
    }

    [Fact]
    public void Running_statistics_are_updated_saved_and_resumed_bitwise()
    {
        ModelInfo model = ModelRegistry.Get(ModelName);
        string all = TrainerHarness.NewWorkDirectory("bn-all"), first = TrainerHarness.NewWorkDirectory("bn-first");
        try
        {
            INetwork start = Seeded(model);
            INetwork four = Seeded(model);
            Assert.Equal(4, Run(model, four, all, maxIterations: null).Iterations);

            // Every batch norm tracked 4 batches and moved its running statistics.
            StateTensor[] counters = [.. four.State.Where(t => t.Role == StateRole.BatchNormBatchesTracked)];
            Assert.Equal(20, counters.Length);
            Assert.All(counters, t => Assert.Equal(4L, t.Int64Data[0]));
            var startByKey = start.State.ToDictionary(t => t.Key);
            foreach (StateTensor t in four.State.Where(t => t.Role is StateRole.BatchNormRunningMean or StateRole.BatchNormRunningVar))
                Assert.False(t.Data.AsSpan().SequenceEqual(startByKey[t.Key].Data), $"{t.Key} was not updated");

            INetwork two = Seeded(model);
            Assert.Equal(2, Run(model, two, first, maxIterations: 2).Iterations);
            Assert.All(two.State.Where(t => t.Role == StateRole.BatchNormBatchesTracked), t => Assert.Equal(2L, t.Int64Data[0]));

            // The checkpoint holds the updated buffers: a network loaded from it equals the trained one.
            INetwork loaded = Seeded(model);
            using (GhmGen.Checkpoints.TorchCheckpoint checkpoint = GhmGen.Checkpoints.TorchCheckpoint.Read(Path.Combine(all, "latest.pth")))
                GhmGen.Checkpoints.StateDictLoader.Load(loaded, checkpoint);
            List<string> saved = TrainerHarness.Differences(TrainerHarness.StateHashes(four), TrainerHarness.StateHashes(loaded));
            Assert.True(saved.Count == 0, $"{saved.Count} state tensors of latest.pth differ from the trained network: {string.Join(", ", saved.Take(10))}");

            INetwork resumed = Seeded(model);
            TrainResult result = Run(model, resumed, first, maxIterations: null, resumeFrom: Path.Combine(first, "latest.pth"));
            Assert.Equal(4, result.Iterations);
            List<string> state = TrainerHarness.Differences(TrainerHarness.StateHashes(four), TrainerHarness.StateHashes(resumed));
            Assert.True(state.Count == 0, $"{state.Count} state tensors differ from the uninterrupted run: {string.Join(", ", state.Take(10))}");
            Assert.Equal(TrainerHarness.ReadLog(all), TrainerHarness.ReadLog(first));
        }
        finally
        {
            foreach (string dir in new[] { all, first })
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
