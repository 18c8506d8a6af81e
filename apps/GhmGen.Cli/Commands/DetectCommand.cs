using System.CommandLine;
using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Models;

namespace GhmGen.Cli.Commands;

/// <summary>
/// <c>ghm detect</c>: images in, COCO-style detections out. Inputs, model, checkpoint and output
/// paths are checked before the first image (exit 2); a bad image is reported and skipped, and an
/// output file that cannot be written is reported, both making the exit code 1 at the end.
/// </summary>
internal static class DetectCommand
{
    public static Command Create()
    {
        Option<string> model = CommonOptions.Model();
        var checkpoint = new Option<string>("--checkpoint") { Description = "mmdetection .pth checkpoint of that model", Required = true };
        Option<float> scoreThr = CommonOptions.Float("--score-thr", "Score threshold, in [0, 1)", defaultValue: 0.05f, min: 0f, maxExclusive: 1f);
        var outPath = new Option<string?>("--out")
        {
            Description = "Write the results to this file instead of standard output: a .jsonl file gets one JSON object per line, " +
                "written as images are done; any other file a JSON array, replaced in one step at the end",
        };
        var draw = new Option<string?>("--draw")
        {
            Description = "Write each image with labelled boxes into this folder as NAME.png (NAME as in the results, e.g. x.jpg.png); created if its parent exists",
        };
        var saveRaw = new Option<string?>("--save-raw")
        {
            Description = "Write each image's ten head outputs as .npy files into the folder NAME in this folder; created if its parent exists",
        };
        Option<string> device = CommonOptions.Device();
        Option<int> threads = CommonOptions.Threads();
        var inputs = new Argument<string[]>("images") { Description = "Image files or folders (JPEG, PNG)", Arity = ArgumentArity.OneOrMore };
        var command = new Command("detect", "Detect objects in images with a RetinaNet-GHM checkpoint")
        {
            model, checkpoint, scoreThr, outPath, draw, saveRaw, device, threads, inputs,
        };
        command.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(checkpoint)!, parse.GetValue(scoreThr), parse.GetValue(outPath),
            parse.GetValue(draw), parse.GetValue(saveRaw), parse.GetValue(device)!, parse.GetValue(threads),
            parse.GetValue(inputs)!, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(string modelName, string checkpointPath, float scoreThr, string? outPath, string? drawDir, string? rawDir,
        string deviceName, int threads, string[] inputs, TextWriter output, TextWriter error)
    {
        // Everything that can be checked is checked before the model is loaded.
        IReadOnlyList<InputImage> images = InputImages.Expand(inputs);
        DetectOutputs outputs = DetectOutputs.Check(outPath, drawDir, rawDir, images);

        using IBackend backend = Devices.Create(deviceName, threads);
        using Detector detector = Load(modelName, checkpointPath, backend);
        using DetectionsWriter results = DetectionsWriter.Open(outPath, output, detector.ClassNames);
        outputs.CreateFolders();

        var options = PostProcessOptions.Default with { ScoreThreshold = scoreThr };
        int skipped = 0, warned = 0, unwritten = 0;
        bool progress = !Console.IsErrorRedirected && ReferenceEquals(error, Console.Error);
        void Report(string message)
        {
            if (progress) error.WriteLine();
            error.WriteLine($"ghm detect: {message}");
        }

        // Images are decoded one ahead on another thread while the detector runs (each is still
        // reported, detected and written in order on this one).
        using var decodedImages = new DecodeAhead(images);
        for (int i = 0; i < images.Count; i++)
        {
            InputImage image = images[i];
            if (progress) error.Write($"\r{ProgressBar.Bar(i, images.Count)} {i}/{images.Count} {image.Name,-40}");
            (DecodedImage? next, Exception? failure) = decodedImages.Take(i);
            if (next is not { } decoded)
            {
                Report($"skipped '{image.Path}': {failure!.Message}");
                skipped++;
                continue;
            }
            foreach (string warning in decoded.Warnings) Report($"warning: {warning}");
            if (decoded.Warnings.Count > 0) warned++;

            DetectionResult result = detector.Detect(decoded.Image, options, keepRaw: outputs.SavesRaw);
            results.Add(image.Name, result.Objects);
            if (outputs.SavesRaw && !TryWrite(() => SaveRaw(outputs.RawFolder(image), result.Raw!), $"the raw outputs of '{image.Path}'", outputs.RawFolder(image), Report))
                unwritten++;
            if (outputs.Draws && !TryWrite(() => BoxDrawing.Save(outputs.DrawingPath(image), decoded.Image, result.Objects, detector.ClassNames),
                    $"the drawing of '{image.Path}'", outputs.DrawingPath(image), Report))
                unwritten++;
        }
        if (progress) error.WriteLine($"\r{ProgressBar.Bar(images.Count, images.Count)} {images.Count}/{images.Count} done{new string(' ', 40)}");
        results.Complete();

        if (skipped > 0) error.WriteLine($"ghm detect: {skipped} of {images.Count} images skipped");
        if (warned > 0) error.WriteLine($"ghm detect: {warned} of {images.Count} images decoded with warnings");
        if (unwritten > 0) error.WriteLine($"ghm detect: {unwritten} drawings or raw outputs could not be written");
        return skipped + warned + unwritten > 0 ? ExitCodes.Incomplete : ExitCodes.Success;
    }

    /// <summary>
    /// Loads the checkpoint into the model (as <see cref="Detector.Load"/> does, with
    /// <paramref name="maxConcurrentForwards"/> and <paramref name="preprocess"/> passed on); a file
    /// that is not a checkpoint, or one of another model, is a <see cref="UsageException"/> with a short report.
    /// </summary>
    internal static Detector Load(string modelName, string checkpointPath, IBackend backend, int maxConcurrentForwards = 2,
        PreprocessOptions? preprocess = null)
    {
        try
        {
            return Detector.Load(modelName, checkpointPath, backend, preprocess, maxConcurrentForwards);
        }
        catch (CheckpointFormatException e)
        {
            throw new UsageException(e.Message, e);
        }
        catch (CheckpointMismatchException e)
        {
            throw new UsageException(MismatchMessage(e, checkpointPath), e);
        }
    }

    /// <summary>
    /// The counts and first keys of each kind (the exception's message), then which registered
    /// model the file is for, if any: a checkpoint of another model differs in hundreds of keys.
    /// </summary>
    internal static string MismatchMessage(CheckpointMismatchException e, string checkpointPath)
    {
        string verdict;
        try
        {
            using TorchCheckpoint checkpoint = TorchCheckpoint.Read(checkpointPath);
            CheckpointMatch? match = CheckpointMatcher.Match(checkpoint.Tensors, ModelRegistry.All.Select(m => StateLayout.From(m.Create())));
            verdict = match switch
            {
                { IsExact: true } => $"the file is a checkpoint of {match.Model}: use --model {match.Model}",
                null => "there are no registered models to compare it with",
                _ => $"the file matches no registered model (the closest, {match.Model}, differs in {match.Differences} keys)",
            };
        }
        catch (CheckpointFormatException)
        {
            verdict = "the file could not be read again to compare it with the registered models";
        }
        return string.Join(Environment.NewLine, e.Message, "  " + verdict, $"  ('ghm checkpoint inspect {checkpointPath}' lists every key)");
    }

    /// <summary>
    /// Decodes the images in order on a background thread, at most two ahead of the caller. A file
    /// that is not a readable image comes back as its exception (InvalidDataException, IOException);
    /// any other exception of the decoder is rethrown by <see cref="Take"/>. Disposing stops the thread.
    /// </summary>
    private sealed class DecodeAhead : IDisposable
    {
        private readonly System.Collections.Concurrent.BlockingCollection<(DecodedImage? Image, Exception? Failure)> _queue = new(boundedCapacity: 2);
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        private Exception? _crash;

        public DecodeAhead(IReadOnlyList<InputImage> images)
        {
            _thread = new Thread(() =>
            {
                try
                {
                    foreach (InputImage image in images)
                    {
                        (DecodedImage?, Exception?) item;
                        try
                        {
                            item = (ImageDecoder.DecodeWithWarnings(image.Path), null);
                        }
                        catch (Exception e) when (e is InvalidDataException or IOException)
                        {
                            item = (null, e);
                        }
                        _queue.Add(item, _stop.Token);
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    // Disposed before every image was taken.
                }
                catch (Exception e)
                {
                    _crash = e;
                }
                finally
                {
                    _queue.CompleteAdding();
                }
            })
            { IsBackground = true, Name = "ghm detect decoder" };
            _thread.Start();
        }

        /// <summary>Image <paramref name="index"/> (taken in order from 0), or why it could not be decoded.</summary>
        public (DecodedImage? Image, Exception? Failure) Take(int index)
        {
            if (_queue.TryTake(out var item, Timeout.Infinite)) return item;
            _thread.Join();
            if (_crash is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_crash);
            throw new InvalidOperationException($"the decoder stopped before image {index}");
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            _queue.Dispose();
            _stop.Dispose();
        }
    }

    private static bool TryWrite(Action write, string what, string path, Action<string> report)
    {
        try
        {
            write();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            report($"could not write {what} to '{path}': {OutputTargets.Reason(e, path)}");
            return false;
        }
    }

    private static void SaveRaw(string folder, HeadOutputs raw)
    {
        Directory.CreateDirectory(folder);
        for (int i = 0; i < raw.Names.Length; i++)
        {
            (int c, int h, int w) = raw.Shapes[i];
            NpyWriter.Write(Path.Combine(folder, raw.Names[i] + ".npy"), raw.Values[i], 1, c, h, w);
        }
    }
}
