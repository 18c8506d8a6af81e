// One category's part of COCOeval (see CocoEvaluator.cs for the steps). One instance per worker
// thread; its scratch arrays grow to the largest category / image seen and are reused.
// Shapes: G = ground truths of one (image, category), D <= 100 kept detections of it, T = 10 IoU
// thresholds, A = 4 area ranges, M = 3 max-detections values, R = 101 recall thresholds.
// States are bit masks over the thresholds: bit t of tp / fp = true / false positive at threshold t;
// neither bit = ignored (the detection still takes a position in the precision / recall sequence).
namespace GhmGen.Evaluation;

/// <summary>Matching and accumulation of one category at a time, into the shared precision / recall tables.</summary>
internal sealed class CocoCategoryEvaluator
{
    private const int T = CocoEvalParameters.IouThresholdCount;
    private const int R = CocoEvalParameters.RecallThresholdCount;
    private const int A = CocoEvalParameters.AreaRangeCount;
    private const int M = CocoEvalParameters.MaxDetectionsCount;
    private const ushort AllThresholds = (1 << T) - 1;

    /// <summary>What every worker reads (and the tables they write, each entry by exactly one category).</summary>
    internal sealed record Inputs(CocoGroundTruth GroundTruth, CocoResults Results, int[] DetectionStart, int[] DetectionsByCategory,
        double[] Precision, double[] Recall);

    private readonly Inputs inputs;
    private readonly CocoAnnotation[] annotations;
    private readonly int[] annotationImage;
    private readonly CocoDetection[] detections;
    private readonly int[] detectionImage;
    private readonly int categoryCount;
    private readonly double[] matchThreshold = new double[T];
    private readonly double[] areaLow = new double[A];
    private readonly double[] areaHigh = new double[A];

    // Per category, indexed by kept position p (image order, then rank): detection, image, rank in its image.
    private DetectionKey[] sortKeys = [];
    private int[] keptDetection = [];
    private int[] keptImage = [];
    private byte[] keptRank = [];
    private ushort[] tpMask = []; // [kept, A]
    private ushort[] fpMask = []; // [kept, A]
    private ScoreKey[] order = [];
    private ushort[] tpSequence = [];
    private ushort[] fpSequence = [];
    private double[] recallAt = [];
    private double[] precisionAt = [];
    private readonly int[] notIgnored = new int[A];

    // The category's own slices [T, R, A, M] and [T, A, M], copied into the shared tables once at the
    // end: the shared tables interleave categories every A * M entries, so writing them entry by entry
    // from several threads would keep bouncing cache lines between cores.
    private readonly double[] categoryPrecision = new double[T * R * A * M];
    private readonly double[] categoryRecall = new double[T * A * M];

    // Per image: ground-truth attributes [G], ignore flags [A, G], order by ignore flag [A, G], matched
    // flags [A, T, G], one detection's IoU row [G], matches [A, T, D].
    private CocoBox[] gtBox = [];
    private double[] gtArea = [];
    private bool[] gtCrowd = [];
    private bool[] gtIdZero = [];
    private bool[] gtIgnore = [];
    private bool[] gtUsed = [];
    private int[] gtOrder = [];
    private double[] iouRow = [];
    private readonly int[] matches = new int[A * T * CocoEvalParameters.MaxDetectionsPerImage];
    private readonly bool[] outside = new bool[CocoEvalParameters.MaxDetectionsPerImage * A];

    public CocoCategoryEvaluator(Inputs inputs)
    {
        this.inputs = inputs;
        annotations = inputs.GroundTruth.AnnotationArray;
        annotationImage = inputs.GroundTruth.AnnotationImage;
        detections = inputs.Results.DetectionArray;
        detectionImage = inputs.Results.DetectionImage;
        categoryCount = inputs.GroundTruth.Categories.Count;
        for (int t = 0; t < T; t++) matchThreshold[t] = Math.Min(CocoEvalParameters.IouThresholds[t], CocoEvalParameters.IouCap);
        for (int a = 0; a < A; a++)
        {
            areaLow[a] = CocoEvalParameters.AreaLower((CocoAreaRange)a);
            areaHigh[a] = CocoEvalParameters.AreaUpper((CocoAreaRange)a);
        }
    }

