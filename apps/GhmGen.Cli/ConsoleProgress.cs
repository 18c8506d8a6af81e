namespace GhmGen.Cli;

/// <summary>
/// A one-line progress bar on standard error when it is a terminal (nothing otherwise, so logs
/// and pipes stay clean). Reports may come from any thread; drawing is serialized.
/// </summary>
internal sealed class ConsoleProgress : IProgress<int>
{
    private readonly TextWriter _error;
    private readonly int _total;
    private readonly string _unit;
    private readonly Lock _gate = new();

    public ConsoleProgress(TextWriter error, int total, string unit)
    {
        _error = error;
        _total = total;
        _unit = unit;
        Interactive = IsTerminal(error);
    }

    /// <summary>Whether a bar is drawn.</summary>
    public bool Interactive { get; }

    /// <summary>Whether <paramref name="error"/> is the process's standard error and that is a terminal.</summary>
    public static bool IsTerminal(TextWriter error) => !Console.IsErrorRedirected && ReferenceEquals(error, Console.Error);

    /// <summary>A 20-character bar: [#####...............].</summary>
    public static string Bar(long done, long total)
    {
        int filled = total <= 0 ? 20 : (int)Math.Clamp(done * 20 / total, 0, 20);
        return "[" + new string('#', filled) + new string('.', 20 - filled) + "]";
    }

    public void Report(int done)
    {
        if (!Interactive) return;
        lock (_gate) _error.Write($"\r{Bar(done, _total)} {done}/{_total} {_unit}");
    }

    /// <summary>Ends the bar's line.</summary>
    public void Done()
    {
        if (!Interactive) return;
        lock (_gate) _error.WriteLine();
    }
}
