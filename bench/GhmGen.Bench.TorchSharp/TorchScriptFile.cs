using System.IO.Compression;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace GhmGen.Bench.TorchSharp;

/// <summary>
/// A TorchScript file written by tools/reference/export_torchscript.py: checks its <c>extra/ghmgen.json</c>
/// (model, mode, batch, size) against what the worker was asked for, then loads it with <c>torch.jit.load</c>.
/// </summary>
internal static class TorchScriptFile
{
    /// <summary>What export_torchscript.py recorded about the traced module.</summary>
    public sealed record Metadata(string Model, string Mode, int Batch, string Size, bool Frozen, int TrainedParameters, string Torch);

    public static Metadata ReadMetadata(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"--torchscript '{path}' does not exist (export it with tools/reference/export_torchscript.py)", path);
        using ZipArchive zip = ZipFile.OpenRead(path);
        ZipArchiveEntry entry = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/extra/ghmgen.json", StringComparison.Ordinal))
            ?? throw new InvalidDataException($"'{path}' has no extra/ghmgen.json: not written by tools/reference/export_torchscript.py");
        using Stream stream = entry.Open();
        using JsonDocument json = JsonDocument.Parse(stream);
        JsonElement root = json.RootElement;
        return new Metadata(root.GetProperty("model").GetString()!, root.GetProperty("mode").GetString()!,
            root.GetProperty("batch").GetInt32(), root.GetProperty("size").GetString()!, root.GetProperty("frozen").GetBoolean(),
            root.GetProperty("trained_parameters").GetInt32(), root.GetProperty("torch").GetString()!);
    }

    /// <summary>Checks the file against the worker's options and loads it (CPU).</summary>
    public static (jit.ScriptModule Module, Metadata Meta) Load(WorkerProtocol.Options options, string mode)
    {
        Metadata meta = ReadMetadata(options.TorchScriptPath);
        string size = $"{options.Height}x{options.Width}";
        if (meta.Model != options.Model || meta.Mode != mode || meta.Batch != options.Batch || meta.Size != size)
            throw new ArgumentException(
                $"--torchscript '{options.TorchScriptPath}' holds {meta.Model}, mode {meta.Mode}, batch {meta.Batch}, {meta.Size}; "
                + $"this worker needs {options.Model}, mode {mode}, batch {options.Batch}, {size} (re-export with tools/reference/export_torchscript.py)");
        InitializeNative();
        torch.set_num_threads(options.Threads);
        return (jit.load(options.TorchScriptPath), meta);
    }

    /// <summary>libtorch's version, as TorchSharp reports it.</summary>
    public static string LibTorchVersion => torch.__version__;

    private static void InitializeNative()
    {
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException)
        {
            throw new InvalidOperationException(
                "TorchSharp could not load libLibTorchSharp.so. On Debian 12 (libstdc++ up to GLIBCXX_3.4.30) the copy in the output "
                + "folder must have its GLIBCXX_3.4.32 need marked weak: build with `dotnet build bench/GhmGen.Bench.TorchSharp -c Release` "
                + "(runs weaken_glibcxx_need.py) or run bench/GhmGen.Bench.TorchSharp/weaken_glibcxx_need.py on "
                + "bin/Release/net10.0/libLibTorchSharp.so. See bench/README.md.", e);
        }
    }
}
