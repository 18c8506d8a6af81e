// COCO box evaluation at val2017 size: 5,000 images, ~36,000 ground-truth boxes over the 80 COCO
// categories, 100 detections per image (500,000 results), from a seeded generator (CocoSyntheticDataset).
// Evaluate = CocoEvaluator.Evaluate alone (the loaders' output is built once in GlobalSetup);
// LoadResults / LoadGroundTruth = parsing the generated JSON text (results ~45 MB).
// Peer: pycocotools (not installable on the development machine; see bench/README.md).
using BenchmarkDotNet.Attributes;
using GhmGen.Evaluation;

namespace GhmGen.Bench;

/// <summary>CocoEvaluator and the COCO loaders on a val2017-sized synthetic dataset.</summary>
[MemoryDiagnoser]
public class CocoEvalBenchmarks
{
    private CocoGroundTruth groundTruth = null!;
    private CocoResults results = null!;
    private byte[] groundTruthJson = [];
    private byte[] resultsJson = [];

    /// <summary>Worker threads of the evaluation.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Generates the dataset (seed 2017) and its JSON text once.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var dataset = CocoSyntheticDataset.Generate(seed: 2017, imageCount: 5000, detectionsPerImage: 100);
        groundTruthJson = dataset.GroundTruthJson();
        resultsJson = dataset.ResultsJson();
        groundTruth = CocoGroundTruth.Parse(groundTruthJson, "gt.json");
        results = CocoResults.Parse(resultsJson, "results.json", groundTruth);
        Console.WriteLine($"// dataset: {groundTruth.ImageIds.Count} images, {groundTruth.Categories.Count} categories, " +
            $"{groundTruth.Annotations.Count} ground truths, {results.Detections.Count} detections; " +
            $"gt JSON {groundTruthJson.Length / 1e6:F1} MB, results JSON {resultsJson.Length / 1e6:F1} MB; AP {CocoEvaluator.Evaluate(results).Summary.AP:F4}");
    }

    /// <summary>The whole COCOeval (evaluate + accumulate + summarize) of the 500,000 detections.</summary>
    [Benchmark]
    public double Evaluate() => CocoEvaluator.Evaluate(results, Threads).Summary.AP;

    /// <summary>Parsing and checking the 500,000-entry results file (single-threaded; Threads does not apply).</summary>
    [Benchmark]
    public int LoadResults() => CocoResults.Parse(resultsJson, "results.json", groundTruth).Detections.Count;

    /// <summary>Parsing the ground-truth file (single-threaded; Threads does not apply).</summary>
    [Benchmark]
    public int LoadGroundTruth() => CocoGroundTruth.Parse(groundTruthJson, "gt.json").Annotations.Count;
}
