// The asynchronous and many-image forms of Detector.Detect. Each image runs on the thread pool
// through the synchronous Detect (the backend's work is CPU or device bound, with no I/O to
// overlap); what these add is a bounded window of images in flight, results in input order,
// cancellation and progress. Tests: tests/GhmGen.Models.Tests/DetectorAsyncTests.cs.
using System.Runtime.CompilerServices;
using GhmGen.Detection;
using GhmGen.Imaging;

namespace GhmGen.Models;

/// <summary>One image of <see cref="Detector.DetectFilesAsync"/>: its detections, or why it was skipped.</summary>
/// <param name="Index">Position of the image in the list given.</param>
/// <param name="Path">The image file, as given.</param>
/// <param name="Result">The detections; null when the image was skipped.</param>
/// <param name="Warnings">Problems the decoder worked around (e.g. a truncated JPEG), one sentence each naming the file; empty for a clean file.</param>
/// <param name="Error">Why the image was skipped (missing, unreadable or corrupt file), naming the file; null when it was detected.</param>
public sealed record ImageDetection(int Index, string Path, DetectionResult? Result, IReadOnlyList<string> Warnings, string? Error)
{
    /// <summary>Whether the image could not be read or decoded (then <see cref="Result"/> is null and <see cref="Error"/> says why).</summary>
    public bool Skipped => Result is null;
}

/// <summary>Where <see cref="Detector.DetectFilesAsync"/> stands: reported once per image, in input order.</summary>
/// <param name="Done">Images finished so far (detected or skipped), including this one: 1 to <paramref name="Total"/>.</param>
/// <param name="Total">Images in the list.</param>
/// <param name="Skipped">Images skipped so far.</param>
/// <param name="Path">The image just finished.</param>
public sealed record DetectionProgress(int Done, int Total, int Skipped, string Path);

public sealed partial class Detector
{
    /// <summary>
    /// Detects one image on the thread pool: <see cref="Detect(RgbImage, PostProcessOptions?, bool, CancellationToken)"/>
    /// without blocking the caller (a UI or request thread). Thread-safe; any number of calls may be
    /// pending at once, and at most <see cref="MaxConcurrentForwards"/> of them run a forward pass.
    /// </summary>
    /// <param name="image">The image, 8-bit RGB; it must not change until the task completes.</param>
    /// <param name="options">Score threshold, top-k and NMS (default: mmdetection's <c>test_cfg</c>).</param>
    /// <param name="keepRaw">Whether the result keeps the network outputs.</param>
    /// <param name="cancellationToken">Cancels the call until its forward pass starts (the task is then cancelled); a started pass runs to its end.</param>
    /// <returns>A task with the detections; it faults with <see cref="ObjectDisposedException"/> once the detector is disposed.</returns>
    public Task<DetectionResult> DetectAsync(RgbImage image, PostProcessOptions? options = null, bool keepRaw = false,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Task.Run(() => Detect(image, options, keepRaw, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Decodes and detects many image files (a folder, a dataset's images), yielding one
    /// <see cref="ImageDetection"/> per file in the order of <paramref name="imagePaths"/>. Up to
    /// <paramref name="maxInFlight"/> images are decoded and detected at once on the thread pool
    /// while the caller consumes earlier ones (decoding overlaps the forward passes, which the
    /// detector still limits to <see cref="MaxConcurrentForwards"/>), so memory stays bounded by that
    /// many decoded images and results. A file that is missing, unreadable or corrupt is yielded as
    /// skipped (<see cref="ImageDetection.Error"/>) and the run goes on; any other exception ends the
    /// enumeration and is thrown from it.
    /// </summary>
    /// <param name="imagePaths">Image files (JPEG, PNG, BMP, GIF, ...); the list must not change during the run.</param>
    /// <param name="options">Score threshold, top-k and NMS (default: mmdetection's <c>test_cfg</c>).</param>
    /// <param name="maxInFlight">Images being decoded or detected at once; 0 for twice <see cref="MaxConcurrentForwards"/>.</param>
    /// <param name="progress">Told after each image, on the enumerating thread just before the image is yielded (so in input order, never concurrently).</param>
    /// <param name="cancellationToken">
    /// Stops the run: the enumeration throws <see cref="OperationCanceledException"/> instead of
    /// yielding the next image, images not yet started are not started, and those in flight finish
    /// or stop before the exception leaves the enumeration. Ending the enumeration early
    /// (<c>break</c>, disposing the enumerator) stops the run in the same way.
    /// </param>
    /// <returns>The images' detections, in input order. Enumerate it once.</returns>
    /// <example>
    /// <code>
    /// await foreach (ImageDetection d in detector.DetectFilesAsync(Directory.GetFiles("photos"), cancellationToken: token))
    ///     Console.WriteLine(d.Skipped ? d.Error : $"{d.Path}: {d.Result!.Objects.Length} objects");
    /// </code>
    /// </example>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxInFlight"/> is negative.</exception>
    public IAsyncEnumerable<ImageDetection> DetectFilesAsync(IReadOnlyList<string> imagePaths, PostProcessOptions? options = null,
        int maxInFlight = 0, IProgress<DetectionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentOutOfRangeException.ThrowIfNegative(maxInFlight);
        return DetectFilesCore(imagePaths, options, maxInFlight == 0 ? 2 * MaxConcurrentForwards : maxInFlight, progress, cancellationToken);
    }

    private async IAsyncEnumerable<ImageDetection> DetectFilesCore(IReadOnlyList<string> paths, PostProcessOptions? options, int window,
        IProgress<DetectionProgress>? progress, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // One source for the caller's token and for an early end of the enumeration (break, an exception).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pending = new Queue<Task<ImageDetection>>(window);
        int next = 0, done = 0, skipped = 0;
        try
        {
            while (next < paths.Count || pending.Count > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                while (next < paths.Count && pending.Count < window)
                {
                    int index = next++;
                    pending.Enqueue(Task.Run(() => DetectFile(index, paths[index], options, stop.Token), stop.Token));
                }
                ImageDetection item = await pending.Dequeue().ConfigureAwait(false);
                done++;
                if (item.Skipped) skipped++;
                progress?.Report(new DetectionProgress(done, paths.Count, skipped, item.Path));
                yield return item;
            }
        }
        finally
        {
            // Nothing of this run goes on after the enumeration ends: the images in flight finish
            // (or see the cancellation) before the caller may dispose the detector.
            stop.Cancel();
            foreach (Task<ImageDetection> task in pending)
            {
                try
                {
                    await task.ConfigureAwait(false);
                }
                catch
                {
                    // Ended early or cancelled: their results and errors are not wanted.
                }
            }
        }
    }

    private ImageDetection DetectFile(int index, string path, PostProcessOptions? options, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        DecodedImage decoded;
        try
        {
            decoded = ImageDecoder.DecodeWithWarnings(path);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return new ImageDetection(index, path, null, [], $"'{path}': {e.Message}");
        }
        DetectionResult result = Detect(decoded.Image, options, keepRaw: false, cancellationToken);
        return new ImageDetection(index, path, result, decoded.Warnings, null);
    }
}
