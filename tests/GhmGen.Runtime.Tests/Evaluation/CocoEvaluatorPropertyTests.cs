// The fast CocoEvaluator against NaiveCocoEval (a plain, literal re-implementation in this test
// project) on seeded random small datasets built to hit the edge cases: crowd regions, boxes on a
// 10-pixel grid (equal IoUs, IoUs exactly at thresholds), scores from a ten-value set (ties),
// images without anything, categories without ground truth, annotation id 0, areas exactly at the
// range bounds, negative widths, annotations of unknown images, and >100 detections of one image and
// category. pycocotools cannot be installed here, so this checks internal consistency with the
// document, not against pycocotools itself.
using GhmGen.Evaluation;
using Xunit.Abstractions;

namespace GhmGen.Runtime.Tests.Evaluation;

public sealed class CocoEvaluatorPropertyTests(ITestOutputHelper output)
{
    private const int Datasets = 50;

    public static TheoryData<int> Seeds()
    {
        var data = new TheoryData<int>();
        for (int s = 0; s < Datasets; s++) data.Add(s);
        return data;
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Fast_evaluator_agrees_with_the_naive_one(int seed)
    {
        CocoCase c = RandomCase(seed);
        CocoGroundTruth gt = c.LoadGroundTruth();
        CocoResults results = c.LoadResults(gt);
        CocoEvaluation fast = CocoEvaluator.Evaluate(results, threads: 1 + seed % 3);
        var naive = new NaiveCocoEval(gt, results.Detections);

        int K = gt.Categories.Count, differing = 0;
        string first = "";
        for (int t = 0; t < CocoEvalParameters.IouThresholdCount; t++)
        {
            for (int k = 0; k < K; k++)
            {
                for (int a = 0; a < CocoEvalParameters.AreaRangeCount; a++)
                {
                    for (int m = 0; m < CocoEvalParameters.MaxDetectionsCount; m++)
                    {
                        double expected = naive.Recall[t, k, a, m], actual = fast.Recall(t, k, (CocoAreaRange)a, m);
                        if (!expected.Equals(actual) && differing++ == 0) first = $"recall[{t},{k},{a},{m}] naive {expected:R} fast {actual:R}";
                        for (int r = 0; r < CocoEvalParameters.RecallThresholdCount; r++)
                        {
                            expected = naive.Precision[t, r, k, a, m];
                            actual = fast.Precision(t, r, k, (CocoAreaRange)a, m);
                            if (!expected.Equals(actual) && differing++ == 0) first = $"precision[{t},{r},{k},{a},{m}] naive {expected:R} fast {actual:R}";
                        }
                    }
                }
            }
        }
        Assert.True(differing == 0, $"{differing} table entries differ; first: {first}");
        for (int i = 0; i < 12; i++) Assert.Equal(naive.Stats[i], fast.Summary.Stats[i], 1e-12);
        for (int k = 0; k < K; k++)
        {
            if (double.IsNaN(naive.PerCategoryAp[k])) Assert.True(double.IsNaN(fast.PerCategory[k].AP));
            else Assert.Equal(naive.PerCategoryAp[k], fast.PerCategory[k].AP, 1e-12);
        }
        output.WriteLine($"seed {seed}: {gt.ImageIds.Count} images, {K} categories, {gt.Annotations.Count} gts, {results.Detections.Count} dets, AP {fast.Summary.AP:R}");
    }

    [Fact]
    public void The_random_datasets_cover_the_edge_cases()
    {
        // Guard against a generator that quietly stops producing what the property test is for.
        int crowd = 0, idZero = 0, emptyImages = 0, noGtCategories = 0, over100 = 0, atBounds = 0;
        for (int s = 0; s < Datasets; s++)
        {
            CocoCase c = RandomCase(s);
            crowd += c.Annotations.Count(a => a.Crowd);
            idZero += c.Annotations.Count(a => a.Id == 0);
            emptyImages += c.Images.Count(i => !c.Annotations.Any(a => a.ImageId == i) && !c.Detections.Any(d => d.ImageId == i));
            noGtCategories += c.Categories.Count(k => !c.Annotations.Any(a => a.CategoryId == k.Id));
            over100 += c.Detections.GroupBy(d => (d.ImageId, d.CategoryId)).Count(g => g.Count() > 100);
            atBounds += c.Annotations.Count(a => a.Area is 1024 or 9216);
        }
        output.WriteLine($"crowd {crowd}, id 0 {idZero}, empty images {emptyImages}, categories without gt {noGtCategories}, pairs over 100 {over100}, areas at bounds {atBounds}");
        Assert.True(crowd > 0 && idZero > 0 && emptyImages > 0 && noGtCategories > 0 && over100 > 0 && atBounds > 0);
    }

    internal static CocoCase RandomCase(int seed)
    {
        var random = new Random(7919 * seed + 17);
        var c = new CocoCase();
        c.Images.Clear();
        c.Categories.Clear();
        int imageCount = 1 + random.Next(8);
        while (c.Images.Count < imageCount)
        {
            long id = 1 + random.Next(40);
            if (!c.Images.Contains(id)) c.Images.Add(id);
        }
        int categoryCount = 1 + random.Next(4);
        while (c.Categories.Count < categoryCount)
        {
            long id = 1 + random.Next(20);
            if (!c.Categories.Exists(k => k.Id == id)) c.Categories.Add((id, $"category {id}"));
        }
        long nextId = random.Next(2); // half of the datasets number annotations from 0
        double Grid(int cells) => 10 * random.Next(cells);
        double Side() => random.Next(40) == 0 ? -10 : 10 + 10 * random.Next(15);
        double Score() => random.Next(2) == 0 ? (1 + random.Next(9)) / 10.0 : random.NextDouble();

        foreach (long image in c.Images)
        {
            int gtCount = random.Next(3) == 0 ? 0 : random.Next(7);
            for (int g = 0; g < gtCount; g++)
            {
                double w = Side(), h = Side();
                double area = random.Next(8) switch
                {
                    0 => 1024,
                    1 => 9216,
                    2 => w * h * random.NextDouble(),
                    _ => w * h,
                };
                long category = c.Categories[random.Next(c.Categories.Count)].Id;
                long onImage = random.Next(25) == 0 ? 1000 + image : image; // sometimes not an image of the file
                c.Gt(Grid(20), Grid(20), w, h, image: onImage, category: category, crowd: random.Next(7) == 0, area: area, id: nextId++);
            }
        }
        foreach (long image in c.Images)
        {
            var own = c.Annotations.Where(a => a.ImageId == image).ToList();
            int detCount = random.Next(4) == 0 ? 0 : random.Next(15);
            for (int d = 0; d < detCount; d++)
            {
                long category = c.Categories[random.Next(c.Categories.Count)].Id;
                if (own.Count > 0 && random.Next(5) < 3)
                {
                    CocoCase.Annotation a = own[random.Next(own.Count)];
                    if (random.Next(3) > 0) category = a.CategoryId;
                    c.Dt(a.Box[0] + 10 * random.Next(-2, 3), a.Box[1] + 10 * random.Next(-2, 3),
                        a.Box[2] + 10 * random.Next(-2, 3), a.Box[3] + 10 * random.Next(-2, 3), Score(), image, category);
                }
                else
                {
                    c.Dt(Grid(20), Grid(20), Side(), Side(), Score(), image, category);
                }
            }
        }
        if (seed % 7 == 3)
        {
            // One (image, category) with 120 detections: the cut to 100 and ties at the cut.
            long image = c.Images[0], category = c.Categories[0].Id;
            for (int d = 0; d < 120; d++) c.Dt(Grid(20), Grid(20), 10 + Grid(10), 10 + Grid(10), (1 + random.Next(5)) / 10.0, image, category);
        }
        return c;
    }
}
