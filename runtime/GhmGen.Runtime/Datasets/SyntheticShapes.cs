// Writes a COCO-format detection dataset of synthetic shapes (circles, squares, triangles, stars)
// on textured noisy backgrounds, deterministically from a seed. Layout under the chosen folder:
//   train/000001.png ...                  val/000001.png ...
//   annotations/instances_train.json      annotations/instances_val.json
// Images are written first and each json last, through a temporary file renamed into place; the
// split's old json is deleted before any image is written, so an interrupted run never leaves a
// json that names missing or stale images. Stale images beyond the new count are left alone.
// Tests: tests/GhmGen.Runtime.Tests/Datasets/SyntheticShapesTests.cs.
using System.Runtime.ExceptionServices;
using StbImageWriteSharp;

namespace GhmGen.Datasets;

/// <summary>Generates the synthetic shapes detection dataset (COCO json plus PNG images) used by tests, demos and benchmarks.</summary>
/// <remarks>
/// Each object is annotated by its visible pixels: <c>bbox</c> is the tight box of the pixels the
/// shape still shows after later shapes are drawn over it (COCO's bbox of the visible
/// segmentation, in pixel-edge coordinates: a box [x, y, w, h] covers columns x .. x + w - 1),
/// <c>area</c> is the count of those pixels, and <c>iscrowd</c> is 0. Shapes are drawn without
/// anti-aliasing and always lie wholly inside the image. The same seed and options give
/// byte-identical files whatever the degree of parallelism.
/// </remarks>
/// <example>
/// <code>
/// SyntheticShapesSummary set = SyntheticShapes.Write("data/shapes", new SyntheticShapesOptions { Seed = 7 });
/// Console.WriteLine($"{set.Train.Images} train images, {set.Train.Objects} objects in {set.Train.AnnotationFile}");
/// </code>
/// </example>
public static class SyntheticShapes
{
    /// <summary>Name of the train split and of its image folder.</summary>
    public const string TrainSplit = "train";

    /// <summary>Name of the val split and of its image folder.</summary>
    public const string ValSplit = "val";

    /// <summary>The annotation file of <paramref name="split"/> relative to the dataset folder: <c>annotations/instances_{split}.json</c>.</summary>
    public static string AnnotationPath(string split) => Path.Combine("annotations", $"instances_{split}.json");

    /// <summary>
    /// Writes the train and val splits described by <paramref name="options"/> into <paramref name="directory"/>
    /// (created if needed; files of an earlier run are overwritten).
    /// </summary>
    /// <param name="directory">The dataset folder.</param>
    /// <param name="options">What to generate; see <see cref="SyntheticShapesOptions"/>.</param>
    /// <param name="progress">Told the number of images written so far (train then val), once per image, from one thread at a time.</param>
    /// <param name="cancellationToken">Stops the run after the images being rendered; no json is then written for the unfinished split.</param>
    /// <returns>The files written and the object counts per category and COCO size range.</returns>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static SyntheticShapesSummary Write(string directory, SyntheticShapesOptions options,
        IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(Path.Combine(root, "annotations"));
        foreach (string split in (string[])[TrainSplit, ValSplit])
            File.Delete(Path.Combine(root, AnnotationPath(split)));

        var counter = new ProgressCounter(progress);
        SyntheticSplitSummary train = WriteSplit(root, TrainSplit, 0, options.TrainImages, options, counter, cancellationToken);
        SyntheticSplitSummary val = WriteSplit(root, ValSplit, 1, options.ValImages, options, counter, cancellationToken);
        return new SyntheticShapesSummary(root, train, val);
    }

    /// <summary>
    /// As <see cref="Write(string, SyntheticShapesOptions, IProgress{int}?, CancellationToken)"/>,
    /// reporting a <see cref="SyntheticShapesProgress"/> (images written, the total, the split)
    /// once per image, from one thread at a time, with a count that only grows.
    /// </summary>
    /// <param name="directory">The dataset folder.</param>
    /// <param name="options">What to generate; see <see cref="SyntheticShapesOptions"/>.</param>
    /// <param name="progress">Told after each image is written.</param>
    /// <param name="cancellationToken">Stops the run after the images being rendered; no json is then written for the unfinished split.</param>
    /// <returns>The files written and the object counts per category and COCO size range.</returns>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static SyntheticShapesSummary Write(string directory, SyntheticShapesOptions options,
        IProgress<SyntheticShapesProgress> progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(progress);
        return Write(directory, options, new SplitProgress(progress, options.TrainImages, options.TrainImages + options.ValImages), cancellationToken);
    }

    // The running count of the other overload as a record: the first TrainImages are the train split.
    private sealed class SplitProgress(IProgress<SyntheticShapesProgress> progress, int trainImages, int total) : IProgress<int>
    {
        public void Report(int value) => progress.Report(new SyntheticShapesProgress(value, total, value <= trainImages ? TrainSplit : ValSplit));
    }

    private static SyntheticSplitSummary WriteSplit(string root, string split, int splitIndex, int count,
        SyntheticShapesOptions options, ProgressCounter counter, CancellationToken cancellationToken)
    {
        string imageDirectory = Path.Combine(root, split);
        Directory.CreateDirectory(imageDirectory);
        var images = new SyntheticImage[count];
        var fileNames = new string[count];
        var parallel = new ParallelOptions
        {
            MaxDegreeOfParallelism = options.MaxDegreeOfParallelism,
            CancellationToken = cancellationToken,
        };
        try
        {
            Parallel.For(0, count, parallel, i =>
            {
                SyntheticImage image = SyntheticImageRenderer.Render(options, splitIndex, i);
                string fileName = $"{i + 1:D6}.png";
                WritePng(Path.Combine(imageDirectory, fileName), image);
                // Keep the objects, drop the pixels: a split's pixels need not all be held at once.
                images[i] = image with { Rgb = [] };
                fileNames[i] = fileName;
                counter.Advance();
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        cancellationToken.ThrowIfCancellationRequested();

        string annotationFile = Path.Combine(root, AnnotationPath(split));
        string temporary = annotationFile + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            CocoAnnotationWriter.Write(stream, split, options, images, fileNames);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, annotationFile, overwrite: true);
        return new SyntheticSplitSummary(split, annotationFile, imageDirectory, count, CountObjects(options, images));
    }

    private static void WritePng(string path, SyntheticImage image)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        new ImageWriter().WritePng(image.Rgb, image.Width, image.Height, ColorComponents.RedGreenBlue, stream);
    }

    private static SyntheticCategoryCount[] CountObjects(SyntheticShapesOptions options, SyntheticImage[] images)
    {
        var counts = new int[options.Classes.Count, 3];
        foreach (SyntheticImage image in images)
            foreach (SyntheticObject o in image.Objects)
                counts[o.ClassIndex, o.Area < SyntheticSizeMix.MediumArea ? 0 : o.Area < SyntheticSizeMix.LargeArea ? 1 : 2]++;
        var categories = new SyntheticCategoryCount[options.Classes.Count];
        for (int k = 0; k < categories.Length; k++)
            categories[k] = new SyntheticCategoryCount(k + 1, SyntheticShapeKinds.Name(options.Classes[k]), counts[k, 0], counts[k, 1], counts[k, 2]);
        return categories;
    }

    // Serialises progress reports from the rendering threads, so the count a reporter sees only grows.
    private sealed class ProgressCounter(IProgress<int>? progress)
    {
        private readonly Lock _gate = new();
        private int _done;

        public void Advance()
        {
            lock (_gate)
            {
                _done++;
                progress?.Report(_done);
            }
        }
    }
}
