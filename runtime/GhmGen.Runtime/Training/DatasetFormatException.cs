namespace GhmGen.Training;

/// <summary>A training annotation file is malformed, truncated, too large or not in COCO format.</summary>
public sealed class DatasetFormatException : Exception
{
    /// <summary>
    /// Creates the exception; the message reads <c>FILE: JSONPATH: PROBLEM</c>
    /// (for example <c>train.json: annotations[17].bbox: expected 4 numbers</c>), or
    /// <c>FILE: PROBLEM</c> when the problem concerns the whole file.
    /// </summary>
    public DatasetFormatException(string fileName, string jsonPath, string problem, Exception? inner = null)
        : base(jsonPath.Length == 0 ? $"{fileName}: {problem}" : $"{fileName}: {jsonPath}: {problem}", inner)
    {
        FileName = fileName;
        JsonPath = jsonPath;
        Problem = problem;
    }

    /// <summary>The file (or display name) that was being read.</summary>
    public string FileName { get; }

    /// <summary>Where in the JSON the problem is, e.g. <c>annotations[17].bbox</c>; empty for the whole file.</summary>
    public string JsonPath { get; }

    /// <summary>What is wrong, without the file name and path.</summary>
    public string Problem { get; }
}
