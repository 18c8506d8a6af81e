// Hand-computed COCO box evaluation cases (one image and one category unless stated; ground-truth
// area = w * h unless stated). pycocotools cannot be installed on this machine, so no fixture here
// comes from running it: every expected value is derived by hand in the comments, following
// docs/COCOEVAL.md and pycocotools' cocoeval.py. P1 below is 1 / (1 + 2^-52) =
// 0.9999999999999998, the precision of one true positive out of one; 2 / (2 + 2^-52) = 1 exactly
// (2 + 2^-52 rounds to 2).
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

public sealed class CocoEvaluatorTests
{
    private const double P1 = 0.9999999999999998;

    [Fact]
    public void Parameters_are_numpy_linspace_values()
    {
        Assert.Equal([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95], CocoEvalParameters.IouThresholds.ToArray());
        Assert.Equal(BitConverter.Int64BitsToDouble(0x3FECCCCCCCCCCCCC), CocoEvalParameters.IouThresholds[8]);
        ReadOnlySpan<double> r = CocoEvalParameters.RecallThresholds;
        Assert.Equal(101, r.Length);
        for (int j = 0; j < 100; j++) Assert.Equal(j * 0.01, r[j]);
        Assert.Equal(1.0, r[100]);
        // The ten that are one ulp above j / 100 (docs/COCOEVAL.md §2).
        int[] above = [35, 41, 47, 57, 69, 70, 82, 83, 94, 95];
        for (int j = 0; j <= 100; j++)
            Assert.Equal(above.Contains(j), r[j] > j / 100.0);
        Assert.Equal(0.35000000000000003, r[35]);
        Assert.Equal(CocoEvalParameters.Epsilon, Math.Pow(2, -52));
        Assert.Equal([1, 10, 100], CocoEvalParameters.MaxDetections.ToArray());
        double[] lower = [0, 0, 1024, 9216], upper = [1e10, 1024, 9216, 1e10];
        for (int a = 0; a < 4; a++)
        {
            Assert.Equal(lower[a], CocoEvalParameters.AreaLower((CocoAreaRange)a));
            Assert.Equal(upper[a], CocoEvalParameters.AreaUpper((CocoAreaRange)a));
        }
    }

    [Fact]
    public void One_perfect_detection_gives_AP_1_up_to_the_epsilon()
    {
        // Every precision entry is P1 (one TP, FP = 0); the mean of 1010 P1 is P1 (docs/COCOEVAL.md §6).
        CocoEvaluation e = new CocoCase().Gt(10, 10, 100, 100).Dt(10, 10, 100, 100, 0.9).Evaluate();
        Assert.Equal(1.0, e.Summary.AP, 1e-15);
        Assert.Equal(P1, e.Summary.AP);
        Assert.Equal(P1, e.Precision(9, 100, 0, CocoAreaRange.All, 2));
        Assert.Equal(1.0, e.Recall(9, 0, CocoAreaRange.All, 2));
    }

    [Fact]
    public void Iou_0_58_matches_only_at_0_50_and_0_55()
    {
        // gt [0,0,100,100], d [0,0,58,100]: i = 58 * 100 = 5800, u = (5800 + 10000) - 5800 = 10000,
        // IoU = 0.58: >= 0.5 and >= 0.55, < 0.6. So 2 of the 10 thresholds have precision P1 at all
        // 101 recall thresholds and recall 1; the other 8 have precision 0 and recall 0.
        // AP = 2 * 101 * P1 / 1010 = 0.2 (to 1e-16), AP50 = mean of 101 P1 = 0.9999999999999999,
        // AP75 = 0, AR = 2 / 10 = 0.2 exactly (pairwise sum of 1, 1, 0 x 8 is 2).
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Dt(0, 0, 58, 100, 0.9).Evaluate().Summary;
        Assert.Equal(0.2, s.AP, 1e-15);
        Assert.Equal(0.9999999999999999, s.AP50);
        Assert.Equal(0, s.AP75);
        Assert.Equal(0.2, s.AR100);
    }