    /// <summary>Evaluates category k and writes its entries of the tables.</summary>
    public void Run(int k)
    {
        CocoGroundTruth groundTruth = inputs.GroundTruth;
        int gtStart = groundTruth.CategoryStart[k];
        ReadOnlySpan<int> gts = groundTruth.ByCategory.AsSpan(gtStart, groundTruth.CategoryStart[k + 1] - gtStart);
        // No ground truth: every range has n = 0, so all of the category's entries stay -1 and its
        // detections change nothing (docs/COCOEVAL.md §7).
        if (gts.IsEmpty) return;

        int kept = KeepTopDetections(k);
        Array.Clear(notIgnored);
        int g = 0, p = 0;
        while (g < gts.Length || p < kept)
        {
            int image = Math.Min(g < gts.Length ? annotationImage[gts[g]] : int.MaxValue, p < kept ? keptImage[p] : int.MaxValue);
            int g1 = g;
            while (g1 < gts.Length && annotationImage[gts[g1]] == image) g1++;
            int p1 = p;
            while (p1 < kept && keptImage[p1] == image) p1++;
            EvaluateImage(gts[g..g1], p, p1);
            g = g1;
            p = p1;
        }
        Accumulate(k, kept);
    }

    /// <summary>
    /// Sorts category k's detections by (image, descending score, file position) — per image the
    /// stable descending-score order — and keeps the first 100 of each image. Returns how many were kept.
    /// </summary>
    private int KeepTopDetections(int k)
    {
        int start = inputs.DetectionStart[k], count = inputs.DetectionStart[k + 1] - start;
        Grow(ref sortKeys, count);
        for (int j = 0; j < count; j++)
        {
            int index = inputs.DetectionsByCategory[start + j];
            sortKeys[j] = new DetectionKey(detectionImage[index], detections[index].Score, index);
        }
        sortKeys.AsSpan(0, count).Sort(default(ImageScoreOrder));

        Grow(ref keptDetection, count);
        Grow(ref keptImage, count);
        Grow(ref keptRank, count);
        int kept = 0;
        for (int j = 0; j < count;)
        {
            int image = sortKeys[j].Image;
            for (int rank = 0; j < count && sortKeys[j].Image == image; rank++, j++)
            {
                if (rank >= CocoEvalParameters.MaxDetectionsPerImage) continue;
                keptDetection[kept] = sortKeys[j].Index;
                keptImage[kept] = image;
                keptRank[kept] = (byte)rank;
                kept++;
            }
        }
        Grow(ref tpMask, kept * A);
        Grow(ref fpMask, kept * A);
        return kept;
    }

    /// <summary>
    /// One (image, category): counts its not-ignored ground truths per area range and sets the states
    /// of its kept detections [p0, p1) (docs/COCOEVAL.md §4).
    /// </summary>
    private void EvaluateImage(ReadOnlySpan<int> imageGts, int p0, int p1)
    {
        int gCount = imageGts.Length, dCount = p1 - p0;
        Grow(ref gtBox, gCount);
        Grow(ref gtArea, gCount);
        Grow(ref gtCrowd, gCount);
        Grow(ref gtIdZero, gCount);
        Grow(ref gtIgnore, A * gCount);
        for (int g = 0; g < gCount; g++)
        {
            ref readonly CocoAnnotation annotation = ref annotations[imageGts[g]];
            gtBox[g] = annotation.Box;
            gtArea[g] = annotation.Area;
            gtCrowd[g] = annotation.IsCrowd;
            gtIdZero[g] = annotation.Id == 0;
        }
        for (int a = 0; a < A; a++)
        {
            for (int g = 0; g < gCount; g++)
            {
                bool ignored = gtCrowd[g] || gtArea[g] < areaLow[a] || gtArea[g] > areaHigh[a];
                gtIgnore[a * gCount + g] = ignored;
                if (!ignored) notIgnored[a]++;
            }
        }
        if (dCount == 0) return;

        for (int d = 0; d < dCount; d++)
        {
            double area = detections[keptDetection[p0 + d]].Box.Area;
            for (int a = 0; a < A; a++) outside[d * A + a] = area < areaLow[a] || area > areaHigh[a];
        }
        if (gCount == 0)
        {
            // Nothing to match: a false positive unless its own area is outside the range.
            for (int d = 0; d < dCount; d++)
            {
                for (int a = 0; a < A; a++)
                {
                    tpMask[(p0 + d) * A + a] = 0;
                    fpMask[(p0 + d) * A + a] = outside[d * A + a] ? (ushort)0 : AllThresholds;
                }
            }
            return;
        }

        // Ranges with the same ignore flags match identically (only the detections' own areas differ):
        // match once per distinct set of flags.
        Span<int> sameAs = stackalloc int[A];
        for (int a = 0; a < A; a++)
        {
            sameAs[a] = a;
            for (int b = 0; b < a && sameAs[a] == a; b++)
            {
                if (gtIgnore.AsSpan(a * gCount, gCount).SequenceEqual(gtIgnore.AsSpan(b * gCount, gCount))) sameAs[a] = b;
            }
        }
        Match(sameAs, p0, dCount, gCount);

        for (int a = 0; a < A; a++)
        {
            ReadOnlySpan<int> rangeMatches = matches.AsSpan(sameAs[a] * T * dCount, T * dCount);
            ReadOnlySpan<bool> ignore = gtIgnore.AsSpan(a * gCount, gCount);
            for (int d = 0; d < dCount; d++)
            {
                int tp = 0, fp = 0;
                bool own = outside[d * A + a];
                for (int t = 0; t < T; t++)
                {
                    int m = rangeMatches[t * dCount + d];
                    // pycocotools: dtIg = gtIg[m] and dtm = gt id when matched; then an unmatched
                    // (dtm == 0, which includes a match to annotation id 0) detection outside the range is ignored.
                    bool matched = m >= 0 && !gtIdZero[m];
                    bool ignored = (m >= 0 && ignore[m]) || (!matched && own);
                    if (!ignored)
                    {
                        if (matched) tp |= 1 << t;
                        else fp |= 1 << t;
                    }
                }
                tpMask[(p0 + d) * A + a] = (ushort)tp;
                fpMask[(p0 + d) * A + a] = (ushort)fp;
            }
        }
    }

