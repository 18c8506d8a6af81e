namespace GhmGen.Cli;

/// <summary>
/// One image to run on: <paramref name="Path"/> as given (or folder argument + file name), and
/// <paramref name="Name"/>, what the results call it and what its drawn and raw output files are
/// named after. Distinct images never share a name (see <see cref="InputImages.Expand"/>).
/// </summary>
internal sealed record InputImage(string Path, string Name);

/// <summary>Turns <c>ghm detect</c>'s image arguments into <see cref="InputImage"/>s.</summary>
internal static class InputImages
{
    /// <summary>The file extensions a folder argument expands to (case-insensitive).</summary>
    public static readonly string[] Extensions = [".jpg", ".jpeg", ".png"];

    /// <summary>
    /// Files as given (also ones that do not exist: they are reported and skipped later); folders
    /// expand to their JPEG and PNG files, sorted by name, not recursively. Each image is named by
    /// its file name; when two images share a file name (<c>a/x.png</c>, <c>b/x.png</c>), every
    /// image is named by its path from the deepest folder that holds them all, '/'-separated
    /// (<c>a/x.png</c>, <c>b/x.png</c>). Throws <see cref="UsageException"/> when there is no
    /// image, or when one file is given twice.
    /// </summary>
    public static IReadOnlyList<InputImage> Expand(IReadOnlyList<string> inputs)
    {
        var paths = new List<string>();
        foreach (string input in inputs)
        {
            if (string.IsNullOrWhiteSpace(input) || input.Contains('\0'))
                throw new UsageException($"'{input.Replace("\0", "\\0")}' is not a file or folder name");
            if (Directory.Exists(input))
                paths.AddRange(Directory.GetFiles(input)
                    .Where(f => Extensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant()))
                    .OrderBy(f => f, StringComparer.Ordinal));
            else paths.Add(input);
        }
        if (paths.Count == 0)
            throw new UsageException("no JPEG or PNG images found in " + string.Join(", ", inputs.Select(i => $"'{i}'")));

        string[] full = paths.Select(p => System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(p))).ToArray();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < full.Length; i++)
            if (!seen.TryAdd(full[i], paths[i]))
                throw new UsageException(paths[i] == seen[full[i]]
                    ? $"image '{paths[i]}' is given twice (directly, or also through its folder)"
                    : $"image '{paths[i]}' is given twice (also as '{seen[full[i]]}')");

        string[] names = full.Select(f => System.IO.Path.GetFileName(f)).ToArray();
        if (names.Distinct(StringComparer.Ordinal).Count() < names.Length)
        {
            string root = CommonFolder(full);
            names = full.Select(f => System.IO.Path.GetRelativePath(root, f).Replace('\\', '/')).ToArray();
        }
        return paths.Select((p, i) => new InputImage(p, names[i])).ToArray();
    }

    /// <summary>The deepest folder that contains every one of <paramref name="files"/> (full paths).</summary>
    private static string CommonFolder(string[] files)
    {
        string common = System.IO.Path.GetDirectoryName(files[0])!;
        foreach (string file in files.Skip(1))
        {
            string folder = System.IO.Path.GetDirectoryName(file)!;
            while (!IsInside(folder, common)) common = System.IO.Path.GetDirectoryName(common)!;
        }
        return common;
    }

    private static bool IsInside(string folder, string ancestor)
    {
        if (folder == ancestor) return true;
        // The file system root ("/") already ends with the separator.
        string prefix = ancestor.EndsWith(System.IO.Path.DirectorySeparatorChar) ? ancestor : ancestor + System.IO.Path.DirectorySeparatorChar;
        return folder.StartsWith(prefix, StringComparison.Ordinal);
    }
}
