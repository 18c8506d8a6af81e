namespace GhmGen.Cli.Commands;

/// <summary>
/// The files <c>ghm detect</c> will write besides its results, planned and checked before any
/// image is read: image NAME (see <see cref="InputImage.Name"/>) is drawn to
/// <c>DRAW/NAME.png</c> and its head outputs go to <c>RAW/NAME/*.npy</c>, extension kept
/// (<c>photos/a.jpg</c> and <c>photos/a.png</c> give <c>a.jpg.png</c> and <c>a.png.png</c>).
/// No output may land on another output or on an input image.
/// </summary>
internal sealed class DetectOutputs
{
    private readonly string? _draw, _raw;

    private DetectOutputs(string? draw, string? raw)
    {
        _draw = draw;
        _raw = raw;
    }

    /// <summary>
    /// Checks <c>--out</c>, <c>--draw</c> and <c>--save-raw</c> and every path they will get;
    /// throws <see cref="UsageException"/> for a path that cannot be used or two that coincide.
    /// </summary>
    public static DetectOutputs Check(string? outPath, string? drawDir, string? rawDir, IReadOnlyList<InputImage> images)
    {
        string? outFull = outPath is null ? null : OutputTargets.CheckFile("--out", outPath);
        var plan = new DetectOutputs(
            drawDir is null ? null : OutputTargets.CheckFolder("--draw", drawDir),
            rawDir is null ? null : OutputTargets.CheckFolder("--save-raw", rawDir));

        // Every path this run reads or writes, and what it is, to find two that coincide.
        var claimed = new Dictionary<string, string>(StringComparer.Ordinal);
        var rawFolders = new HashSet<string>(StringComparer.Ordinal);
        void Claim(string path, string what)
        {
            if (!claimed.TryAdd(path, what))
                throw new UsageException($"{what} and {claimed[path]} would both be '{path}'");
        }
        foreach (InputImage image in images) Claim(Path.TrimEndingDirectorySeparator(Path.GetFullPath(image.Path)), $"input image '{image.Path}'");
        if (outFull is not null) Claim(outFull, $"--out '{outPath}'");
        foreach (InputImage image in images)
        {
            if (plan._draw is not null) Claim(plan.DrawingPath(image), $"the drawing of '{image.Path}'");
            if (plan._raw is not null)
            {
                string folder = plan.RawFolder(image);
                Claim(folder, $"the raw-output folder of '{image.Path}'");
                rawFolders.Add(folder);
            }
        }
        // A raw-output folder must not hold anything else this run touches.
        foreach ((string path, string what) in claimed)
            for (string? parent = Path.GetDirectoryName(path); parent is not null; parent = Path.GetDirectoryName(parent))
                if (rawFolders.Contains(parent))
                    throw new UsageException($"{what} ('{path}') would be inside {claimed[parent]} ('{parent}')");
        return plan;
    }

    /// <summary>Whether images are drawn (<c>--draw</c>).</summary>
    public bool Draws => _draw is not null;

    /// <summary>Whether head outputs are saved (<c>--save-raw</c>).</summary>
    public bool SavesRaw => _raw is not null;

    /// <summary><c>DRAW/NAME.png</c>.</summary>
    public string DrawingPath(InputImage image) => Path.GetFullPath(Path.Combine(_draw!, image.Name + ".png"));

    /// <summary><c>RAW/NAME</c>, the folder of one image's <c>.npy</c> files.</summary>
    public string RawFolder(InputImage image) => Path.GetFullPath(Path.Combine(_raw!, image.Name));

    /// <summary>Creates the <c>--draw</c> and <c>--save-raw</c> folders (one level; the parent was checked).</summary>
    public void CreateFolders()
    {
        foreach ((string option, string? folder) in new[] { ("--draw", _draw), ("--save-raw", _raw) })
        {
            if (folder is null) continue;
            try
            {
                Directory.CreateDirectory(folder);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"{option} '{folder}' cannot be created: {OutputTargets.Reason(e, folder)}", e);
            }
        }
    }
}
