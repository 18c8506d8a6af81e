using System.Diagnostics;
using System.Globalization;

namespace GhmGen.Bench.SideBySide;

/// <summary>
/// <c>side-by-side-worker --framework ghmgen|onnxruntime --model NAME --size HxW [--batch B] --threads N [--onnx PATH]</c>:
/// a process that serves one framework to bench/side_by_side.py, one command per stdin line.
/// <list type="bullet">
/// <item><c>run</c>: one timed forward; answers <c>SBS ms=WALL cpu_ms=CPU</c>.</item>
/// <item><c>dump PATH</c>: writes the last forward's ten head outputs (float32 LE, cls_p3..cls_p7, reg_p3..reg_p7); answers <c>SBS ok</c>.</item>
/// <item><c>quit</c>: exits.</item>
/// </list>
/// After setup it answers <c>SBS ready setup_ms=T</c>. Protocol lines start with <c>SBS </c>; anything
/// else a library prints is ignored by the driver. Peak RSS is read by the driver from /proc/PID/status.
/// </summary>
internal static class SideBySideWorker
{
    /// <summary>The head outputs in the order of the ONNX export and the forward fixtures.</summary>
    public static readonly string[] HeadOutputNames =
        ["cls_p3", "cls_p4", "cls_p5", "cls_p6", "cls_p7", "reg_p3", "reg_p4", "reg_p5", "reg_p6", "reg_p7"];

    /// <summary>Parses the arguments after <c>side-by-side-worker</c> and serves commands until <c>quit</c> or end of input.</summary>
    public static int Run(string[] args)
    {
        string? framework = null, onnxPath = null;
        string model = "retinanet-ghm-r50-fpn", size = "800x1216";
        int threads = 2, batch = 1;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"side-by-side-worker: {args[i]} needs a value");
            switch (args[i])
            {
                case "--framework": framework = Value(); break;
                case "--model": model = Value(); break;
                case "--size": size = Value(); break;
                case "--threads": threads = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--batch": batch = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--onnx": onnxPath = Value(); break;
                default: throw new ArgumentException($"side-by-side-worker: unknown argument '{args[i]}'");
            }
        }
        if (threads < 1) throw new ArgumentException($"side-by-side-worker: --threads {threads} must be at least 1");
        if (batch < 1) throw new ArgumentException($"side-by-side-worker: --batch {batch} must be at least 1");
        (int height, int width) = ParseSize(size);

        long setupStart = Stopwatch.GetTimestamp();
        using IFrameworkRunner runner = framework switch
        {
            "ghmgen" => new GhmGenRunner(model, batch, height, width, threads),
            "onnxruntime" => new OnnxRuntimeRunner(
                onnxPath ?? throw new ArgumentException("side-by-side-worker: --framework onnxruntime needs --onnx PATH"), batch, height, width, threads),
            _ => throw new ArgumentException($"side-by-side-worker: --framework '{framework}' is not ghmgen or onnxruntime"),
        };
        Reply($"ready setup_ms={Stopwatch.GetElapsedTime(setupStart).TotalMilliseconds:F1}");

        while (Console.In.ReadLine() is { } line)
        {
            if (line == "run")
            {
                TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
                long start = Stopwatch.GetTimestamp();
                runner.Forward();
                double wallMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                double cpuMs = (Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds;
                Reply($"ms={wallMs:F2} cpu_ms={cpuMs:F1}");
            }
            else if (line.StartsWith("dump ", StringComparison.Ordinal))
            {
                float[] values = runner.HeadOutputs();
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
                throw new ArgumentException($"side-by-side-worker: unknown command '{line}' (expected run, dump PATH or quit)");
            }
        }
        return 0;
    }

    private static (int Height, int Width) ParseSize(string text)
    {
        string[] parts = text.Split('x', 'X');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int h)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int w) || h < 32 || w < 32)
            throw new ArgumentException($"side-by-side-worker: --size '{text}' is not HxW with sides of at least 32, e.g. 800x1216");
        return (h, w);
    }

    private static void Reply(string text)
    {
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SBS {text}"));
        Console.Out.Flush();
    }
}
