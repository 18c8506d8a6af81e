using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

/// <summary>The progress and cancellation overload of <see cref="CocoEvaluator.Evaluate(CocoResults, int, IProgress{CocoEvaluationProgress}?, CancellationToken)"/>.</summary>
public sealed class CocoEvaluatorProgressTests
{
    private sealed class Recorder(Action<CocoEvaluationProgress>? also = null) : IProgress<CocoEvaluationProgress>
    {
        public List<CocoEvaluationProgress> Reports { get; } = [];

        public void Report(CocoEvaluationProgress value)
        {
            lock (Reports) Reports.Add(value);
            also?.Invoke(value);
        }
    }

    private static CocoResults RandomCase(int categories)
    {
        var random = new Random(11);
        var c = new CocoCase();
        c.Images.Clear();
        c.Categories.Clear();
        for (int i = 1; i <= 20; i++) c.Images.Add(i);
        for (int k = 1; k <= categories; k++) c.Categories.Add((k, $"c{k}"));
        for (int n = 0; n < 200; n++)
            c.Gt(random.Next(20) * 10, random.Next(20) * 10, 20 + random.Next(10) * 10, 20 + random.Next(10) * 10, image: 1 + random.Next(20), category: 1 + random.Next(categories));
        for (int n = 0; n < 800; n++)
            c.Dt(random.Next(20) * 10, random.Next(20) * 10, 20 + random.Next(10) * 10, 20 + random.Next(10) * 10, random.Next(10) / 10.0, image: 1 + random.Next(20), category: 1 + random.Next(categories));
        return c.LoadResults(c.LoadGroundTruth());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Reports_EachCategoryOnce_WithAGrowingCount_AndTheSameResult(int threads)
    {
        CocoResults results = RandomCase(9);
        var progress = new Recorder();
        CocoEvaluation reported = CocoEvaluator.Evaluate(results, threads, progress);
        CocoEvaluation plain = CocoEvaluator.Evaluate(results, threads);
        Assert.Equal(plain.Summary.Stats, reported.Summary.Stats);
        Assert.Equal(Enumerable.Range(1, 9), progress.Reports.Select(r => r.CategoriesDone));
        Assert.All(progress.Reports, r => Assert.Equal(9, r.Categories));
        Assert.Equal(Enumerable.Range(0, 9), progress.Reports.Select(r => r.Category).Order());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Cancelled_Throws_AndStopsStartingCategories(int threads)
    {
        CocoResults results = RandomCase(40);
        using var cancel = new CancellationTokenSource();
        var progress = new Recorder(r => { if (r.CategoriesDone == 2) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => CocoEvaluator.Evaluate(results, threads, progress, cancel.Token));
        // Two done when it was cancelled, plus at most the categories the other workers had under way.
        Assert.InRange(progress.Reports.Count, 2, 2 + threads - 1);
    }
}
