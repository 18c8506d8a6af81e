// Runs `ghm` (the JIT build next to the tests) alone or under `mpirun -n N`, with a hard timeout
// that kills the whole process tree, so no test can hang CI.
using System.Diagnostics;
using System.Text;

namespace GhmGen.Distributed.Tests;

/// <summary>What a finished (or killed) run left: exit code, output, and how long it took.</summary>
internal sealed record JobResult(int ExitCode, string Output, string Error, TimeSpan Elapsed, bool TimedOut)
{
    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s{(TimedOut ? " (killed: timeout)" : "")}\n--- stdout\n{Output}\n--- stderr\n{Error}";
}

internal sealed class MpiJob : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new(), _error = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private MpiJob(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_error) _error.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    public static string GhmDll => Path.Combine(AppContext.BaseDirectory, "ghm.dll");

    public static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";

    /// <summary>mpirun on PATH; the tests fail with this message where it is missing.</summary>
    public static string Mpirun()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "mpirun");
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException("mpirun is not on PATH: install Open MPI (apt-get install openmpi-bin libopenmpi-dev; .ci/run does) to run the data-parallel tests");
    }

    /// <summary>MPICH's launcher, <c>mpiexec.mpich</c>, on PATH (Debian's <c>mpich</c>); the MPICH test fails with this message where it is missing.</summary>
    public static string MpiexecMpich()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "mpiexec.mpich");
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException("mpiexec.mpich is not on PATH: install MPICH (apt-get install mpich; .ci/run does) to run the MPICH test");
    }

    /// <summary>
    /// Runs <c>mpiexec.mpich -n ranks dotnet ghm.dll args</c>: MPICH's launcher and, with nothing
    /// of Open MPI in the environment, MPICH's libmpi.so.12 (MpiLibrary's choice).
    /// </summary>
    public static JobResult RunMpich(int ranks, TimeSpan timeout, params string[] args)
    {
        var info = new ProcessStartInfo(MpiexecMpich()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["-n", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), Dotnet, GhmDll]) info.ArgumentList.Add(a);
        foreach (string a in args) info.ArgumentList.Add(a);
        using var job = new MpiJob(new Process { StartInfo = info });
        return job.Wait(timeout);
    }

    /// <summary>Starts <c>mpirun -n ranks dotnet ghm.dll args</c> (as root: --allow-run-as-root; --oversubscribe for small machines).</summary>
    public static MpiJob StartMpi(int ranks, params string[] args)
    {
        var info = new ProcessStartInfo(Mpirun()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["-n", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe", "--bind-to", "none"]) info.ArgumentList.Add(a);
        if (Environment.UserName == "root") info.ArgumentList.Add("--allow-run-as-root");
        info.ArgumentList.Add(Dotnet);
        info.ArgumentList.Add(GhmDll);
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1";
        return new MpiJob(new Process { StartInfo = info });
    }

    /// <summary>Starts <c>dotnet ghm.dll args</c> as one process (no MPI).</summary>
    public static MpiJob StartSingle(params string[] args)
    {
        var info = new ProcessStartInfo(Dotnet) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(GhmDll);
        foreach (string a in args) info.ArgumentList.Add(a);
        foreach (string name in (string[])["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]) info.Environment.Remove(name);
        return new MpiJob(new Process { StartInfo = info });
    }

    public static JobResult RunMpi(int ranks, TimeSpan timeout, params string[] args)
    {
        using MpiJob job = StartMpi(ranks, args);
        return job.Wait(timeout);
    }

    public static JobResult RunSingle(TimeSpan timeout, params string[] args)
    {
        using MpiJob job = StartSingle(args);
        return job.Wait(timeout);
    }

    /// <summary>Waits for the exit; past <paramref name="timeout"/>, kills the whole tree and reports TimedOut.</summary>
    public JobResult Wait(TimeSpan timeout)
    {
        bool exited = _process.WaitForExit(timeout);
        if (!exited)
        {
            try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            _process.WaitForExit();
        }
        _process.WaitForExit(); // drains the output
        string output, error;
        lock (_output) output = _output.ToString();
        lock (_error) error = _error.ToString();
        return new JobResult(exited ? _process.ExitCode : -1, output, error, _clock.Elapsed, !exited);
    }

    /// <summary>The rank processes below mpirun: pid by OMPI_COMM_WORLD_RANK (or PMI_RANK), from /proc.</summary>
    public Dictionary<int, int> RankProcesses()
    {
        var ranks = new Dictionary<int, int>();
        var stack = new Stack<int>([_process.Id]);
        while (stack.Count > 0)
        {
            int pid = stack.Pop();
            foreach (int child in Children(pid))
            {
                stack.Push(child);
                string environ;
                try { environ = File.ReadAllText($"/proc/{child}/environ"); }
                catch (IOException) { continue; }
                catch (UnauthorizedAccessException) { continue; }
                foreach (string entry in environ.Split('\0'))
                    foreach (string name in (string[])["OMPI_COMM_WORLD_RANK=", "PMI_RANK="])
                        if (entry.StartsWith(name, StringComparison.Ordinal) && int.TryParse(entry.AsSpan(name.Length), out int rank))
                            ranks.TryAdd(rank, child);
            }
        }
        return ranks;
    }

    private static IEnumerable<int> Children(int pid)
    {
        string path = $"/proc/{pid}/task/{pid}/children";
        string text;
        try { text = File.ReadAllText(path); }
        catch (IOException) { yield break; }
        foreach (string s in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            if (int.TryParse(s, out int child)) yield return child;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
