namespace GhmGen.Checkpoints;

/// <summary>A checkpoint file is malformed, truncated, hostile or not a PyTorch checkpoint.</summary>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>Creates the exception; the message starts with <c>checkpoint 'FILE':</c>.</summary>
    public CheckpointFormatException(string fileName, string problem, Exception? inner = null)
        : base($"checkpoint '{fileName}': {problem}", inner)
    {
        FileName = fileName;
        Problem = problem;
    }

    /// <summary>The file (or display name) that was being read.</summary>
    public string FileName { get; }

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}
