using System.Globalization;

namespace GhmGen.Bench.TorchSharp;

/// <summary>
/// The line protocol shared with bench/GhmGen.Bench's side-by-side-worker: after set-up the worker answers
/// <c>SBS ready setup_ms=T ...</c>, then serves one command per stdin line: <c>run</c> (one timed step,
/// answers <c>SBS ms=WALL cpu_ms=CPU ...</c>), <c>dump PATH</c> (float32 LE outputs of the last step, answers
/// <c>SBS ok floats=N</c>) and <c>quit</c>. Lines not starting with <c>SBS </c> are ignored by the driver.
/// </summary>
internal static class WorkerProtocol
{
    /// <summary>The head outputs in the order of the TorchScript/ONNX exports and the forward fixtures.</summary>
    public static readonly string[] HeadOutputNames =
        ["cls_p3", "cls_p4", "cls_p5", "cls_p6", "cls_p7", "reg_p3", "reg_p4", "reg_p5", "reg_p6", "reg_p7"];

    /// <summary>Common worker arguments.</summary>
    public sealed record Options(string Framework, string TorchScriptPath, string Model, int Height, int Width, int Threads, int Batch,
        int JitWarmups);

    /// <summary>
    /// Untimed calls made during set-up, before <c>ready</c>: libtorch's profiling graph executor runs a loaded
    /// TorchScript module's first call with profiling, optimises the graph on the second, and only from the third
    /// call on runs the optimised graph (measured at 128x128: 6.3 s, 3.8 s, then 0.45-0.65 s per forward on a
    /// loaded machine). The driver's single warm-up would leave one of these slow calls inside the timed rounds.
    /// </summary>
    public const int DefaultJitWarmups = 2;

    public static Options Parse(string command, string[] args, int defaultBatch)
    {
        string? framework = null, torchScript = null;
        string model = "retinanet-ghm-r50-fpn", size = "800x1216";
        int threads = 2, batch = defaultBatch, jitWarmups = DefaultJitWarmups;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{command}: {args[i]} needs a value");
            switch (args[i])
            {
                case "--framework": framework = Value(); break;
                case "--torchscript": torchScript = Value(); break;
                case "--model": model = Value(); break;
                case "--size": size = Value(); break;
                case "--threads": threads = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--batch": batch = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--jit-warmups": jitWarmups = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                default: throw new ArgumentException($"{command}: unknown argument '{args[i]}'");
            }
        }
        if (framework != "torchsharp")
            throw new ArgumentException($"{command}: --framework '{framework}' is not torchsharp (GhmGen and ONNX Runtime are in bench/GhmGen.Bench)");
        if (torchScript is null)
            throw new ArgumentException($"{command}: --torchscript FILE.pt is required (tools/reference/export_torchscript.py writes it)");
        if (threads < 1 || batch < 1) throw new ArgumentException($"{command}: --threads and --batch must be at least 1");
        if (jitWarmups < 0) throw new ArgumentException($"{command}: --jit-warmups must be at least 0");
        (int h, int w) = ParseSize(command, size);
        return new Options(framework, torchScript, model, h, w, threads, batch, jitWarmups);
    }

    /// <summary>Serves <c>run</c>, <c>dump PATH</c> and <c>quit</c> until <c>quit</c> or end of input.</summary>
    public static void Serve(Func<string> run, Func<float[]> lastOutputs, string command)
    {
        while (Console.In.ReadLine() is { } line)
        {
            if (line == "run")
            {
                Reply(run());
            }
            else if (line.StartsWith("dump ", StringComparison.Ordinal))
            {
                float[] values = lastOutputs();
                using (var file = File.Create(line[5..]))
                    file.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
                Reply($"ok floats={values.Length}");
            }
            else if (line == "quit")
            {
                break;
            }
            else
            {
                throw new ArgumentException($"{command}: unknown command '{line}' (expected run, dump PATH or quit)");
            }
        }
    }

    public static void Reply(string text)
    {
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SBS {text}"));
        Console.Out.Flush();
    }

    /// <summary>Spatial sizes of P3..P7: every stride-2 step (stem conv, max-pool, stages, P6/P7 convs) halves with ceil.</summary>
    public static (int H, int W)[] LevelSizes(int height, int width)
    {
        int h = height, w = width;
        for (int i = 0; i < 3; i++) (h, w) = ((h + 1) / 2, (w + 1) / 2); // stride 8 = C3
        var sizes = new (int, int)[5];
        for (int level = 0; level < 5; level++)
        {
            sizes[level] = (h, w);
            (h, w) = ((h + 1) / 2, (w + 1) / 2);
        }
        return sizes;
    }

    private static (int Height, int Width) ParseSize(string command, string text)
    {
        string[] parts = text.Split('x', 'X');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int w) || h < 32 || w < 32)
            throw new ArgumentException($"{command}: --size '{text}' is not HxW with sides of at least 32, e.g. 800x1216");
        return (h, w);
    }
}
