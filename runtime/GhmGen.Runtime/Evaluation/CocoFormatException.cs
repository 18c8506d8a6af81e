namespace GhmGen.Evaluation;

/// <summary>
/// A COCO ground-truth or results file is malformed, truncated, too large, or does not fit the
/// ground truth it is evaluated against. The message starts with <c>FILE: </c> and names the
/// offending section, entry index (0-based, as in the JSON array) and field where there is one.
/// </summary>
public sealed class CocoFormatException : Exception
{
    /// <summary>Creates the exception; the message is <c>FILE: PROBLEM</c>.</summary>
    public CocoFormatException(string fileName, string problem, Exception? inner = null)
        : base($"{fileName}: {problem}", inner)
    {
        FileName = fileName;
        Problem = problem;
    }

    /// <summary>The file (or display name) that was being read.</summary>
    public string FileName { get; }

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}
