// The outcome of CocoEvaluator: pycocotools' eval['precision'] [T, R, K, A, M] and eval['recall']
// [T, K, A, M] tables (-1 = no ground truth in that slice), the 12 summary figures (docs/COCOEVAL.md §6,
// means over entries > -1 in numpy's summation order) and mmdetection's per-category AP.
namespace GhmGen.Evaluation;

/// <summary>
/// Precision / recall tables, summary and per-category AP of one COCO box evaluation. Immutable:
/// safe to read from any number of threads.
/// </summary>
public sealed class CocoEvaluation
{
    private const int T = CocoEvalParameters.IouThresholdCount;
    private const int R = CocoEvalParameters.RecallThresholdCount;
    private const int A = CocoEvalParameters.AreaRangeCount;
    private const int M = CocoEvalParameters.MaxDetectionsCount;

    private readonly double[] precision;
    private readonly double[] recall;
    private readonly int categoryCount;
    private readonly CocoCategoryAp[] perCategory;

    internal CocoEvaluation(CocoGroundTruth groundTruth, double[] precision, double[] recall)
    {
        GroundTruth = groundTruth;
        this.precision = precision;
        this.recall = recall;
        categoryCount = groundTruth.Categories.Count;

        const int all = (int)CocoAreaRange.All, small = (int)CocoAreaRange.Small, medium = (int)CocoAreaRange.Medium, large = (int)CocoAreaRange.Large;
        const int max1 = 0, max10 = 1, max100 = 2;
        int iou50 = CocoEvalParameters.IouThresholds.IndexOf(0.5), iou75 = CocoEvalParameters.IouThresholds.IndexOf(0.75);
        Summary = new CocoSummary(
        [
            MeanPrecision(0, T, all, max100),
            MeanPrecision(iou50, 1, all, max100),
            MeanPrecision(iou75, 1, all, max100),
            MeanPrecision(0, T, small, max100),
            MeanPrecision(0, T, medium, max100),
            MeanPrecision(0, T, large, max100),
            MeanRecall(all, max1),
            MeanRecall(all, max10),
            MeanRecall(all, max100),
            MeanRecall(small, max100),
            MeanRecall(medium, max100),
            MeanRecall(large, max100),
        ]);

        perCategory = new CocoCategoryAp[categoryCount];
        var values = new double[T * R];
        for (int k = 0; k < categoryCount; k++)
        {
            // mmdetection: precisions[:, :, k, 0, -1], entries > -1, np.mean; NaN when there are none.
            int count = 0;
            for (int t = 0; t < T; t++)
            {
                for (int r = 0; r < R; r++)
                {
                    double v = precision[PrecisionIndex(categoryCount, t, r, k, all, max100)];
                    if (v > -1) values[count++] = v;
                }
            }
            perCategory[k] = new CocoCategoryAp(groundTruth.Categories[k], count == 0 ? double.NaN : NumpySum.Mean(values.AsSpan(0, count)));
        }
    }

    /// <summary>The ground truth that was evaluated against.</summary>
    public CocoGroundTruth GroundTruth { get; }

    /// <summary>The 12 summary figures (pycocotools' <c>stats</c>).</summary>
    public CocoSummary Summary { get; }

    /// <summary>AP (IoU 0.50:0.95, area all, 100 detections) of each category, in category order; NaN without ground truth.</summary>
    public IReadOnlyList<CocoCategoryAp> PerCategory => perCategory;

