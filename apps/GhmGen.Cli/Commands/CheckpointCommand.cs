using System.CommandLine;
using System.Text;
using System.Text.Json;
using GhmGen.Checkpoints;

namespace GhmGen.Cli.Commands;

/// <summary><c>ghm checkpoint inspect FILE [--json]</c>: what a PyTorch checkpoint holds and which model it fits.</summary>
internal static class CheckpointCommand
{
    private const int ListLimit = 50;

    /// <summary>
    /// Creates the <c>checkpoint</c> command. <paramref name="candidates"/> yields the registered
    /// models' state layouts (called only when a file is inspected); pass an empty sequence when
    /// no registry is available.
    /// </summary>
    public static Command Create(Func<IEnumerable<StateLayout>> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var file = new Argument<string>("file") { Description = "A .pth checkpoint (PyTorch zip or legacy format)." };
        var json = new Option<bool>("--json") { Description = "Print JSON: format, meta, tensors and the matching model." };
        var inspect = new Command("inspect", "Show a checkpoint's format, meta, every tensor's dtype and shape, and which model it matches.")
        {
            file,
            json,
        };
        inspect.SetAction(parseResult => Inspect(
            parseResult.GetValue(file)!,
            parseResult.GetValue(json),
            candidates,
            parseResult.InvocationConfiguration.Output));
        return new Command("checkpoint", "Inspect PyTorch checkpoint files, or write one with seeded test weights.") { inspect, SeedCommand() };
    }

    /// <summary>
    /// <c>ghm checkpoint seed --model NAME --out FILE</c>: writes a checkpoint of a registered model
    /// with the deterministic test weights of <see cref="GhmGen.Layers.SeededWeights"/> (the ones the
    /// PyTorch reference scripts use), for trying the pipeline without downloading weights.
    /// </summary>
    private static Command SeedCommand()
    {
        Option<string> model = CommonOptions.Model();
        var outPath = new Option<string>("--out") { Description = "Where to write the .pth file (its folder must exist)", Required = true };
        var seed = new Command("seed", "Write a checkpoint of a model with deterministic test weights (not trained: detections are meaningless).")
        {
            model,
            outPath,
        };
        seed.SetAction(parse =>
        {
            string path = parse.GetValue(outPath)!;
            OutputTargets.CheckFile("--out", path);
            GhmGen.Models.ModelInfo info = GhmGen.Models.ModelRegistry.Get(parse.GetValue(model)!);
            GhmGen.Layers.INetwork network = info.Create();
            GhmGen.Layers.SeededWeights.Fill(network);
            try
            {
                TorchCheckpoint.Write(path, network,
                    PickleValue.NewDict([new KeyValuePair<string, PickleValue>("model", PickleValue.FromString(info.Name)),
                        new KeyValuePair<string, PickleValue>("weights", PickleValue.FromString("GhmGen SeededWeights (untrained test weights)"))]));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--out '{path}' cannot be written: {OutputTargets.Reason(e, path)}", e);
            }
            return ExitCodes.Success;
        });
        return seed;
    }

    private static int Inspect(string path, bool asJson, Func<IEnumerable<StateLayout>> candidates, TextWriter output)
    {
        TorchCheckpoint checkpoint;
        try
        {
            checkpoint = TorchCheckpoint.Read(path);
        }
        catch (CheckpointFormatException e)
        {
            throw new UsageException(e.Message, e);
        }
        using (checkpoint)
        {
            CheckpointMatch? match = CheckpointMatcher.Match(checkpoint.Tensors, candidates());
            if (asJson) WriteJson(checkpoint, match, output);
            else WriteText(checkpoint, match, output);
            return ExitCodes.Success;
        }
    }