    /// <summary>
    /// Greedy matching (docs/COCOEVAL.md §4) of the kept detections [p0, p0 + D) for every distinct area
    /// range a (sameAs[a] == a) and threshold t: matches[(a * T + t) * D + d] = the ground truth
    /// detection d is matched to, or -1. Thresholds and ranges do not share state, so detections can be
    /// the outer loop: each one's IoU row [G] is computed once (docs/COCOEVAL.md §3, maskApi.c bbIou) and used
    /// for every (range, threshold); no [D, G] matrix is kept. The inner loop is pycocotools' own, so
    /// ties and NaN IoUs go the same way.
    /// </summary>
    private void Match(ReadOnlySpan<int> sameAs, int p0, int dCount, int gCount)
    {
        Grow(ref iouRow, gCount);
        Grow(ref gtOrder, A * gCount);
        Grow(ref gtUsed, A * T * gCount);
        for (int a = 0; a < A; a++)
        {
            if (sameAs[a] != a) continue;
            // Regular ground truths first, then the ignored ones, each in file order (a stable sort on the flag).
            ReadOnlySpan<bool> ignore = gtIgnore.AsSpan(a * gCount, gCount);
            Span<int> byIgnore = gtOrder.AsSpan(a * gCount, gCount);
            int q = 0;
            for (int g = 0; g < gCount; g++) if (!ignore[g]) byIgnore[q++] = g;
            for (int g = 0; g < gCount; g++) if (ignore[g]) byIgnore[q++] = g;
            gtUsed.AsSpan(a * T * gCount, T * gCount).Clear();
        }

        Span<double> row = iouRow.AsSpan(0, gCount);
        for (int d = 0; d < dCount; d++)
        {
            CocoBox dt = detections[keptDetection[p0 + d]].Box;
            double da = dt.Width * dt.Height;
            for (int g = 0; g < gCount; g++)
            {
                CocoBox gt = gtBox[g];
                double value = 0;
                double iw = Math.Min(dt.Width + dt.X, gt.Width + gt.X) - Math.Max(dt.X, gt.X);
                if (iw > 0)
                {
                    double ih = Math.Min(dt.Height + dt.Y, gt.Height + gt.Y) - Math.Max(dt.Y, gt.Y);
                    if (ih > 0)
                    {
                        double ga = gt.Width * gt.Height;
                        double intersection = iw * ih;
                        double union = gtCrowd[g] ? da : (da + ga) - intersection;
                        value = intersection / union;
                    }
                }
                row[g] = value;
            }

            for (int a = 0; a < A; a++)
            {
                if (sameAs[a] != a) continue;
                ReadOnlySpan<bool> ignore = gtIgnore.AsSpan(a * gCount, gCount);
                ReadOnlySpan<int> byIgnore = gtOrder.AsSpan(a * gCount, gCount);
                for (int t = 0; t < T; t++)
                {
                    Span<bool> used = gtUsed.AsSpan((a * T + t) * gCount, gCount);
                    double best = matchThreshold[t];
                    int m = -1;
                    foreach (int g in byIgnore)
                    {
                        if (used[g] && !gtCrowd[g]) continue;
                        if (m > -1 && !ignore[m] && ignore[g]) break;
                        if (row[g] < best) continue;
                        best = row[g];
                        m = g;
                    }
                    matches[(a * T + t) * dCount + d] = m;
                    if (m >= 0) used[m] = true;
                }
            }
        }
    }

