// COCOeval for iouType 'bbox' with the default parameters (docs/COCOEVAL.md §2-5): evaluate() and
// accumulate() of pycocotools, fused per category. Categories are independent (every table entry
// belongs to one category), so they are spread over worker threads, largest first; the result does
// not depend on the thread count or the scheduling. Per category (CocoCategoryEvaluator):
//   1. its detections sorted by (image, descending score, file position) and cut to 100 per image;
//   2. per image: the greedy matching per area range and IoU threshold (one IoU row [G] per
//      detection), giving each kept detection a TP / FP / ignored state per (area range, threshold);
//   3. per area range and max-detections value: the detections of all images in (descending score,
//      image, rank) order, running TP / FP counts, the precision envelope and the recall-threshold
//      lookup into the precision [T, R, K, A, M] and recall [T, K, A, M] tables.
// Reference tests: tests/GhmGen.Runtime.Tests/Evaluation/ (the worked examples of docs/COCOEVAL.md §8,
// hand-computed cases, and NaiveCocoEval, a literal re-implementation, on random datasets).
namespace GhmGen.Evaluation;

/// <summary>COCO box evaluation exactly as pycocotools' COCOeval computes it (iouType 'bbox', default parameters).</summary>
public static class CocoEvaluator
{
    /// <summary>
    /// Evaluates the results against their ground truth: the precision and recall tables, the 12
    /// summary figures and the per-category AP.
    /// </summary>
    /// <param name="results">Detections checked against a ground truth (<see cref="CocoResults.Load"/>).</param>
    /// <param name="threads">Worker threads; 0 = <see cref="Environment.ProcessorCount"/>. The result is the same for any count.</param>
    /// <returns>The evaluation; it does not refer to <paramref name="results"/>' detections.</returns>
    public static CocoEvaluation Evaluate(CocoResults results, int threads = 0) => Evaluate(results, threads, null, CancellationToken.None);

    /// <summary>
    /// As <see cref="Evaluate(CocoResults, int)"/>, telling <paramref name="progress"/> after each
    /// category and stopping when <paramref name="cancellationToken"/> is cancelled. Thread-safe:
    /// it reads <paramref name="results"/> only, so several evaluations may run at once.
    /// </summary>
    /// <param name="results">Detections checked against a ground truth (<see cref="CocoResults.Load"/>).</param>
    /// <param name="threads">Worker threads; 0 = <see cref="Environment.ProcessorCount"/>. The result is the same for any count.</param>
    /// <param name="progress">
    /// Told once per category as it finishes, from the worker threads but one report at a time, with
    /// a count that only grows; the order of the categories depends on the scheduling.
    /// </param>
    /// <param name="cancellationToken">Checked before each category; the categories under way finish first.</param>
    /// <returns>The evaluation; it does not refer to <paramref name="results"/>' detections.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static CocoEvaluation Evaluate(CocoResults results, int threads, IProgress<CocoEvaluationProgress>? progress,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        CocoGroundTruth groundTruth = results.GroundTruth;
        int categories = groundTruth.Categories.Count;
        var precision = new double[CocoEvaluation.PrecisionLength(categories)];
        var recall = new double[CocoEvaluation.RecallLength(categories)];
        Array.Fill(precision, -1.0);
        Array.Fill(recall, -1.0);

        // Detections grouped by category with a counting sort (file order kept inside a category).
        int[] detectionCategory = results.DetectionCategory;
        var detectionStart = new int[categories + 1];
        foreach (int k in detectionCategory) detectionStart[k + 1]++;
        for (int k = 0; k < categories; k++) detectionStart[k + 1] += detectionStart[k];
        var detectionsByCategory = new int[detectionCategory.Length];
        int[] fill = detectionStart[..^1];
        for (int i = 0; i < detectionCategory.Length; i++) detectionsByCategory[fill[detectionCategory[i]]++] = i;

        // Largest categories first, so the last one to finish is a small one.
        var schedule = new int[categories];
        var work = new long[categories];
        for (int k = 0; k < categories; k++)
        {
            schedule[k] = k;
            work[k] = -((long)(detectionStart[k + 1] - detectionStart[k]) + groundTruth.CategoryStart[k + 1] - groundTruth.CategoryStart[k]);
        }
        Array.Sort(work, schedule);

        var inputs = new CocoCategoryEvaluator.Inputs(groundTruth, results, detectionStart, detectionsByCategory, precision, recall);
        int workers = Math.Clamp(threads == 0 ? Environment.ProcessorCount : threads, 1, Math.Max(1, categories));
        var counter = new ProgressCounter(progress, categories);
        if (workers == 1)
        {
            var evaluator = new CocoCategoryEvaluator(inputs);
            foreach (int k in schedule)
            {
                cancellationToken.ThrowIfCancellationRequested();
                evaluator.Run(k);
                counter.Done(k);
            }
        }
        else
        {
            int next = -1;
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ =>
            {
                var evaluator = new CocoCategoryEvaluator(inputs);
                int i;
                while ((i = Interlocked.Increment(ref next)) < categories && !cancellationToken.IsCancellationRequested)
                {
                    evaluator.Run(schedule[i]);
                    counter.Done(schedule[i]);
                }
            });
            cancellationToken.ThrowIfCancellationRequested();
        }
        return new CocoEvaluation(groundTruth, precision, recall);
    }

    // Serialises the workers' reports, so the count a reporter sees only grows.
    private sealed class ProgressCounter(IProgress<CocoEvaluationProgress>? progress, int total)
    {
        private readonly Lock _gate = new();
        private int _done;

        public void Done(int category)
        {
            if (progress is null) return;
            lock (_gate) progress.Report(new CocoEvaluationProgress(++_done, total, category));
        }
    }
}
