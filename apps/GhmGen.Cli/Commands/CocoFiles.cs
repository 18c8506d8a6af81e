using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>
/// Reads the COCO files of <c>ghm eval</c> and <c>ghm test</c>, turning every problem with one
/// (missing, unreadable, malformed, a result of an unknown image or category) into a
/// <see cref="UsageException"/>: exit code 2, the message naming the file and, where there is
/// one, the offending entry.
/// </summary>
internal static class CocoFiles
{
    /// <summary>The ground truth of <paramref name="option"/> (e.g. <c>--ann</c>) <paramref name="path"/>.</summary>
    public static CocoGroundTruth LoadGroundTruth(string option, string path) =>
        Guard(option, path, () => CocoGroundTruth.Load(path));

    /// <summary>The results file <paramref name="path"/> of <paramref name="option"/>, checked against <paramref name="groundTruth"/>.</summary>
    public static CocoResults LoadResults(string option, string path, CocoGroundTruth groundTruth) =>
        Guard(option, path, () => CocoResults.Load(path, groundTruth));

    /// <summary>The image list (file names) of an annotation file that <see cref="LoadGroundTruth"/> accepted.</summary>
    public static AnnotationImages LoadImages(string option, string path) =>
        Guard(option, path, () => AnnotationImages.Load(path));

    private static T Guard<T>(string option, string path, Func<T> load)
    {
        if (string.IsNullOrWhiteSpace(path) || path.Contains('\0'))
            throw new UsageException($"{option} needs a file name, got '{path.Replace("\0", "\\0")}'");
        if (Directory.Exists(path))
            throw new UsageException($"{option} '{path}' is a folder; give a COCO .json file");
        try
        {
            return load();
        }
        catch (CocoFormatException e)
        {
            throw new UsageException(e.Message, e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new UsageException($"{option} '{path}' does not exist", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new UsageException($"{option} '{path}' cannot be read: permission denied", e);
        }
        catch (IOException e)
        {
            throw new UsageException($"{option} '{path}' cannot be read: {e.Message}", e);
        }
    }
}
