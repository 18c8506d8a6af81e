using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace GhmGen.Bench.Training;

/// <summary>
/// <c>train-worker --framework ghmgen --model NAME --size HxW --batch B --threads N</c>: serves GhmGen's training
/// step (<see cref="GhmGenTrainingStep"/>) to bench/side_by_side_train.py, one command per stdin line
/// (the protocol of that script's <c>ghmgen_train_worker_command</c>):
/// <list type="bullet">
/// <item>after set-up: <c>SBS ready setup_ms=T trained_parameters=P</c>;</item>
/// <item><c>run</c>: one timed step, <c>SBS ms=WALL cpu_ms=CPU loss=L loss_abs=A</c> plus the phase times
/// <c>forward_ms outputs_ms upload_ms backward_ms sgd_ms update_ms</c> (L = sum(G * map) of this step's forward,
/// before its update; A = sum |G * map|, computed after the timed step);</item>
/// <item><c>dump PATH</c>: the ten maps of the last step's forward, float32 LE, cls_p3..cls_p7 then reg_p3..reg_p7,
/// each [B, C, h, w] row-major; <c>SBS ok floats=N</c>;</item>
/// <item><c>quit</c>.</item>
/// </list>
/// </summary>
internal static class TrainWorker
{
    public static int Run(string[] args)
    {
        (string framework, string model, int height, int width, int batch, int threads) = ParseArgs("train-worker", args);
        if (framework != "ghmgen")
            throw new ArgumentException($"train-worker: --framework '{framework}' is not ghmgen (TorchSharp's is in bench/GhmGen.Bench.TorchSharp)");
        long setupStart = Stopwatch.GetTimestamp();
        using var step = new GhmGenTrainingStep(model, batch, height, width, threads);
        Reply(FormattableString.Invariant($"ready setup_ms={Stopwatch.GetElapsedTime(setupStart).TotalMilliseconds:F1} trained_parameters={step.TrainedParameterCount}")
              + FormattableString.Invariant($" trained_values={step.TrainedValueCount} frozen_parameters={step.FrozenParameterCount}"));
        bool stepped = false;
        while (Console.In.ReadLine() is { } line)
        {
            if (line == "run")
            {
                TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
                long start = Stopwatch.GetTimestamp();
                GhmGenTrainingStep.StepResult r = step.Step();
                double wallMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                double cpuMs = (Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds;
                stepped = true;
                double lossAbs = step.LossAbs();
                Reply(FormattableString.Invariant($"ms={wallMs:F2} cpu_ms={cpuMs:F1} loss={r.Loss:R} loss_abs={lossAbs:R} forward_ms={r.ForwardMs:F2}")
                      + FormattableString.Invariant($" outputs_ms={r.OutputsMs:F2} upload_ms={r.UploadMs:F2} backward_ms={r.BackwardMs:F2} sgd_ms={r.SgdMs:F2} update_ms={r.UpdateMs:F2}"));
            }
            else if (line.StartsWith("dump ", StringComparison.Ordinal))
            {
                if (!stepped) throw new InvalidOperationException("train-worker: dump before any run");
                long floats;
                using (var file = File.Create(line[5..]))
                    floats = step.WriteLastMaps(file);
                Reply(FormattableString.Invariant($"ok floats={floats}"));
            }
            else if (line == "quit")
            {
                break;
            }
            else
            {
                throw new ArgumentException($"train-worker: unknown command '{line}' (expected run, dump PATH or quit)");
            }
        }
        return 0;
    }

    /// <summary>
    /// <c>train-table [--model M] [--size HxW] [--batch B] [--threads N] [--steps S]</c>: S timed steps after one
    /// warm-up, each phase's median, min and share of the step, printed as a table (the Stopwatch breakdown).
    /// </summary>
    public static int Table(string[] args)
    {
        int steps = 5;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--steps" && i + 1 < args.Length) steps = int.Parse(args[++i], CultureInfo.InvariantCulture);
            else rest.Add(args[i]);
        }
        if (steps < 1) throw new ArgumentException("train-table: --steps must be at least 1");
        if (!rest.Contains("--framework")) rest.InsertRange(0, ["--framework", "ghmgen"]);
        (_, string model, int height, int width, int batch, int threads) = ParseArgs("train-table", [.. rest]);
        long setupStart = Stopwatch.GetTimestamp();
        using var step = new GhmGenTrainingStep(model, batch, height, width, threads);
        Console.WriteLine(FormattableString.Invariant(
            $"{model} training step, batch {batch}, {height}x{width}, {threads} threads: set-up {Stopwatch.GetElapsedTime(setupStart).TotalSeconds:F1} s, ")
            + FormattableString.Invariant($"{step.TrainedParameterCount} trained tensors ({step.TrainedValueCount:N0} values), load average {LoadAverage()}"));
        Console.WriteLine(FormattableString.Invariant(
            $"after set-up: RSS {RssMb("VmRSS"):F1} MB; the session's activation + activation-gradient buffers {step.ActivationBytes / 1048576.0:F1} MB, ")
            + FormattableString.Invariant($"trained parameters {step.TrainedValueCount * 4 / 1048576.0:F1} MB each (host values, host gradients, momentum)"));
        GhmGenTrainingStep.StepResult warm = step.Step();
        Console.WriteLine(FormattableString.Invariant($"warm-up step {warm.TotalMs:F0} ms, loss {warm.Loss:R}; RSS after it {RssMb("VmRSS"):F1} MB"));
        var results = new List<GhmGenTrainingStep.StepResult>();
        var cpu = new List<double>();
        for (int s = 0; s < steps; s++)
        {
            TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
            results.Add(step.Step());
            cpu.Add((Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds);
            Console.WriteLine(FormattableString.Invariant($"step {s + 1}: {results[^1].TotalMs:F0} ms (CPU {cpu[^1]:F0} ms), load average {LoadAverage()}"));
        }
        (string Name, Func<GhmGenTrainingStep.StepResult, double> Get)[] phases =
        [
            ("forward", r => r.ForwardMs),
            ("download maps + loss", r => r.OutputsMs),
            ("upload G", r => r.UploadMs),
            ("backward", r => r.BackwardMs),
            ("SGD step", r => r.SgdMs),
            ("UpdateWeights", r => r.UpdateMs),
            ("step", r => r.TotalMs),
        ];
        double medianStep = Median(results.Select(r => r.TotalMs));
        Console.WriteLine($"{"phase",-22}{"median ms",11}{"min ms",10}{"max ms",10}{"share",8}");
        foreach ((string name, Func<GhmGenTrainingStep.StepResult, double> get) in phases)
        {
            double[] v = [.. results.Select(get)];
            Console.WriteLine(FormattableString.Invariant($"{name,-22}{Median(v),11:F1}{v.Min(),10:F1}{v.Max(),10:F1}{100 * Median(v) / medianStep,7:F1}%"));
        }
        Console.WriteLine(FormattableString.Invariant($"median CPU time per step {Median(cpu):F0} ms; peak RSS {RssMb("VmHWM"):F1} MB"));
        return 0;
    }

    /// <summary>The table commands' <c>[--model M] [--size HxW] [--batch B] [--threads N]</c>.</summary>
    public static (string Model, int Height, int Width, int Batch, int Threads) ParseTableArgs(string command, string[] args)
    {
        (_, string model, int height, int width, int batch, int threads) = ParseArgs(command, ["--framework", "ghmgen", .. args]);
        return (model, height, width, batch, threads);
    }

    private static (string Framework, string Model, int Height, int Width, int Batch, int Threads) ParseArgs(string command, string[] args)
    {
        string? framework = null;
        string model = "retinanet-ghm-r50-fpn", size = "512x640";
        int threads = 2, batch = 2;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{command}: {args[i]} needs a value");
            switch (args[i])
            {
                case "--framework": framework = Value(); break;
                case "--model": model = Value(); break;
                case "--size": size = Value(); break;
                case "--batch": batch = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--threads": threads = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"{command}: unknown argument '{args[i]}'");
            }
        }
        if (threads < 1 || batch < 1) throw new ArgumentException($"{command}: --threads and --batch must be at least 1");
        string[] parts = size.Split('x', 'X');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int w) || h < 32 || w < 32)
            throw new ArgumentException($"{command}: --size '{size}' is not HxW with sides of at least 32, e.g. 512x640");
        return (framework ?? throw new ArgumentException($"{command}: --framework ghmgen is required"), model, h, w, batch, threads);
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] v = [.. values.Order()];
        return v.Length % 2 == 1 ? v[v.Length / 2] : 0.5 * (v[v.Length / 2 - 1] + v[v.Length / 2]);
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }

    /// <summary>VmRSS or VmHWM (peak) of this process, in MiB.</summary>
    private static double RssMb(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    private static void Reply(string text)
    {
        Console.Out.WriteLine("SBS " + text);
        Console.Out.Flush();
    }
}
