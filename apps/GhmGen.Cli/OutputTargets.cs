namespace GhmGen.Cli;

/// <summary>
/// Checks where a command will write before it does any work, so a typo in an output path costs
/// nothing: each check throws <see cref="UsageException"/> naming the option and the problem.
/// </summary>
internal static class OutputTargets
{
    /// <summary>
    /// <paramref name="path"/> (given as <paramref name="option"/>) can become a file: it is not a
    /// folder and the folder it goes in exists. Returns the full path.
    /// </summary>
    public static string CheckFile(string option, string path)
    {
        string full = FullPath(option, path);
        if (Directory.Exists(full))
            throw new UsageException($"{option} '{path}' is a folder; give a file name");
        string parent = Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(parent))
            throw new UsageException(File.Exists(parent)
                ? $"{option} '{path}': '{parent}' is a file, not a folder"
                : $"{option} '{path}': the folder '{parent}' does not exist");
        return full;
    }

    /// <summary>
    /// <paramref name="path"/> (given as <paramref name="option"/>) is a folder, or can be created
    /// as one: it is not a file and its parent folder exists (only the last level is created, so a
    /// mistyped parent is caught). Returns the full path.
    /// </summary>
    public static string CheckFolder(string option, string path)
    {
        string full = FullPath(option, path);
        if (Directory.Exists(full)) return full;
        if (File.Exists(full))
            throw new UsageException($"{option} '{path}' is a file; give a folder");
        string parent = Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(parent))
            throw new UsageException($"{option} '{path}': its parent folder '{parent}' does not exist (only the last level is created)");
        return full;
    }

    /// <summary>Why <paramref name="path"/> could not be written, in words (for messages).</summary>
    public static string Reason(Exception e, string path) => e switch
    {
        _ when Directory.Exists(path) => "a folder of that name is in the way",
        UnauthorizedAccessException => "permission denied",
        DirectoryNotFoundException => "its folder does not exist",
        PathTooLongException => "the path is too long",
        _ => e.Message,
    };

    /// <summary>
    /// Writes <paramref name="path"/> (its folder is created) through a temporary file beside it that
    /// <paramref name="write"/> fills and that is then renamed into place, so a failure leaves
    /// neither a half-written file nor the temporary one. Rethrows what failed.
    /// </summary>
    public static void WriteReplacing(string path, Action<Stream> write)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        string temp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write)) write(stream);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            DeleteQuietly(temp);
            throw;
        }
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path); // no-op when it was never created
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The failure being reported is the one that matters.
        }
    }

    private static string FullPath(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new UsageException($"{option} needs a path, got '{path}'");
        if (path.Contains('\0'))
            throw new UsageException($"{option} '{path.Replace("\0", "\\0")}' contains a NUL character");
        return Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
    }
}