    [Fact]
    public void Iou_exactly_0_6_also_matches_at_0_6()
    {
        // 6000 / 10000 rounds to the same double as linspace's third threshold, and a match needs
        // IoU >= t: three thresholds match, AP = 303 P1 / 1010 (worked example 2 of the pycocotools description, see CocoWorkedExampleTests).
        CocoEvaluation e = new CocoCase().Gt(0, 0, 100, 100).Dt(0, 0, 60, 100, 0.9).Evaluate();
        Assert.Equal(P1, e.Precision(2, 0, 0, CocoAreaRange.All, 2));
        Assert.Equal(0, e.Precision(3, 0, 0, CocoAreaRange.All, 2));
        Assert.Equal(0.29999999999999993, e.Summary.AP);
    }

    [Fact]
    public void Iou_0_8999999999999999_matches_at_the_ninth_threshold()
    {
        // gt [0,0,1,1], d [0,0,w,1] with w = 0.8999999999999999 (one ulp below the double 0.9):
        // i = w * 1 = w, u = (w + 1) - w = 1 (w + 1 rounds to 1.9's double, and 1.9 - w = 1 exactly),
        // IoU = w. linspace's ninth threshold is that same double, so it matches there (a list typed
        // as 0.9 would not) and not at 0.95.
        const double w = 0.8999999999999999;
        Assert.Equal(w, (w * 1) / (((w * 1) + 1.0) - (w * 1)));
        CocoEvaluation e = new CocoCase().Gt(0, 0, 1, 1).Dt(0, 0, w, 1, 0.9).Evaluate();
        Assert.Equal(P1, e.Precision(8, 0, 0, CocoAreaRange.All, 2));
        Assert.Equal(0, e.Precision(9, 0, 0, CocoAreaRange.All, 2));
    }

    [Fact]
    public void Crowd_region_absorbs_any_number_of_detections_which_are_ignored()
    {
        // Three detections inside the crowd region (IoU = i / own area = 1), scores above the true
        // positive: all ignored, they take positions but add neither TP nor FP. Precision 0, 0, 0, P1;
        // recall 0, 0, 0, 1; the envelope carries P1 back to positions 1-3, so r_0 = 0 (position 1)
        // and every other threshold (position 4) get P1. AR1: the only detection counted is an
        // ignored one, recall 0.
        CocoSummary s = new CocoCase().Gt(0, 0, 50, 50).Gt(100, 100, 200, 200, crowd: true)
            .Dt(110, 110, 40, 40, 0.99).Dt(150, 150, 40, 40, 0.98).Dt(200, 200, 60, 60, 0.97)
            .Dt(0, 0, 50, 50, 0.9).Evaluate().Summary;
        Assert.Equal(P1, s.AP);
        Assert.Equal(0, s.AR1);
        Assert.Equal(1, s.AR10);
    }

    [Fact]
    public void Regular_ground_truth_is_taken_before_a_better_overlapping_crowd_region()
    {
        // d [0,0,60,100]: IoU 0.6 with the regular gt [0,0,100,100], IoU 1 with the crowd region
        // [0,0,60,100]. Thresholds 0.5-0.6: the regular gt comes first in the order and is taken (TP).
        // Thresholds 0.65+: only the crowd region qualifies: matched to it, so ignored; one ignored
        // position, recall 0, precision 0 everywhere. Same table as IoU 0.6 alone: AP = 0.29999999999999993.
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Gt(0, 0, 60, 100, crowd: true)
            .Dt(0, 0, 60, 100, 0.9).Evaluate().Summary;
        Assert.Equal(0.29999999999999993, s.AP);
        Assert.Equal(0.3, s.AR100);
    }

    [Fact]
    public void Out_of_range_ground_truth_that_is_not_a_crowd_absorbs_only_one_detection()
    {
        // Small range [0, 1024]. gt A: box [0,0,30,30] but area field 10000, so ignored in "small";
        // gt B [100,100,30,30], area 900, regular. d1, d2 exactly on A (own area 900), d3 exactly on B.
        // d1 -> A (ignored gt): ignored. d2: A is used and not a crowd, so unmatched; own area 900 is in
        // range: FP. d3 -> B: TP. Positions ign, FP, TP: precision 0, 0, 1 / (2 + eps) = 0.5; recall
        // 0, 0, 1. Envelope 0.5 everywhere: APs = 0.5 (a crowd would have absorbed d2: APs = P1).
        CocoSummary s = new CocoCase().Gt(0, 0, 30, 30, area: 10000).Gt(100, 100, 30, 30)
            .Dt(0, 0, 30, 30, 0.9).Dt(0, 0, 30, 30, 0.8).Dt(100, 100, 30, 30, 0.7).Evaluate().Summary;
        Assert.Equal(0.5, s.APSmall);
    }

