// The worked examples of docs/COCOEVAL.md §8, whose values were printed by the real pycocotools.
// pycocotools cannot be installed on this machine: these numbers are taken from that description,
// not re-run here. Exact double comparisons throughout (the values are bit-exact).
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

public sealed class CocoWorkedExampleTests
{
    [Fact]
    public void Example1_perfect_detection()
    {
        CocoSummary s = new CocoCase().Gt(10, 10, 100, 100).Dt(10, 10, 100, 100, 0.9).Evaluate().Summary;
        Assert.Equal(0.9999999999999998, s.AP);
        Assert.Equal(0.9999999999999999, s.AP50);
        Assert.Equal(0.9999999999999999, s.AP75);
        Assert.Equal(-1, s.APSmall);
        Assert.Equal(-1, s.APMedium);
        Assert.Equal(0.9999999999999998, s.APLarge);
        Assert.Equal(1, s.AR1);
        Assert.Equal(1, s.AR10);
        Assert.Equal(1, s.AR100);
        Assert.Equal(-1, s.ARSmall);
        Assert.Equal(-1, s.ARMedium);
        Assert.Equal(1, s.ARLarge);
    }

    [Fact]
    public void Example2_iou_0_6_matches_the_first_three_thresholds()
    {
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Dt(0, 0, 60, 100, 0.9).Evaluate().Summary;
        Assert.Equal(0.29999999999999993, s.AP);
        Assert.Equal(0.9999999999999999, s.AP50);
        Assert.Equal(0, s.AP75);
        Assert.Equal(0.29999999999999993, s.APLarge);
        Assert.Equal(0.3, s.AR1);
        Assert.Equal(0.3, s.AR10);
        Assert.Equal(0.3, s.AR100);
        Assert.Equal(0.3, s.ARLarge);
    }

    [Fact]
    public void Example3_false_positive_first_and_ignored_in_the_large_range()
    {
        CocoSummary s = new CocoCase().Gt(10, 10, 100, 100)
            .Dt(500, 500, 50, 50, 0.9).Dt(10, 10, 100, 100, 0.8).Evaluate().Summary;
        Assert.Equal(0.5, s.AP);
        Assert.Equal(0, s.AR1);
        Assert.Equal(1, s.AR10);
        Assert.Equal(1, s.AR100);
        Assert.Equal(0.9999999999999998, s.APLarge);
    }

    [Fact]
    public void Example4_detection_inside_a_crowd_region_is_ignored()
    {
        CocoSummary s = new CocoCase().Gt(0, 0, 50, 50).Gt(100, 100, 200, 200, crowd: true)
            .Dt(110, 110, 50, 50, 0.95).Dt(0, 0, 50, 50, 0.9).Evaluate().Summary;
        Assert.Equal(0.9999999999999998, s.AP);
        Assert.Equal(0.9999999999999998, s.APMedium);
        Assert.Equal(-1, s.APLarge);
        Assert.Equal(0, s.AR1);
        Assert.Equal(1, s.AR10);
    }

    [Fact]
    public void Example5_precision_envelope_two_thirds()
    {
        CocoSummary s = new CocoCase().Gt(0, 0, 100, 100).Gt(200, 0, 100, 100)
            .Dt(600, 600, 50, 50, 0.9).Dt(0, 0, 100, 100, 0.8).Dt(200, 0, 100, 100, 0.7).Evaluate().Summary;
        Assert.Equal(0.6666666666666666, s.AP);
        Assert.Equal(0, s.AR1);
        Assert.Equal(1, s.AR10);
        Assert.Equal(1.0, s.APLarge);
    }

    [Fact]
    public void Example6_category_without_ground_truth_is_left_out()
    {
        var c = new CocoCase();
        c.Categories.Add((2, "other"));
        CocoEvaluation e = c.Gt(10, 10, 100, 100).Dt(10, 10, 100, 100, 0.9).Dt(10, 10, 100, 100, 0.95, category: 2).Evaluate();
        Assert.Equal(0.9999999999999998, e.Summary.AP);
        Assert.Equal(0.9999999999999998, e.PerCategory[0].AP);
        Assert.Equal(1, e.PerCategory[0].Category.Id);
        Assert.True(double.IsNaN(e.PerCategory[1].AP));
        Assert.Equal("other", e.PerCategory[1].Category.Name);
    }

    [Fact]
    public void Example7_score_tie_across_images_is_broken_by_image_id()
    {
        var c = new CocoCase();
        c.Images.Add(2);
        CocoSummary s = c.Gt(10, 10, 100, 100, image: 1).Gt(10, 10, 100, 100, image: 2)
            .Dt(10, 10, 100, 100, 0.5, image: 2).Dt(600, 600, 50, 50, 0.5, image: 1).Evaluate().Summary;
        Assert.Equal(0.2524752475247525, s.AP);
        Assert.Equal(0.5, s.AR100);
        Assert.Equal(0.5049504950495048, s.APLarge);
    }

    [Fact]
    public void Example8_recall_threshold_0_35_is_above_7_of_20()
    {
        var c = new CocoCase();
        for (int k = 0; k < 20; k++) c.Gt(110 * (k % 5), 110 * (k / 5), 100, 100);
        double[] scores = [0.9, 0.89, 0.88, 0.87, 0.86, 0.85, 0.84];
        for (int k = 0; k < 7; k++) c.Dt(110 * (k % 5), 110 * (k / 5), 100, 100, scores[k]);
        c.Dt(900, 900, 50, 50, 0.5).Dt(110 * (7 % 5), 110 * (7 / 5), 100, 100, 0.4);
        CocoSummary s = c.Evaluate().Summary;
        Assert.Equal(0.3993399339933994, s.AP);
        Assert.Equal(0.05, s.AR1);
        Assert.Equal(0.4, s.AR10);
        Assert.Equal(0.4, s.AR100);
    }
}
