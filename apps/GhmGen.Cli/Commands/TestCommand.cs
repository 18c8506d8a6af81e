using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.ExceptionServices;
using GhmGen.Backends;
using GhmGen.Detection;
using GhmGen.Evaluation;
using GhmGen.Imaging;
using GhmGen.Models;

namespace GhmGen.Cli.Commands;

/// <summary>
/// <c>ghm test</c>: mmdetection's <c>tools/test.py --eval bbox</c>. Detects every image of an
/// annotation file (<c>file_name</c> relative to <c>--images</c>, in file order), writes the COCO
/// results, evaluates them with <see cref="CocoEvaluator"/> and prints the summary. One background
/// thread decodes images into a queue of <c>--batch</c> slots while <c>--batch</c> workers run the
/// (thread-safe) detector, which allows as many forward passes at once. Outputs, the annotation
/// file, the model and the checkpoint are checked before any image (exit 2); an image that cannot
/// be decoded is reported, skipped and makes the exit code 1 at the end.
/// </summary>
internal static class TestCommand
{
    /// <summary>Largest <c>--batch</c>: each image in flight holds its own activation buffers.</summary>
    public const int MaxBatch = 64;

    public static Command Create()
    {
        Option<string> model = CommonOptions.Model();
        var checkpoint = new Option<string>("--checkpoint") { Description = "mmdetection .pth checkpoint of that model", Required = true };
        var ann = new Option<string>("--ann") { Description = "COCO annotation file of the images (instances_val2017.json)", Required = true };
        var images = new Option<string>("--images") { Description = "Folder the annotation file's file_name entries are relative to", Required = true };
        var outPath = new Option<string?>("--out") { Description = "Also write the COCO results to this .json file (replaced in one step at the end)" };
        var json = new Option<bool>("--json") { Description = "Also print the figures and per-category AP as one JSON object, the last line" };
        var classwise = new Option<bool>("--classwise") { Description = "Also print a table of each category's AP" };
        Option<int> batch = CommonOptions.Int("--batch", $"Images in flight at once (1 to {MaxBatch})", defaultValue: 1, min: 1, max: MaxBatch);
        Option<string> device = CommonOptions.Device();
        Option<int> threads = CommonOptions.Threads();
        Option<float> scoreThr = CommonOptions.Float("--score-thr", "Score threshold, in [0, 1) (mmdetection's test_cfg: 0.05)", defaultValue: 0.05f, min: 0f, maxExclusive: 1f);
        Option<PreprocessOptions?> scale = CommonOptions.Scale();
        var command = new Command("test", "Detect every image of a COCO annotation file and evaluate the results (mmdetection's tools/test.py --eval bbox)")
        {
            model, checkpoint, ann, images, outPath, json, classwise, batch, device, threads, scoreThr, scale,
        };
        command.SetAction(parse => Run(new Settings(
            parse.GetValue(model)!, parse.GetValue(checkpoint)!, parse.GetValue(ann)!, parse.GetValue(images)!, parse.GetValue(outPath),
            parse.GetValue(json), parse.GetValue(classwise), parse.GetValue(batch), parse.GetValue(device)!, parse.GetValue(threads),
            parse.GetValue(scoreThr), parse.GetValue(scale) ?? PreprocessOptions.Default), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private sealed record Settings(string Model, string Checkpoint, string Ann, string Images, string? Out, bool Json, bool Classwise,
        int Batch, string Device, int Threads, float ScoreThreshold, PreprocessOptions Scale);

    private static int Run(Settings s, TextWriter output, TextWriter error)
    {
        // Everything that can be checked is checked before the model is loaded.
        string? outFull = s.Out is null ? null : OutputTargets.CheckFile("--out", s.Out);
        if (!Directory.Exists(s.Images))
            throw new UsageException(File.Exists(s.Images) ? $"--images '{s.Images}' is a file; give the folder of the images" : $"--images '{s.Images}' does not exist");
        CocoGroundTruth groundTruth = CocoFiles.LoadGroundTruth("--ann", s.Ann);
        AnnotationImages list = CocoFiles.LoadImages("--ann", s.Ann);
        string[] paths = list.Images.Select(i => Path.Combine(s.Images, i.FileName)).ToArray();
        if (outFull is not null)
        {
            foreach ((string path, string what) in paths.Select(p => (p, $"image '{p}'")).Prepend((s.Checkpoint, $"--checkpoint '{s.Checkpoint}'")).Prepend((s.Ann, $"--ann '{s.Ann}'")))
                if (Path.TrimEndingDirectorySeparator(Path.GetFullPath(path)) == outFull)
                    throw new UsageException($"--out '{s.Out}' and {what} would both be '{outFull}'");
        }

        using IBackend backend = Devices.Create(s.Device, s.Threads);
        using Detector detector = DetectCommand.Load(s.Model, s.Checkpoint, backend, maxConcurrentForwards: s.Batch, preprocess: s.Scale);
        using CocoResultsFile? file = s.Out is null ? null : CocoResultsFile.Open("--out", s.Out);
        CategoryMapping mapping = CategoryMapping.Create(detector.ClassNames, groundTruth, list.CategoryIds);

        var progress = new ProgressBar("ghm test", error);
        string? note = mapping.Note(s.Ann, detector.ClassNames.Count, list.CategoryIds.Count);
        if (note is not null) progress.Report(note);

        var clock = Stopwatch.StartNew();
        Outcome outcome = DetectAll(detector, list.Images, paths, s.Batch, PostProcessOptions.Default with { ScoreThreshold = s.ScoreThreshold }, progress);
        double seconds = clock.Elapsed.TotalSeconds;
        progress.Finish(paths.Length);

        List<CocoDetection> detections = ToCocoDetections(outcome, list.Images, mapping);
        file?.Commit(detections);
        int detected = paths.Length - outcome.Skipped;
        error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ghm test: {detected} images detected in {seconds:F2} s ({(detected > 0 ? seconds / detected : 0):F3} s per image, batch {s.Batch}), {detections.Count} detections"));

        CocoEvaluation evaluation = CocoEvaluator.Evaluate(CocoResults.Create(groundTruth, detections, s.Out ?? "detections"), s.Threads);
        EvaluationReport.Write(output, evaluation, s.Classwise, s.Json);

        if (outcome.Skipped > 0) error.WriteLine($"ghm test: {outcome.Skipped} of {paths.Length} images skipped");
        if (outcome.Warned > 0) error.WriteLine($"ghm test: {outcome.Warned} of {paths.Length} images decoded with warnings");
        return outcome.Skipped + outcome.Warned > 0 ? ExitCodes.Incomplete : ExitCodes.Success;
    }

    /// <summary>
    /// The detections of <paramref name="outcome"/> as COCO results in image order, best first within
    /// an image; labels without a category in the annotation file are left out.
    /// </summary>
    internal static List<CocoDetection> ToCocoDetections(Outcome outcome, IReadOnlyList<AnnotationImage> images, CategoryMapping mapping)
    {
        var detections = new List<CocoDetection>();
        for (int i = 0; i < images.Count; i++)
        {
            if (outcome.Objects[i] is not { } objects) continue;
            foreach (DetectedObject o in objects)
            {
                if (mapping.CategoryOf(o.Label) is not { } category) continue;
                detections.Add(new CocoDetection(images[i].Id, category, new CocoBox(o.X1, o.Y1, o.X2 - o.X1, o.Y2 - o.Y1), o.Score));
            }
        }
        return detections;
    }

    /// <summary>Detections by image (null for a skipped image), and the counts of skipped and warned images.</summary>
    internal sealed record Outcome(DetectedObject[]?[] Objects, int Skipped, int Warned);

    /// <summary>
    /// The bounded producer/consumer: one thread decodes the images in order into a queue of
    /// <paramref name="batch"/> slots, <paramref name="batch"/> threads take them and detect. The
    /// first unexpected exception of any thread stops the others and is rethrown.
    /// </summary>
    internal static Outcome DetectAll(Detector detector, IReadOnlyList<AnnotationImage> images, string[] paths, int batch,
        PostProcessOptions options, ProgressBar progress)
    {
        var objects = new DetectedObject[]?[paths.Length];
        int skipped = 0, warned = 0, done = 0;
        using var stop = new CancellationTokenSource();
        using var queue = new System.Collections.Concurrent.BlockingCollection<(int Index, RgbImage Image)>(boundedCapacity: batch);
        var failures = new Exception?[batch + 1];

        void Guarded(int slot, Action work)
        {
            try
            {
                work();
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Another thread failed first; its exception is the one reported.
            }
            catch (Exception e)
            {
                failures[slot] = e;
                stop.Cancel();
            }
        }

        var decoder = new Thread(() => Guarded(batch, () =>
        {
            try
            {
                for (int i = 0; i < paths.Length; i++)
                {
                    DecodedImage decoded;
                    try
                    {
                        decoded = ImageDecoder.DecodeWithWarnings(paths[i]);
                    }
                    catch (Exception e) when (e is InvalidDataException or IOException)
                    {
                        progress.Report($"skipped image id {images[i].Id} '{paths[i]}': {e.Message}");
                        Interlocked.Increment(ref skipped);
                        progress.Update(Interlocked.Increment(ref done), paths.Length, images[i].FileName);
                        continue;
                    }
                    foreach (string warning in decoded.Warnings) progress.Report($"warning: {warning}");
                    if (decoded.Warnings.Count > 0) Interlocked.Increment(ref warned);
                    queue.Add((i, decoded.Image), stop.Token);
                }
            }
            finally
            {
                queue.CompleteAdding();
            }
        }))
        { IsBackground = true, Name = "ghm test decoder" };

        var workers = new Thread[batch];
        for (int w = 0; w < batch; w++)
        {
            int slot = w;
            workers[w] = new Thread(() => Guarded(slot, () =>
            {
                foreach ((int index, RgbImage image) in queue.GetConsumingEnumerable(stop.Token))
                {
                    objects[index] = detector.Detect(image, options).Objects;
                    progress.Update(Interlocked.Increment(ref done), paths.Length, images[index].FileName);
                }
            }))
            { IsBackground = true, Name = $"ghm test worker {w}" };
        }
        progress.Update(0, paths.Length, "");
        decoder.Start();
        foreach (Thread t in workers) t.Start();
        decoder.Join();
        foreach (Thread t in workers) t.Join();
        if (failures.FirstOrDefault(f => f is not null) is { } failure) ExceptionDispatchInfo.Throw(failure);
        return new Outcome(objects, skipped, warned);
    }
}