    [Fact]
    public void Equal_iou_goes_to_the_last_ground_truth()
    {
        // gt1 [0,0,100,100], gt2 [50,0,100,100]; d1 [25,0,100,100] 0.9 has IoU 7500 / 12500 = 0.6 with
        // both; d2 [0,0,100,100] 0.8 has IoU 1 with gt1 and 5000 / 15000 = 1/3 with gt2.
        // t = 0.5, 0.55, 0.6: d1 takes the last of the equals, gt2; d2 takes gt1: TP, TP, precision
        // P1, 1 -> envelope 1 at all 101 recall thresholds. t >= 0.65: d1 FP, d2 TP: precision 0, 0.5,
        // recall 0, 0.5 -> 0.5 for r_0..r_50 (51 entries), 0 above.
        // AP = (3 * 101 * 1 + 7 * 51 * 0.5) / 1010 = 481.5 / 1010. (First of equals would give
        // (3 * 51 * P1 + 7 * 51 * 0.5) / 1010 = 0.328.)
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Gt(50, 0, 100, 100)
            .Dt(25, 0, 100, 100, 0.9).Dt(0, 0, 100, 100, 0.8).Evaluate().Summary;
        Assert.Equal(481.5 / 1010, s.AP, 1e-15);
    }

    [Fact]
    public void Max_detections_1_10_100_count_the_top_detections_per_image()
    {
        // 20 ground truths, 20 exact detections with descending scores: with 1 / 10 / 100 detections
        // the recall is 1/20, 10/20, 20/20 at every threshold. All positions are TPs, precision i / (i + eps)
        // with 2 / (2 + eps) = 1, so the envelope is 1 everywhere and AP = 1 exactly.
        var c = new CocoCase();
        for (int k = 0; k < 20; k++) c.Gt(110 * (k % 5), 110 * (k / 5), 100, 100);
        for (int k = 0; k < 20; k++) c.Dt(110 * (k % 5), 110 * (k / 5), 100, 100, 0.9 - 0.01 * k);
        CocoSummary s = c.Evaluate().Summary;
        Assert.Equal(0.05, s.AR1);
        Assert.Equal(0.5, s.AR10);
        Assert.Equal(1, s.AR100);
        Assert.Equal(1.0, s.AP);
    }

    [Fact]
    public void Only_100_detections_per_image_and_category_are_kept()
    {
        // 100 false positives scoring 0.9, then the exact detection at 0.5: it is the 101st of its
        // image and category and is cut: recall 0, AP 0. The same detection in a second category
        // (with its own ground truth) is not cut: the limit is per image and category.
        var c = new CocoCase();
        c.Categories.Add((2, "second"));
        c.Gt(0, 0, 100, 100).Gt(0, 0, 100, 100, category: 2);
        for (int k = 0; k < 100; k++) c.Dt(1000 + 10 * k, 1000, 100, 100, 0.9);
        c.Dt(0, 0, 100, 100, 0.5).Dt(0, 0, 100, 100, 0.5, category: 2);
        CocoEvaluation e = c.Evaluate();
        Assert.Equal(0, e.PerCategory[0].AP);
        Assert.Equal(0, e.Recall(0, 0, CocoAreaRange.All, 2));
        Assert.Equal(P1, e.PerCategory[1].AP);
    }

    [Fact]
    public void Equal_scores_keep_file_order_which_decides_the_cut_to_100()
    {
        // 101 detections all scoring 0.9; the exact one first in the file survives the cut and ranks
        // first (AP P1); last in the file it is the one cut (AP 0).
        CocoEvaluation First(bool exactFirst)
        {
            var c = new CocoCase().Gt(0, 0, 100, 100);
            if (exactFirst) c.Dt(0, 0, 100, 100, 0.9);
            for (int k = 0; k < 100; k++) c.Dt(1000 + 10 * k, 1000, 100, 100, 0.9);
            if (!exactFirst) c.Dt(0, 0, 100, 100, 0.9);
            return c.Evaluate();
        }
        Assert.Equal(P1, First(true).Summary.AP);
        Assert.Equal(0, First(false).Summary.AP);
    }