    private static void WriteText(TorchCheckpoint checkpoint, CheckpointMatch? match, TextWriter output)
    {
        output.WriteLine($"file: {checkpoint.FileName}");
        output.WriteLine($"format: {FormatName(checkpoint.Format)}");
        if (checkpoint.Meta is { Kind: PickleValueKind.Dict } meta)
        {
            output.WriteLine("meta:");
            foreach (KeyValuePair<PickleValue, PickleValue> entry in meta.Entries)
            {
                string key = entry.Key.Kind == PickleValueKind.String ? entry.Key.AsString : entry.Key.ToString();
                output.WriteLine($"  {key}: {Summarize(entry.Value)}");
            }
        }
        else
        {
            output.WriteLine(checkpoint.Meta == null ? "meta: none" : $"meta: {Summarize(checkpoint.Meta)}");
        }

        output.WriteLine($"tensors: {checkpoint.Tensors.Count}");
        int keyWidth = checkpoint.Tensors.Count == 0 ? 0 : checkpoint.Tensors.Max(t => t.Key.Length);
        foreach (CheckpointTensor tensor in checkpoint.Tensors)
        {
            output.WriteLine($"  {tensor.Key.PadRight(keyWidth)}  {tensor.DType.TorchName(),-8}  {tensor.ShapeText}");
        }

        if (match == null)
        {
            output.WriteLine("model: none (no registered models to compare)");
        }
        else if (match.IsExact)
        {
            output.WriteLine($"model: {match.Model} (all {match.Matched.Count} keys match)");
        }
        else
        {
            output.WriteLine($"model: none; closest is {match.Model} ({match.Missing.Count} missing, {match.Unexpected.Count} unexpected, {match.Mismatched.Count} mismatched)");
            WriteList(output, "missing", match.Missing);
            WriteList(output, "unexpected", match.Unexpected);
            WriteList(output, "mismatched", match.Mismatched.Select(m => m.ToString()).ToList());
        }
    }

    private static void WriteList(TextWriter output, string label, IReadOnlyList<string> items)
    {
        foreach (string item in items.Take(ListLimit)) output.WriteLine($"  {label}: {item}");
        if (items.Count > ListLimit) output.WriteLine($"  ... and {items.Count - ListLimit} more {label}");
    }

    /// <summary>One line for a meta value: long or multi-line strings (the config) are summarised.</summary>
    private static string Summarize(PickleValue value)
    {
        if (value.Kind == PickleValueKind.String && (value.AsString.Contains('\n') || value.AsString.Length > 120))
        {
            string text = value.AsString;
            return $"<text: {text.Count(c => c == '\n') + 1} lines, {text.Length} chars>";
        }
        string repr = value.ToString();
        return repr.Length <= 200 ? repr : repr[..200] + "...";
    }

    private static void WriteJson(TorchCheckpoint checkpoint, CheckpointMatch? match, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("format", FormatName(checkpoint.Format));
            json.WritePropertyName("meta");
            if (checkpoint.Meta == null) json.WriteNullValue();
            else checkpoint.Meta.WriteJson(json);
            json.WriteStartArray("tensors");
            foreach (CheckpointTensor tensor in checkpoint.Tensors)
            {
                json.WriteStartObject();
                json.WriteString("key", tensor.Key);
                json.WriteString("dtype", tensor.DType.TorchName());
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndArray();
            if (match is { IsExact: true }) json.WriteString("model", match.Model);
            else json.WriteNull("model");
            if (match is { IsExact: false })
            {
                json.WriteStartObject("closest");
                json.WriteString("model", match.Model);
                WriteStrings(json, "missing", match.Missing);
                WriteStrings(json, "unexpected", match.Unexpected);
                json.WriteStartArray("mismatched");
                foreach (MismatchedTensor m in match.Mismatched)
                {
                    json.WriteStartObject();
                    json.WriteString("key", m.Key);
                    json.WriteString("expected", $"{m.ExpectedDType} [{string.Join(", ", m.ExpectedShape)}]");
                    json.WriteString("actual", $"{m.ActualDType} [{string.Join(", ", m.ActualShape)}]");
                    json.WriteEndObject();
                }
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static void WriteStrings(Utf8JsonWriter json, string name, IReadOnlyList<string> items)
    {
        json.WriteStartArray(name);
        foreach (string item in items) json.WriteStringValue(item);
        json.WriteEndArray();
    }

    private static string FormatName(CheckpointFormat format) => format == CheckpointFormat.Zip ? "zip" : "legacy";
}