    /// <summary>
    /// pycocotools' <c>eval['precision'][t, r, k, a, m]</c>: the interpolated precision at recall
    /// threshold r; -1 where category k has no ground truth in the area range.
    /// </summary>
    /// <param name="iouIndex">Index into <see cref="CocoEvalParameters.IouThresholds"/>.</param>
    /// <param name="recallIndex">Index into <see cref="CocoEvalParameters.RecallThresholds"/>.</param>
    /// <param name="categoryIndex">Index into <see cref="CocoGroundTruth.Categories"/>.</param>
    /// <param name="area">The area range.</param>
    /// <param name="maxDetectionsIndex">Index into <see cref="CocoEvalParameters.MaxDetections"/> (2 = 100).</param>
    public double Precision(int iouIndex, int recallIndex, int categoryIndex, CocoAreaRange area, int maxDetectionsIndex)
    {
        CheckIndices(iouIndex, categoryIndex, area, maxDetectionsIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)recallIndex, (uint)R, nameof(recallIndex));
        return precision[PrecisionIndex(categoryCount, iouIndex, recallIndex, categoryIndex, (int)area, maxDetectionsIndex)];
    }

    /// <summary>pycocotools' <c>eval['recall'][t, k, a, m]</c>: the final recall; -1 without ground truth.</summary>
    /// <param name="iouIndex">Index into <see cref="CocoEvalParameters.IouThresholds"/>.</param>
    /// <param name="categoryIndex">Index into <see cref="CocoGroundTruth.Categories"/>.</param>
    /// <param name="area">The area range.</param>
    /// <param name="maxDetectionsIndex">Index into <see cref="CocoEvalParameters.MaxDetections"/> (2 = 100).</param>
    public double Recall(int iouIndex, int categoryIndex, CocoAreaRange area, int maxDetectionsIndex)
    {
        CheckIndices(iouIndex, categoryIndex, area, maxDetectionsIndex);
        return recall[RecallIndex(categoryCount, iouIndex, categoryIndex, (int)area, maxDetectionsIndex)];
    }

    internal static int PrecisionLength(int categories) => T * R * categories * A * M;

    internal static int RecallLength(int categories) => T * categories * A * M;

    /// <summary>Flat index of [t, r, k, a, m] in pycocotools' C order.</summary>
    internal static int PrecisionIndex(int categories, int t, int r, int k, int a, int m) => (((t * R + r) * categories + k) * A + a) * M + m;

    /// <summary>Flat index of [t, k, a, m] in pycocotools' C order.</summary>
    internal static int RecallIndex(int categories, int t, int k, int a, int m) => ((t * categories + k) * A + a) * M + m;

    private void CheckIndices(int iouIndex, int categoryIndex, CocoAreaRange area, int maxDetectionsIndex)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)iouIndex, (uint)T, nameof(iouIndex));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)categoryIndex, (uint)categoryCount, nameof(categoryIndex));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)area, (uint)A, nameof(area));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)maxDetectionsIndex, (uint)M, nameof(maxDetectionsIndex));
    }

    /// <summary>
    /// pycocotools' _summarize for precision: the entries > -1 of precision[tFirst .. tFirst + tCount, :, :, a, m]
    /// taken in C order (threshold, recall threshold, category), np.mean; -1 when there are none.
    /// </summary>
    private double MeanPrecision(int tFirst, int tCount, int a, int m)
    {
        var values = new double[tCount * R * categoryCount];
        int count = 0;
        for (int t = tFirst; t < tFirst + tCount; t++)
        {
            for (int r = 0; r < R; r++)
            {
                for (int k = 0; k < categoryCount; k++)
                {
                    double v = precision[PrecisionIndex(categoryCount, t, r, k, a, m)];
                    if (v > -1) values[count++] = v;
                }
            }
        }
        return count == 0 ? -1 : NumpySum.Mean(values.AsSpan(0, count));
    }

    /// <summary>pycocotools' _summarize for recall: entries > -1 of recall[:, :, a, m] in C order, np.mean; -1 when none.</summary>
    private double MeanRecall(int a, int m)
    {
        var values = new double[T * categoryCount];
        int count = 0;
        for (int t = 0; t < T; t++)
        {
            for (int k = 0; k < categoryCount; k++)
            {
                double v = recall[RecallIndex(categoryCount, t, k, a, m)];
                if (v > -1) values[count++] = v;
            }
        }
        return count == 0 ? -1 : NumpySum.Mean(values.AsSpan(0, count));
    }
}

/// <summary>The AP of one category (IoU 0.50:0.95, area all, 100 detections); NaN when it has no ground truth.</summary>
/// <param name="Category">The category.</param>
/// <param name="AP">Its AP, or NaN.</param>
public readonly record struct CocoCategoryAp(CocoCategory Category, double AP);