    [Fact]
    public void Equal_scores_in_one_image_are_taken_in_file_order()
    {
        // gt [0,0,100,100]; FP [500,500,100,100] and TP [0,0,100,100], both 0.5.
        // FP first: precision 0, 0.5; recall 0, 1; envelope 0.5, 0.5: every entry 0.5, AP 0.5.
        // TP first: precision P1, 0.5; recall 1, 1: every recall threshold finds position 1: AP P1.
        CocoSummary fpFirst = new CocoCase().Gt(0, 0, 100, 100).Dt(500, 500, 100, 100, 0.5).Dt(0, 0, 100, 100, 0.5).Evaluate().Summary;
        CocoSummary tpFirst = new CocoCase().Gt(0, 0, 100, 100).Dt(0, 0, 100, 100, 0.5).Dt(500, 500, 100, 100, 0.5).Evaluate().Summary;
        Assert.Equal(0.5, fpFirst.AP);
        Assert.Equal(P1, tpFirst.AP);
    }

    [Fact]
    public void Categories_without_ground_truth_are_excluded_and_categories_without_detections_count_zero()
    {
        var c = new CocoCase();
        c.Categories.Add((2, "no-gt"));
        c.Categories.Add((3, "crowd-only"));
        c.Categories.Add((4, "no-detections"));
        c.Gt(0, 0, 100, 100).Dt(0, 0, 100, 100, 0.9)
            .Dt(0, 0, 100, 100, 0.99, category: 2).Dt(300, 300, 50, 50, 0.3, category: 2)
            .Gt(0, 0, 300, 300, category: 3, crowd: true).Dt(10, 10, 50, 50, 0.5, category: 3);
        CocoEvaluation onlyOne = c.Evaluate();
        // Categories 2 and 3 have n = 0 everywhere: -1, NaN, left out of the means.
        Assert.Equal(P1, onlyOne.Summary.AP);
        Assert.True(double.IsNaN(onlyOne.PerCategory[1].AP));
        Assert.True(double.IsNaN(onlyOne.PerCategory[2].AP));
        Assert.Equal(-1, onlyOne.Precision(0, 0, 1, CocoAreaRange.All, 2));
        Assert.Equal(-1, onlyOne.Recall(0, 2, CocoAreaRange.All, 2));
        Assert.True(double.IsNaN(onlyOne.PerCategory[3].AP));
        // Category 4 with ground truth but no detection: precision 0 and recall 0 (not -1), so it halves
        // the mean: entries in (t, r, k) order are P1, 0, P1, 0, ... -> 0.5 to rounding.
        c.Gt(0, 0, 100, 100, category: 4);
        CocoEvaluation withEmpty = c.Evaluate();
        Assert.Equal(0, withEmpty.PerCategory[3].AP);
        Assert.Equal(0, withEmpty.Recall(0, 3, CocoAreaRange.All, 2));
        Assert.Equal(0.5, withEmpty.Summary.AP, 1e-15);
        Assert.Equal(0.5, withEmpty.Summary.AR100);
    }

    [Fact]
    public void Images_without_anything_change_nothing_and_detections_on_images_without_ground_truth_are_false_positives()
    {
        CocoCase Build(bool emptyImages)
        {
            var c = new CocoCase();
            c.Images.Add(2);
            if (emptyImages) c.Images.AddRange([7, 8, 9]);
            return c.Gt(0, 0, 100, 100).Dt(0, 0, 100, 100, 0.9).Dt(0, 0, 100, 100, 0.95, image: 2);
        }
        CocoEvaluation plain = Build(false).Evaluate(), padded = Build(true).Evaluate();
        Assert.Equal(plain.Summary.Stats, padded.Summary.Stats);
        // Image 2 has no ground truth: its detection (0.95) is a false positive ranked first: 0.5.
        Assert.Equal(0.5, plain.Summary.AP);
        Assert.Equal(0.5, plain.Summary.APLarge);
    }

    [Fact]
    public void Annotation_id_0_is_matched_but_counts_as_unmatched()
    {
        // id 0: the detection is matched to it (pycocotools records the id, 0, which reads as
        // "unmatched"): a false positive, so AP 0 and recall 0. With id 1 it is a true positive.
        Assert.Equal(0, new CocoCase().Gt(0, 0, 100, 100, id: 0).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary.AP);
        Assert.Equal(0, new CocoCase().Gt(0, 0, 100, 100, id: 0).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary.AR100);
        Assert.Equal(P1, new CocoCase().Gt(0, 0, 100, 100, id: 1).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary.AP);
    }

