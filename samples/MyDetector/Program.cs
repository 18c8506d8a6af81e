// The consumer sample, built only from the GhmGen packages: declare a detector (MyDetector.cs),
// train it briefly on a generated dataset, save and reload the checkpoint, detect.
//   dotnet run -c Release -- WORK_DIR
// writes WORK_DIR/shapes (the dataset), WORK_DIR/train (log.json, the checkpoints) and
// WORK_DIR/detections.json; samples/MyDetector.Native detects with the same checkpoint.
using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Datasets;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models;
using GhmGen.Training;
using MyApp;

string work = Path.GetFullPath(args.Length > 0 ? args[0] : "my-detector-run");

// A COCO-format dataset of three shapes (category ids 1..3 = circle, square, triangle).
SyntheticShapesSummary shapes = SyntheticShapes.Write(Path.Combine(work, "shapes"), new SyntheticShapesOptions
{
    Seed = 1,
    TrainImages = 8,
    ValImages = 2,
    Classes = [SyntheticShapeKind.Circle, SyntheticShapeKind.Square, SyntheticShapeKind.Triangle],
});
string[] classes = ["circle", "square", "triangle"];
CocoDetectionDataset train = CocoDetectionDataset.Load(shapes.Train.AnnotationFile, shapes.Train.ImageDirectory, new CocoDatasetOptions(ClassNames: classes));

// The declared network as a model: the head (3 classes, 9 anchors per cell, P3..P7) is found from its outputs.
ModelInfo model = ModelInfo.For<MyDetector>();
Console.WriteLine($"{model.Name}: {model.TotalParameters:N0} parameters, {model.Head.Classes} classes, {model.Head.Levels.Count} levels");
INetwork network = model.Create();
DetectorInitialization.Initialize(network, seed: 1);

using var backend = new CpuBackend();
string checkpoint;
using (ITrainingWeights weights = model.PrepareTraining(network, backend))
using (var trainer = new Trainer(network, weights, train, new TrainerOptions
{
    BatchSize = 2,
    MaxIterations = 4,
    WarmupIterations = 2,
    LongEdge = 160,
    ShortEdge = 128,
    LogInterval = 1,
    DataWorkers = 1,
}, Path.Combine(work, "train")))
{
    TrainResult result = trainer.Run(new ConsoleProgress());
    checkpoint = result.LastCheckpoint!;
    Console.WriteLine($"trained {result.Iterations} iterations, {result.ImagesPerSecond:F2} images/s; saved {checkpoint}");
}

// Reload the checkpoint into a fresh network (strict: every key, every shape) and detect.
INetwork loaded = model.Create();
IReadOnlyList<string>? names;
using (TorchCheckpoint file = TorchCheckpoint.Read(checkpoint))
{
    StateDictLoader.Load(loaded, file, strict: true);
    names = file.ClassNames; // the trainer saved the dataset's categories as CLASSES
}
using var detector = new Detector(model, loaded, backend, names, preprocess: new PreprocessOptions(160, 128));
// A few updates leave the scores near the prior (0.01): a low threshold shows what the head ranks first.
var options = new PostProcessOptions(ScoreThreshold: 0.001f, MaxPerImage: 5);
var found = new List<(string, DetectionResult)>();
foreach (string image in Directory.GetFiles(shapes.Val.ImageDirectory, "*.png").Order(StringComparer.Ordinal))
{
    DetectionResult result = detector.Detect(ImageDecoder.Decode(image), options);
    found.Add((Path.GetFileName(image), result));
    foreach (DetectedObject o in result.Objects)
        Console.WriteLine($"{Path.GetFileName(image)}: {detector.ClassNames[o.Label]} {o.Score:F4} [{o.X1:F0}, {o.Y1:F0}, {o.X2:F0}, {o.Y2:F0}]");
}
DetectionsJson.Write(Path.Combine(work, "detections.json"), found);
Console.WriteLine($"wrote {Path.Combine(work, "detections.json")}");

/// <summary>One line per training iteration, written on the trainer's thread.</summary>
internal sealed class ConsoleProgress : IProgress<TrainIterationReport>
{
    public void Report(TrainIterationReport r) => Console.WriteLine(
        $"iteration {r.Iteration}/{r.TotalIterations}: loss_cls {r.LossCls:F4} loss_bbox {r.LossBbox:F4} lr {r.LearningRate:G3}");
}