    /// <summary>Precision and recall of category k for every area range, max-detections value and threshold (docs/COCOEVAL.md §5).</summary>
    private void Accumulate(int k, int kept)
    {
        Grow(ref order, kept);
        for (int p = 0; p < kept; p++) order[p] = new ScoreKey(detections[keptDetection[p]].Score, p);
        // Positions run in ascending image, then rank order, so (descending score, position) is
        // pycocotools' stable sort of the concatenated per-image lists.
        order.AsSpan(0, kept).Sort(default(DescendingScoreOrder));
        Grow(ref tpSequence, kept);
        Grow(ref fpSequence, kept);
        Grow(ref recallAt, kept);
        Grow(ref precisionAt, kept);
        ReadOnlySpan<double> recallThresholds = CocoEvalParameters.RecallThresholds;
        ReadOnlySpan<int> maxDetections = CocoEvalParameters.MaxDetections;
        Array.Fill(categoryPrecision, -1.0);
        Array.Fill(categoryRecall, -1.0);
        for (int a = 0; a < A; a++)
        {
            int n = notIgnored[a];
            if (n == 0) continue; // no ground truth in this range: the entries stay -1
            for (int mi = 0; mi < M; mi++)
            {
                int maxDet = maxDetections[mi];
                int count = 0;
                for (int i = 0; i < kept; i++)
                {
                    int p = order[i].Position;
                    if (keptRank[p] >= maxDet) continue;
                    tpSequence[count] = tpMask[p * A + a];
                    fpSequence[count] = fpMask[p * A + a];
                    count++;
                }
                for (int t = 0; t < T; t++)
                {
                    int bit = 1 << t;
                    int tp = 0, fp = 0;
                    for (int i = 0; i < count; i++)
                    {
                        if ((tpSequence[i] & bit) != 0) tp++;
                        if ((fpSequence[i] & bit) != 0) fp++;
                        double tps = tp;
                        recallAt[i] = tps / n;
                        precisionAt[i] = tps / ((fp + tps) + CocoEvalParameters.Epsilon);
                    }
                    categoryRecall[(t * A + a) * M + mi] = count > 0 ? recallAt[count - 1] : 0;
                    for (int i = count - 1; i > 0; i--)
                    {
                        if (precisionAt[i] > precisionAt[i - 1]) precisionAt[i - 1] = precisionAt[i];
                    }
                    // First position whose recall reaches the threshold (np.searchsorted side='left');
                    // none: 0.
                    int at = 0;
                    for (int r = 0; r < R; r++)
                    {
                        while (at < count && recallAt[at] < recallThresholds[r]) at++;
                        categoryPrecision[((t * R + r) * A + a) * M + mi] = at < count ? precisionAt[at] : 0;
                    }
                }
            }
        }
        // Within a (t, r) the shared table holds [K, A, M]: this category's A * M entries are contiguous.
        for (int t = 0; t < T; t++)
        {
            for (int r = 0; r < R; r++)
                categoryPrecision.AsSpan((t * R + r) * A * M, A * M).CopyTo(inputs.Precision.AsSpan(CocoEvaluation.PrecisionIndex(categoryCount, t, r, k, 0, 0), A * M));
            categoryRecall.AsSpan(t * A * M, A * M).CopyTo(inputs.Recall.AsSpan(CocoEvaluation.RecallIndex(categoryCount, t, k, 0, 0), A * M));
        }
    }

    private static void Grow<TValue>(ref TValue[] array, int length)
    {
        if (array.Length < length) array = new TValue[Math.Max(length, 2 * array.Length)];
    }

    private readonly record struct DetectionKey(int Image, double Score, int Index);

    private readonly record struct ScoreKey(double Score, int Position);

    /// <summary>Ascending image, descending score, ascending file position: a total order.</summary>
    private readonly struct ImageScoreOrder : IComparer<DetectionKey>
    {
        public int Compare(DetectionKey x, DetectionKey y)
        {
            if (x.Image != y.Image) return x.Image < y.Image ? -1 : 1;
            if (x.Score > y.Score) return -1;
            if (x.Score < y.Score) return 1;
            return x.Index.CompareTo(y.Index);
        }
    }

    /// <summary>Descending score, ascending position: a total order (equal scores, including 0 and -0, keep their order).</summary>
    private readonly struct DescendingScoreOrder : IComparer<ScoreKey>
    {
        public int Compare(ScoreKey x, ScoreKey y)
        {
            if (x.Score > y.Score) return -1;
            if (x.Score < y.Score) return 1;
            return x.Position.CompareTo(y.Position);
        }
    }
}
