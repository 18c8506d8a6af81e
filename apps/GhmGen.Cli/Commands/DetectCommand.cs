using System.CommandLine;
using System.Text.Json;
using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Models;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm detect</c>: images in, COCO-style detections out.</summary>
internal static class DetectCommand
{
    private static readonly string[] ImageExtensions = [".jpg", ".jpeg", ".png"];

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model name (see ghm models)", Required = true };
        var checkpoint = new Option<string>("--checkpoint") { Description = "mmdetection .pth checkpoint of that model", Required = true };
        var scoreThr = new Option<float>("--score-thr") { Description = "Score threshold", DefaultValueFactory = _ => 0.05f };
        var outPath = new Option<string?>("--out") { Description = "Write the JSON results here instead of standard output" };
        var draw = new Option<string?>("--draw") { Description = "Write each image with labelled boxes as PNG into this folder" };
        var saveRaw = new Option<string?>("--save-raw") { Description = "Write each image's ten head outputs as .npy files into this folder" };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        device.AcceptOnlyFromAmong(Devices.Names);
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all cores)", DefaultValueFactory = _ => 0 };
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
        if (!(scoreThr >= 0 && scoreThr < 1))
        {
            error.WriteLine($"ghm detect: --score-thr {scoreThr} must be in [0, 1)");
            return 2;
        }
        List<string> images;
        Detector detector;
        IBackend backend;
        try
        {
            images = ExpandInputs(inputs);
            backend = Devices.Create(deviceName, threads);
            detector = Detector.Load(modelName, checkpointPath, backend);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or CheckpointFormatException or CheckpointMismatchException or IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"ghm detect: {e.Message}");
            return 2;
        }

        using (backend)
        using (detector)
        {
            var options = PostProcessOptions.Default with { ScoreThreshold = scoreThr };
            var results = new List<(string Image, DetectedObject Object)>();
            int failed = 0;
            bool progress = !Console.IsErrorRedirected && ReferenceEquals(error, Console.Error);
            for (int i = 0; i < images.Count; i++)
            {
                string path = images[i];
                if (progress) error.Write($"\r{Bar(i, images.Count)} {i}/{images.Count} {Path.GetFileName(path),-40}");
                try
                {
                    RgbImage image = ImageDecoder.Decode(path);
                    DetectionResult result = detector.Detect(image, options, keepRaw: rawDir is not null);
                    foreach (DetectedObject o in result.Objects) results.Add((Path.GetFileName(path), o));
                    if (rawDir is not null) SaveRaw(rawDir, path, result.Raw!);
                    if (drawDir is not null) BoxDrawing.Save(Path.Combine(drawDir, Path.GetFileNameWithoutExtension(path) + ".png"), image, result.Objects, detector.ClassNames);
                }
                catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
                {
                    if (progress) error.WriteLine();
                    error.WriteLine($"ghm detect: skipped '{path}': {e.Message}");
                    failed++;
                }
            }
            if (progress) error.WriteLine($"\r{Bar(images.Count, images.Count)} {images.Count}/{images.Count} done{new string(' ', 40)}");

            string json = ToJson(results, detector.ClassNames);
            if (outPath is null) output.WriteLine(json);
            else
            {
                string temp = outPath + ".tmp-" + Guid.NewGuid().ToString("N");
                File.WriteAllText(temp, json + "\n");
                File.Move(temp, outPath, overwrite: true);
            }
            if (failed > 0) error.WriteLine($"ghm detect: {failed} of {images.Count} images could not be read");
            return failed > 0 ? 1 : 0;
        }
    }

    private static string Bar(int done, int total)
    {
        int filled = total == 0 ? 20 : done * 20 / total;
        return "[" + new string('#', filled) + new string('.', 20 - filled) + "]";
    }

    /// <summary>Files as given; folders expand to their JPEG and PNG files, sorted by name.</summary>
    private static List<string> ExpandInputs(string[] inputs)
    {
        var images = new List<string>();
        foreach (string input in inputs)
        {
            if (Directory.Exists(input))
                images.AddRange(Directory.GetFiles(input)
                    .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                    .OrderBy(f => f, StringComparer.Ordinal));
            else images.Add(input);
        }
        if (images.Count == 0) throw new ArgumentException("no images found in " + string.Join(", ", inputs));
        return images;
    }

    private static void SaveRaw(string dir, string imagePath, HeadOutputs raw)
    {
        string folder = Path.Combine(dir, Path.GetFileNameWithoutExtension(imagePath));
        Directory.CreateDirectory(folder);
        for (int i = 0; i < raw.Names.Length; i++)
        {
            (int c, int h, int w) = raw.Shapes[i];
            NpyWriter.Write(Path.Combine(folder, raw.Names[i] + ".npy"), raw.Values[i], 1, c, h, w);
        }
    }

    private static string ToJson(List<(string Image, DetectedObject Object)> results, IReadOnlyList<string> classNames)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartArray();
            foreach ((string image, DetectedObject o) in results)
            {
                CocoResult coco = CocoCategories.ToCocoResult(o);
                writer.WriteStartObject();
                writer.WriteString("image", image);
                writer.WriteStartArray("bbox");
                writer.WriteNumberValue(Math.Round(coco.X, 3));
                writer.WriteNumberValue(Math.Round(coco.Y, 3));
                writer.WriteNumberValue(Math.Round(coco.Width, 3));
                writer.WriteNumberValue(Math.Round(coco.Height, 3));
                writer.WriteEndArray();
                writer.WriteNumber("score", Math.Round(o.Score, 5));
                writer.WriteNumber("category_id", coco.CategoryId);
                writer.WriteString("label", classNames[o.Label]);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}
