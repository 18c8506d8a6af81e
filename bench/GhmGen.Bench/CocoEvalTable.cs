// A quick measurement without BenchmarkDotNet of the COCO evaluation at val2017 size (the dataset of
// CocoEvalBenchmarks): each step run `repeats` times after one warm-up, best wall time and the
// process CPU time of that run (all threads summed; contention from other processes distorts it
// much less than wall time).
using System.Diagnostics;
using GhmGen.Evaluation;

namespace GhmGen.Bench;

/// <summary>Prints wall and CPU time of loading and evaluating the synthetic val2017-sized dataset.</summary>
public static class CocoEvalTable
{
    /// <summary>Generates the dataset (seed 2017) and times the loaders and the evaluation with 1 and 2 threads.</summary>
    public static void Print(int repeats)
    {
        var dataset = CocoSyntheticDataset.Generate(seed: 2017, imageCount: 5000, detectionsPerImage: 100);
        byte[] gtJson = dataset.GroundTruthJson(), resultsJson = dataset.ResultsJson();
        CocoGroundTruth gt = CocoGroundTruth.Parse(gtJson, "gt.json");
        CocoResults results = CocoResults.Parse(resultsJson, "results.json", gt);
        Console.WriteLine($"{gt.ImageIds.Count} images, {gt.Categories.Count} categories, {gt.Annotations.Count} ground truths, {results.Detections.Count} detections");
        Time("load ground truth (7 MB)", repeats, () => CocoGroundTruth.Parse(gtJson, "gt.json"));
        Time("load results (57 MB)", repeats, () => CocoResults.Parse(resultsJson, "results.json", gt));
        foreach (int threads in new[] { 1, 2 })
            Time($"evaluate, {threads} thread(s)", repeats, () => CocoEvaluator.Evaluate(results, threads));
        Console.Write(CocoEvaluator.Evaluate(results).Summary.Format());
    }

    private static void Time(string name, int repeats, Action run)
    {
        run();
        double bestWall = double.MaxValue, cpuOfBest = 0;
        for (int i = 0; i < repeats; i++)
        {
            TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            long start = Stopwatch.GetTimestamp();
            run();
            double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds;
            if (wall < bestWall) (bestWall, cpuOfBest) = (wall, cpu);
        }
        Console.WriteLine($"{name,-28} {bestWall * 1e3,8:F1} ms wall {cpuOfBest * 1e3,8:F1} ms CPU");
    }
}
