// A deliberately plain re-implementation of pycocotools' COCOeval (bbox), written from
// docs/COCOEVAL.md and cocoeval.py without looking at the fast CocoEvaluator: dictionaries
// keyed by (image id, category id), LINQ stable sorts, one evaluateImg record per (image, category,
// area range) as in Python, then accumulate() over those records. Slow and obvious on purpose; the
// property tests compare the fast evaluator against it. Only the loaders' parsed values are shared.
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

internal sealed class NaiveCocoEval
{
    // Typed from the document's table, not computed (docs/COCOEVAL.md §2).
    private static readonly double[] IouThrs = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95];
    private static readonly double[] RecThrs = [.. Enumerable.Range(0, 100).Select(j => j * 0.01), 1.0];
    private static readonly int[] MaxDets = [1, 10, 100];
    private static readonly (double Lo, double Hi)[] AreaRngs = [(0, 1e10), (0, 32 * 32), (32 * 32, 96 * 96), (96 * 96, 1e10)];

    private sealed record Gt(long Id, CocoBox Box, double Area, bool Crowd);

    private sealed record Dt(long Id, CocoBox Box, double Area, double Score);

    private sealed record EvalImg(List<double> DtScores, bool[,] DtMatched, bool[,] DtIgnore, bool[] GtIgnore);

    public double[,,,,] Precision { get; }
    public double[,,,] Recall { get; }
    public double[] Stats { get; }
    public double[] PerCategoryAp { get; }

    public NaiveCocoEval(CocoGroundTruth groundTruth, IReadOnlyList<CocoDetection> detections)
    {
        List<long> imgIds = [.. groundTruth.ImageIds.Distinct().Order()];
        List<long> catIds = [.. groundTruth.Categories.Select(c => c.Id).Distinct().Order()];
        var gts = new Dictionary<(long, long), List<Gt>>();
        var dts = new Dictionary<(long, long), List<Dt>>();
        foreach (CocoAnnotation a in groundTruth.Annotations)
        {
            if (!imgIds.Contains(a.ImageId) || !catIds.Contains(a.CategoryId)) continue;
            if (!gts.TryGetValue((a.ImageId, a.CategoryId), out List<Gt>? list)) gts[(a.ImageId, a.CategoryId)] = list = [];
            list.Add(new Gt(a.Id, a.Box, a.Area, a.IsCrowd));
        }
        for (int i = 0; i < detections.Count; i++)
        {
            CocoDetection d = detections[i];
            if (!catIds.Contains(d.CategoryId)) continue;
            if (!dts.TryGetValue((d.ImageId, d.CategoryId), out List<Dt>? list)) dts[(d.ImageId, d.CategoryId)] = list = [];
            list.Add(new Dt(i + 1, d.Box, d.Box.Width * d.Box.Height, d.Score));
        }

        int T = IouThrs.Length, R = RecThrs.Length, K = catIds.Count, A = AreaRngs.Length, M = MaxDets.Length;
        // evalImgs[k][a][i]
        var evalImgs = new EvalImg?[K, A, imgIds.Count];
        for (int k = 0; k < K; k++)
            for (int a = 0; a < A; a++)
                for (int i = 0; i < imgIds.Count; i++)
                    evalImgs[k, a, i] = EvaluateImg(gts.GetValueOrDefault((imgIds[i], catIds[k])) ?? [],
                        dts.GetValueOrDefault((imgIds[i], catIds[k])) ?? [], AreaRngs[a], MaxDets[^1]);

        Precision = new double[T, R, K, A, M];
        Recall = new double[T, K, A, M];
        foreach (int t in Enumerable.Range(0, T))
        {
            for (int k = 0; k < K; k++)
                for (int a = 0; a < A; a++)
                    for (int m = 0; m < M; m++)
                    {
                        Recall[t, k, a, m] = -1;
                        for (int r = 0; r < R; r++) Precision[t, r, k, a, m] = -1;
                    }
        }
        for (int k = 0; k < K; k++)
        {
            for (int a = 0; a < A; a++)
            {
                for (int m = 0; m < M; m++)
                {
                    int maxDet = MaxDets[m];
                    var e = new List<EvalImg>();
                    for (int i = 0; i < imgIds.Count; i++) if (evalImgs[k, a, i] is EvalImg rec) e.Add(rec);
                    if (e.Count == 0) continue;
                    // Concatenate the first maxDet of each record, then a stable sort by descending score.
                    var entries = new List<(double Score, bool[] Matched, bool[] Ignored)>();
                    foreach (EvalImg rec in e)
                    {
                        for (int d = 0; d < Math.Min(maxDet, rec.DtScores.Count); d++)
                        {
                            var matched = new bool[T];
                            var ignored = new bool[T];
                            for (int t = 0; t < T; t++) { matched[t] = rec.DtMatched[t, d]; ignored[t] = rec.DtIgnore[t, d]; }
                            entries.Add((rec.DtScores[d], matched, ignored));
                        }
                    }
                    var sorted = entries.OrderByDescending(x => x.Score).ToList(); // LINQ OrderBy is stable
                    int npig = e.Sum(rec => rec.GtIgnore.Count(ig => !ig));
                    if (npig == 0) continue;
                    for (int t = 0; t < T; t++)
                    {
                        var tp = new List<double>();
                        var fp = new List<double>();
                        double tpSum = 0, fpSum = 0;
                        foreach (var x in sorted)
                        {
                            if (x.Matched[t] && !x.Ignored[t]) tpSum += 1;
                            if (!x.Matched[t] && !x.Ignored[t]) fpSum += 1;
                            tp.Add(tpSum);
                            fp.Add(fpSum);
                        }
                        int nd = tp.Count;
                        var rc = tp.Select(v => v / npig).ToList();
                        var pr = tp.Zip(fp, (tv, fv) => tv / (fv + tv + Math.Pow(2, -52))).ToList();
                        Recall[t, k, a, m] = nd > 0 ? rc[^1] : 0;
                        for (int i = nd - 1; i > 0; i--)
                            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
                        for (int r = 0; r < R; r++)
                        {
                            // searchsorted(rc, r, side='left'): the first index with rc >= r.
                            int pi = 0;
                            while (pi < nd && rc[pi] < RecThrs[r]) pi++;
                            Precision[t, r, k, a, m] = pi < nd ? pr[pi] : 0;
                        }
                    }
                }
            }
        }

        Stats =
        [
            Summarize(true, null, 0, 2), Summarize(true, 0, 0, 2), Summarize(true, 5, 0, 2),
            Summarize(true, null, 1, 2), Summarize(true, null, 2, 2), Summarize(true, null, 3, 2),
            Summarize(false, null, 0, 0), Summarize(false, null, 0, 1), Summarize(false, null, 0, 2),
            Summarize(false, null, 1, 2), Summarize(false, null, 2, 2), Summarize(false, null, 3, 2),
        ];
        PerCategoryAp = new double[K];
        for (int k = 0; k < K; k++)
        {
            var values = new List<double>();
            for (int t = 0; t < T; t++)
                for (int r = 0; r < R; r++)
                    if (Precision[t, r, k, 0, 2] > -1) values.Add(Precision[t, r, k, 0, 2]);
            PerCategoryAp[k] = values.Count == 0 ? double.NaN : values.Sum() / values.Count;
        }
    }

    private double Summarize(bool ap, int? iouIndex, int a, int m)
    {
        var values = new List<double>();
        int T = IouThrs.Length, R = RecThrs.Length, K = PerCategoryApLength;
        for (int t = 0; t < T; t++)
        {
            if (iouIndex is int only && t != only) continue;
            for (int k = 0; k < K; k++)
            {
                if (ap)
                {
                    for (int r = 0; r < R; r++)
                        if (Precision[t, r, k, a, m] > -1) values.Add(Precision[t, r, k, a, m]);
                }
                else if (Recall[t, k, a, m] > -1) values.Add(Recall[t, k, a, m]);
            }
        }
        return values.Count == 0 ? -1 : values.Sum() / values.Count;
    }

    private int PerCategoryApLength => Recall.GetLength(1);

    private static EvalImg? EvaluateImg(List<Gt> gt, List<Dt> dt, (double Lo, double Hi) aRng, int maxDet)
    {
        if (gt.Count == 0 && dt.Count == 0) return null;
        bool[] gIgnoreOriginal = [.. gt.Select(g => g.Crowd || g.Area < aRng.Lo || g.Area > aRng.Hi)];
        // Stable sort of the ground truths on the ignore flag; stable descending-score sort of the
        // detections, cut to maxDet.
        List<int> gtind = [.. Enumerable.Range(0, gt.Count).OrderBy(g => gIgnoreOriginal[g] ? 1 : 0)];
        List<Gt> gs = [.. gtind.Select(g => gt[g])];
        bool[] gtIg = [.. gtind.Select(g => gIgnoreOriginal[g])];
        List<Dt> ds = [.. dt.OrderByDescending(d => d.Score).Take(maxDet)];
        int T = IouThrs.Length, G = gs.Count, D = ds.Count;
        var gtm = new long[T, G];
        var dtm = new long[T, D];
        var dtIg = new bool[T, D];
        for (int t = 0; t < T; t++)
        {
            for (int d = 0; d < D; d++)
            {
                double iou = Math.Min(IouThrs[t], 1 - 1e-10);
                int m = -1;
                for (int g = 0; g < G; g++)
                {
                    if (gtm[t, g] > 0 && !gs[g].Crowd) continue;
                    if (m > -1 && !gtIg[m] && gtIg[g]) break;
                    double value = Iou(ds[d].Box, gs[g].Box, gs[g].Crowd);
                    if (value < iou) continue;
                    iou = value;
                    m = g;
                }
                if (m == -1) continue;
                dtIg[t, d] = gtIg[m];
                dtm[t, d] = gs[m].Id;
                gtm[t, m] = ds[d].Id;
            }
        }
        var matched = new bool[T, D];
        for (int t = 0; t < T; t++)
        {
            for (int d = 0; d < D; d++)
            {
                bool outside = ds[d].Area < aRng.Lo || ds[d].Area > aRng.Hi;
                dtIg[t, d] = dtIg[t, d] || (dtm[t, d] == 0 && outside);
                matched[t, d] = dtm[t, d] != 0;
            }
        }
        return new EvalImg([.. ds.Select(d => d.Score)], matched, dtIg, gtIg);
    }

    /// <summary>maskApi.c bbIou for one pair.</summary>
    private static double Iou(CocoBox d, CocoBox g, bool crowd)
    {
        double da = d.Width * d.Height, ga = g.Width * g.Height;
        double w = Math.Min(d.Width + d.X, g.Width + g.X) - Math.Max(d.X, g.X);
        if (w <= 0) return 0;
        double h = Math.Min(d.Height + d.Y, g.Height + g.Y) - Math.Max(d.Y, g.Y);
        if (h <= 0) return 0;
        double i = w * h;
        double u = crowd ? da : da + ga - i;
        return i / u;
    }
}
