namespace GhmGen.Cli;

/// <summary>
/// The progress line of <c>ghm detect</c> and <c>ghm test</c> on standard error: <c>[####......] 3/10 NAME</c>,
/// redrawn in place with a carriage return, only when standard error is a terminal. Messages
/// printed meanwhile start on a new line. Safe to call from several threads.
/// </summary>
internal sealed class ProgressBar
{
    private readonly Lock _gate = new();
    private readonly TextWriter _error;
    private readonly string _command;
    private bool _drawn; // the cursor is at the end of a drawn bar
    private int _shownDone = -1; // counts come from several threads: never draw one below the last

    /// <summary>A progress line for <paramref name="command"/> (e.g. "ghm test") on <paramref name="error"/>.</summary>
    public ProgressBar(string command, TextWriter error)
    {
        _command = command;
        _error = error;
        Shown = !Console.IsErrorRedirected && ReferenceEquals(error, Console.Error);
    }

    /// <summary>Whether the bar is drawn (standard error is the console, not redirected).</summary>
    public bool Shown { get; }

    /// <summary>Draws the bar with <paramref name="done"/> of <paramref name="total"/> and the name of the current image.</summary>
    public void Update(int done, int total, string name)
    {
        if (!Shown) return;
        lock (_gate)
        {
            if (done < _shownDone) return;
            _shownDone = done;
            _error.Write($"\r{Bar(done, total)} {done}/{total} {name,-40}");
            _drawn = true;
        }
    }

    /// <summary>Draws the finished bar and ends its line.</summary>
    public void Finish(int total)
    {
        if (!Shown) return;
        lock (_gate)
        {
            _error.WriteLine($"\r{Bar(total, total)} {total}/{total} done{new string(' ', 40)}");
            _drawn = false;
        }
    }

    /// <summary>Prints <c>COMMAND: MESSAGE</c> on its own line (below the bar, which the next update redraws).</summary>
    public void Report(string message)
    {
        lock (_gate)
        {
            if (_drawn) _error.WriteLine();
            _drawn = false;
            _error.WriteLine($"{_command}: {message}");
        }
    }

    /// <summary><c>[#####...............]</c>: 20 cells, filled in proportion.</summary>
    public static string Bar(int done, int total)
    {
        int filled = total == 0 ? 20 : done * 20 / total;
        return "[" + new string('#', filled) + new string('.', 20 - filled) + "]";
    }
}