    [Fact]
    public void Annotation_id_0_is_still_used_up_by_its_match()
    {
        // gt0 [0,0,100,100] (id 0), gt1 [20,0,100,100] (id 1). d1, d2 both [0,0,100,100]: IoU 1 with
        // gt0, 8000 / 12000 = 0.667 with gt1. d1 (0.9) takes gt0: a false positive. d2 (0.8): gt0 is used,
        // so it takes gt1 where 0.667 >= t (t = 0.5..0.65): TP. Those 4 thresholds: precision 0, 0.5,
        // recall 0, 0.5 -> 51 entries of 0.5; the other 6: two FPs, 0. AP = 4 * 51 * 0.5 / 1010.
        // (If gt0 were not used up, d2 would take it too and AP would be 0.)
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100, id: 0).Gt(20, 0, 100, 100, id: 1)
            .Dt(0, 0, 100, 100, 0.9).Dt(0, 0, 100, 100, 0.8).Evaluate().Summary;
        Assert.Equal(102.0 / 1010, s.AP, 1e-15);
    }

    [Fact]
    public void Detection_matched_to_an_ignored_annotation_with_id_0_is_ignored()
    {
        // pycocotools sets dtIg = gtIg[m] before dtm = gt id, so a detection matched to an ignored
        // ground truth is ignored even when that ground truth's id is 0 (docs/COCOEVAL.md §1, the id-0
        // quirk; the own-area rule alone would cover only the not-ignored case).
        // Crowd gt id 0 [0,0,100,100]; regular gt id 1 [200,200,50,50]. d1 [10,10,20,20] 0.9 lies in
        // the crowd region: matched to it, ignored. d2 exact on gt 1: TP. Positions ign, TP: precision
        // 0, P1; recall 0, 1; envelope P1: AP P1 (0.5 if d1 were a false positive).
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100, crowd: true, id: 0).Gt(200, 200, 50, 50, id: 1)
            .Dt(10, 10, 20, 20, 0.9).Dt(200, 200, 50, 50, 0.8).Evaluate().Summary;
        Assert.Equal(P1, s.AP);
    }

    [Fact]
    public void Area_range_bounds_are_inclusive_at_both_ends()
    {
        // Area exactly 1024 is small and medium; 9216 is medium and large.
        CocoSummary s1024 = new CocoCase().Gt(0, 0, 32, 32).Dt(0, 0, 32, 32, 0.9).Evaluate().Summary;
        Assert.Equal(P1, s1024.APSmall);
        Assert.Equal(P1, s1024.APMedium);
        Assert.Equal(-1, s1024.APLarge);
        CocoSummary s9216 = new CocoCase().Gt(0, 0, 96, 96).Dt(0, 0, 96, 96, 0.9).Evaluate().Summary;
        Assert.Equal(-1, s9216.APSmall);
        Assert.Equal(P1, s9216.APMedium);
        Assert.Equal(P1, s9216.APLarge);
        Assert.Equal(1, s9216.ARLarge);
    }

    [Fact]
    public void Ground_truth_ranges_use_the_area_field_and_detections_their_own_box()
    {
        // Box 100 x 100 but area field 500: small. The exact detection (own area 10000) matched to it
        // counts as TP in "small" whatever its own size; "large" has no ground truth.
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100, area: 500).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(P1, s.APSmall);
        Assert.Equal(-1, s.APLarge);

        // An unmatched detection is ignored only outside the range: area exactly 1024 is a false
        // positive in "small" (FP then TP: 0.5), 32 x 32.000000000000004 > 1024 is ignored (P1).
        CocoSummary atBound = new CocoCase().Gt(0, 0, 100, 100, area: 500)
            .Dt(300, 300, 32, 32, 0.95).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(0.5, atBound.APSmall);
        double h = Math.BitIncrement(32.0);
        Assert.True(32 * h > 1024);
        CocoSummary above = new CocoCase().Gt(0, 0, 100, 100, area: 500)
            .Dt(300, 300, 32, h, 0.95).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(P1, above.APSmall);
    }

    [Fact]
    public void Detection_with_negative_width_is_ignored_everywhere()
    {
        // Negative area: outside every range, and IoU 0 with everything. Ranked first it takes a
        // position (ign, TP -> envelope P1: AP P1) and is the only one counted with 1 detection: AR1 0.
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Dt(50, 50, -10, 20, 0.99).Dt(0, 0, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(P1, s.AP);
        Assert.Equal(0, s.AR1);
        Assert.Equal(1, s.AR10);
    }

    [Fact]
    public void Annotations_of_unknown_images_or_categories_take_no_part()
    {
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Gt(300, 300, 100, 100, image: 42).Gt(300, 300, 100, 100, category: 9)
            .Dt(0, 0, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(P1, s.AP);
        Assert.Equal(1, s.AR100);
    }

    [Fact]
    public void No_detections_at_all_gives_zero_where_there_is_ground_truth()
    {
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Evaluate().Summary;
        Assert.Equal(0, s.AP);
        Assert.Equal(0, s.AR100);
        Assert.Equal(-1, s.APSmall);
    }

    [Fact]
    public void Thread_count_does_not_change_any_bit()
    {
        var random = new Random(5);
        var c = new CocoCase();
        c.Images.Clear();
        c.Categories.Clear();
        for (int i = 1; i <= 30; i++) c.Images.Add(i);
        for (int k = 1; k <= 12; k++) c.Categories.Add((k, $"c{k}"));
        for (int n = 0; n < 300; n++)
            c.Gt(random.Next(20) * 10, random.Next(20) * 10, 20 + random.Next(10) * 10, 20 + random.Next(10) * 10, image: 1 + random.Next(30), category: 1 + random.Next(12), crowd: random.Next(10) == 0);
        for (int n = 0; n < 1500; n++)
            c.Dt(random.Next(20) * 10, random.Next(20) * 10, 20 + random.Next(10) * 10, 20 + random.Next(10) * 10, random.Next(10) / 10.0, image: 1 + random.Next(30), category: 1 + random.Next(12));
        CocoEvaluation one = c.Evaluate(threads: 1), two = c.Evaluate(threads: 2), five = c.Evaluate(threads: 5);
        for (int k = 0; k < 12; k++)
        {
            for (int t = 0; t < CocoEvalParameters.IouThresholdCount; t++)
            {
                for (int a = 0; a < CocoEvalParameters.AreaRangeCount; a++)
                {
                    for (int m = 0; m < CocoEvalParameters.MaxDetectionsCount; m++)
                    {
                        Assert.Equal(one.Recall(t, k, (CocoAreaRange)a, m), two.Recall(t, k, (CocoAreaRange)a, m));
                        Assert.Equal(one.Recall(t, k, (CocoAreaRange)a, m), five.Recall(t, k, (CocoAreaRange)a, m));
                        for (int r = 0; r < CocoEvalParameters.RecallThresholdCount; r++)
                        {
                            Assert.Equal(one.Precision(t, r, k, (CocoAreaRange)a, m), two.Precision(t, r, k, (CocoAreaRange)a, m));
                            Assert.Equal(one.Precision(t, r, k, (CocoAreaRange)a, m), five.Precision(t, r, k, (CocoAreaRange)a, m));
                        }
                    }
                }
            }
        }
        Assert.Equal(one.Summary.Stats, five.Summary.Stats);
    }

    [Fact]
    public void Summary_text_is_pycocotools_format()
    {
        string text = new CocoCase().Gt(10, 10, 100, 100).Dt(10, 10, 100, 100, 0.9).Evaluate().Summary.Format();
        Assert.Equal(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n" +
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000\n" +
            " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 1.000\n" +
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000\n" +
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000\n" +
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000\n" +
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 1.000\n",
            text);
        Assert.Equal(["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"], CocoSummary.Keys);
    }

    [Theory]
    // Expected strings printed by Python 3 '{:0.3f}'.format(x) on this machine (exact value, ties to even).
    [InlineData(0.0625, "0.062")]
    [InlineData(0.0005, "0.001")]
    [InlineData(0.0015, "0.002")]
    [InlineData(0.1235, "0.123")]
    [InlineData(0.9995, "1.000")]
    [InlineData(0.9999999999999998, "1.000")]
    [InlineData(0.29999999999999993, "0.300")]
    [InlineData(-1.0, "-1.000")]
    [InlineData(0.0, "0.000")]
    [InlineData(0.411, "0.411")]
    public void Fixed_three_decimals_round_like_python(double value, string expected)
    {
        Assert.Equal(expected, CocoSummary.FormatFixed3(value));
    }
}
