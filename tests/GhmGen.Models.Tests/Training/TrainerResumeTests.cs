using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// Exact resume of <see cref="Trainer"/> on the fixture dataset (R-50, seeded weights, 2
/// iterations per epoch, CPU backend with the same thread count throughout): four iterations in
/// one run equal two, a resume from the first run's latest.pth and two more, bitwise (every state
/// tensor including the GHM acc_sum, every momentum buffer, and the log.json values); and a run
/// cancelled after its first iteration writes a resumable latest.pth whose resume ends in the same
/// state, bitwise.
/// </summary>
[Collection(TrainerRunsCollection.Name)]
public sealed class TrainerResumeTests(TrainerRuns runs)
{
    [Fact]
    public void Four_iterations_equal_two_plus_resume_plus_two_bitwise()
    {
        RunOutcome all = runs.AllFour;
        Assert.Equal(4, all.Result.Iterations);
        Assert.Equal([(1, 1), (1, 2), (2, 1), (2, 2)], all.Log.Select(l => (l.Epoch, l.Iteration)));

        (RunOutcome first, _) = runs.FirstTwo;
        string dir = runs.NewDir("resumed");
        TrainerHarness.CopyDirectory(first.WorkDir, dir);
        using (TrainingCheckpoint c = TrainingCheckpoint.Read(Path.Combine(dir, "latest.pth"),
            [.. TrainerHarness.SeededNetwork().State.Where(t => t.Kind == StateKind.Parameter).Select(t => t.Key)], TrainerHarness.Model.TrainedKeys))
        {
            Assert.Equal(new TrainingProgress(1, 2, 0, 0), c.Progress); // after epoch 1: epoch 1 done, 2 iterations
        }

        INetwork network = TrainerHarness.SeededNetwork(); // Resume replaces every tensor
        TrainResult result = TrainerHarness.Run(network, dir, TrainerHarness.Options(epochs: 2, maxIterations: null),
            resumeFrom: Path.Combine(dir, "latest.pth"));
        Assert.False(result.Cancelled);
        Assert.Equal(4, result.Iterations);
        RunOutcome resumed = RunOutcome.Of(dir, result, network);

        AssertSameEnd(all, resumed);
    }

    [Fact]
    public void Cancelling_mid_run_writes_latest_and_resuming_it_ends_bitwise_equal()
    {
        RunOutcome all = runs.AllFour;
        string dir = runs.NewDir("cancelled");
        using var cancel = new CancellationTokenSource();
        INetwork network = TrainerHarness.SeededNetwork();
        var stopAfterFirst = new SynchronousProgress(r =>
        {
            if (r.Iteration == 1) cancel.Cancel();
        });
        TrainResult stopped = TrainerHarness.Run(network, dir, TrainerHarness.Options(epochs: 2, maxIterations: null),
            progress: stopAfterFirst, cancellationToken: cancel.Token);
        Assert.True(stopped.Cancelled);
        Assert.Equal(1, stopped.Iterations);
        string latest = Path.Combine(dir, "latest.pth");
        Assert.Equal(latest, stopped.LastCheckpoint);
        Assert.False(File.Exists(Path.Combine(dir, "epoch_1.pth")));
        using (TrainingCheckpoint c = TrainingCheckpoint.Read(latest,
            [.. network.State.Where(t => t.Kind == StateKind.Parameter).Select(t => t.Key)], TrainerHarness.Model.TrainedKeys))
        {
            Assert.Equal(new TrainingProgress(0, 1, 1, 0), c.Progress); // mid-epoch: batch 1 of epoch 0 next
        }
        Assert.Equal(all.Log.Take(1), TrainerHarness.ReadLog(dir));

        INetwork resumedNetwork = TrainerHarness.SeededNetwork();
        TrainResult result = TrainerHarness.Run(resumedNetwork, dir, TrainerHarness.Options(epochs: 2, maxIterations: null), resumeFrom: latest);
        Assert.False(result.Cancelled);
        Assert.Equal(4, result.Iterations);
        AssertSameEnd(all, RunOutcome.Of(dir, result, resumedNetwork));
    }

    private static void AssertSameEnd(RunOutcome expected, RunOutcome actual)
    {
        List<string> state = TrainerHarness.Differences(expected.State, actual.State);
        Assert.True(state.Count == 0, $"{state.Count} state tensors differ from the uninterrupted run: {string.Join(", ", state.Take(10))}");
        Assert.Contains("bbox_head.loss_cls.acc_sum", expected.State.Keys);
        Assert.Contains("bbox_head.loss_bbox.acc_sum", expected.State.Keys);
        List<string> momentum = TrainerHarness.Differences(expected.Momentum, actual.Momentum);
        Assert.True(momentum.Count == 0, $"{momentum.Count} momentum buffers differ from the uninterrupted run: {string.Join(", ", momentum.Take(10))}");
        Assert.Equal(TrainerHarness.Model.TrainedKeys.Count, actual.Momentum.Count);
        Assert.Equal(expected.Log, actual.Log); // epoch, iter, lr, loss_cls, loss_bbox, loss, grad_norm: exact
    }

    /// <summary>Calls back on the training thread (System.Progress would post to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<TrainIterationReport> report) : IProgress<TrainIterationReport>
    {
        public void Report(TrainIterationReport value) => report(value);
    }
}
