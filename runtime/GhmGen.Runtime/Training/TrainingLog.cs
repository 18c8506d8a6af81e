// log.json as mmcv's TextLoggerHook writes it (mmcv/runner/hooks/logger/text.py): one JSON object
// per line, keys in mmcv's order (mode, epoch, iter, lr, time, data_time, then the log buffer's
// loss_cls, loss_bbox, loss, grad_norm). Two deliberate differences (docs/TRAINING.md §5):
//   * values keep full precision: floats are written in their shortest round-trip form (float32
//     losses and norms as float32, lr and times as double), where mmcv's _dump_log rounds to 5
//     decimals (lr 0.005005 would read 0.005);
//   * no leading env/config line: the first line is the first iteration's.
// With --log-interval 1 each line holds that iteration's own values; with a longer interval the
// caller averages, as mmcv's log buffer does. Every line is flushed as it is written. A NaN or
// infinite value is written as Python's json.dumps writes it (NaN, Infinity, -Infinity), which
// json.loads and mmdetection's analyze_logs.py read back.
using System.Buffers;
using System.Text.Json;

namespace GhmGen.Training;

/// <summary>One training line of log.json: mmcv's <c>{"mode": "train", ...}</c>.</summary>
/// <param name="Epoch">1-based epoch (mmcv's <c>runner.epoch + 1</c>).</param>
/// <param name="Iteration">1-based iteration within the epoch (mmcv's <c>inner_iter + 1</c>).</param>
/// <param name="LearningRate">The param group's lr for this iteration.</param>
/// <param name="LossCls">GHM-C loss summed over the levels.</param>
/// <param name="LossBbox">GHM-R loss summed over the levels.</param>
/// <param name="Loss">loss_cls + loss_bbox, as back-propagated.</param>
/// <param name="GradNorm">Total gradient norm before clipping.</param>
/// <param name="Time">Seconds for the whole iteration, data loading included.</param>
/// <param name="DataTime">Seconds spent waiting for the batch.</param>
/// <param name="SkippedImages">
/// Images skipped (missing or corrupt) in the batches of this line's interval, including batches
/// passed over because all their images were skipped. Written as <c>"skipped_images"</c> after
/// <c>grad_norm</c> only when above 0, so a clean run's lines have mmcv's keys exactly; the sum
/// over a log's lines is the run's total.
/// </param>
public readonly record struct TrainLogEntry(int Epoch, int Iteration, double LearningRate, float LossCls, float LossBbox, float Loss, float GradNorm, double Time, double DataTime, int SkippedImages = 0);

/// <summary>
/// Appends mmcv-style lines to a <c>log.json</c>. Opening for a resumed run keeps complete lines
/// only (a partial last line from a crash is cut) and drops lines past the resume point, so the
/// replayed iterations are not logged twice. It holds the file open until disposed; each line is
/// flushed as it is written. Not thread-safe: one writer thread.
/// </summary>
public sealed class TrainingLogWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly ArrayBufferWriter<byte> _line = new(512);
    private readonly Utf8JsonWriter _json;

    private TrainingLogWriter(FileStream stream)
    {
        _stream = stream;
        _json = new Utf8JsonWriter(_line);
    }

    /// <summary>The log file's path.</summary>
    public string Path => _stream.Name;

    /// <summary>Starts a new log, replacing any file at <paramref name="path"/>.</summary>
    public static TrainingLogWriter Create(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new TrainingLogWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));
    }

    /// <summary>
    /// Opens a log to continue it (creating it when missing). A last line without its newline is
    /// removed. With <paramref name="resumeFrom"/>, train lines after that position (epoch
    /// <c>Epoch + 1</c>, iteration &gt; <c>IterationInEpoch</c>, or later epochs) and val lines of
    /// epochs not completed are removed too; lines without a <c>mode</c> are kept.
    /// </summary>
    public static TrainingLogWriter Append(string path, TrainingProgress? resumeFrom = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            long keep = KeptLength(stream, resumeFrom);
            if (keep < stream.Length)
            {
                stream.SetLength(keep);
                stream.Flush(flushToDisk: true);
            }
            stream.Seek(0, SeekOrigin.End);
            return new TrainingLogWriter(stream);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Bytes to keep: complete lines up to the first one past the resume point.</summary>
    private static long KeptLength(FileStream stream, TrainingProgress? resumeFrom)
    {
        if (stream.Length > int.MaxValue) throw new IOException($"log '{stream.Name}' is larger than 2 GiB");
        var bytes = new byte[stream.Length];
        stream.Seek(0, SeekOrigin.Begin);
        stream.ReadExactly(bytes);
        long kept = 0;
        int start = 0;
        while (start < bytes.Length)
        {
            int newline = Array.IndexOf(bytes, (byte)'\n', start);
            if (newline < 0) break; // partial last line
            if (resumeFrom != null && IsPast(bytes.AsSpan(start, newline - start), resumeFrom)) break;
            start = newline + 1;
            kept = start;
        }
        return kept;
    }

    private static bool IsPast(ReadOnlySpan<byte> line, TrainingProgress resume)
    {
        Utf8JsonReader reader = new(line);
        string? mode = null;
        long epoch = -1, iteration = -1;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string name = reader.GetString()!;
                reader.Read();
                if (name == "mode" && reader.TokenType == JsonTokenType.String) mode = reader.GetString();
                else if (name == "epoch" && reader.TokenType == JsonTokenType.Number) epoch = reader.GetInt64();
                else if (name == "iter" && reader.TokenType == JsonTokenType.Number) iteration = reader.GetInt64();
                else reader.Skip();
            }
        }
        catch (JsonException)
        {
            return false; // not ours to judge: keep it
        }
        catch (FormatException)
        {
            return false;
        }
        return mode switch
        {
            "train" => epoch > resume.Epoch + 1 || (epoch == resume.Epoch + 1 && iteration > resume.IterationInEpoch),
            "val" => epoch > resume.Epoch,
            _ => false,
        };
    }

    /// <summary>Writes one <c>{"mode": "train", ...}</c> line and flushes it.</summary>
    public void WriteTrain(in TrainLogEntry entry)
    {
        Utf8JsonWriter json = BeginLine();
        json.WriteString("mode", "train");
        json.WriteNumber("epoch", entry.Epoch);
        json.WriteNumber("iter", entry.Iteration);
        Number(json, "lr", entry.LearningRate);
        Number(json, "time", entry.Time);
        Number(json, "data_time", entry.DataTime);
        Number(json, "loss_cls", entry.LossCls);
        Number(json, "loss_bbox", entry.LossBbox);
        Number(json, "loss", entry.Loss);
        Number(json, "grad_norm", entry.GradNorm);
        if (entry.SkippedImages > 0) json.WriteNumber("skipped_images", entry.SkippedImages);
        EndLine();
    }

    /// <summary>
    /// Writes one <c>{"mode": "val", "epoch", "iter", "lr", metrics...}</c> line (mmdetection's
    /// form after an evaluation, e.g. <c>bbox_mAP</c>) and flushes it.
    /// </summary>
    /// <param name="epoch">1-based epoch just evaluated.</param>
    /// <param name="iteration">mmcv writes the length of the validation data loader here.</param>
    /// <param name="learningRate">The current lr.</param>
    /// <param name="metrics">Metric names and values, in order; names must not repeat the fixed keys.</param>
    public void WriteValidation(int epoch, int iteration, double learningRate, IEnumerable<KeyValuePair<string, double>> metrics)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        KeyValuePair<string, double>[] list = [.. metrics];
        foreach (KeyValuePair<string, double> metric in list)
        {
            if (metric.Key is "mode" or "epoch" or "iter" or "lr") throw new ArgumentException($"metric name '{metric.Key}' is reserved", nameof(metrics));
        }
        Utf8JsonWriter json = BeginLine();
        json.WriteString("mode", "val");
        json.WriteNumber("epoch", epoch);
        json.WriteNumber("iter", iteration);
        Number(json, "lr", learningRate);
        foreach (KeyValuePair<string, double> metric in list) Number(json, metric.Key, metric.Value);
        EndLine();
    }

    private static void Number(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value))
        {
            json.WriteNumber(name, value);
            return;
        }
        json.WritePropertyName(name);
        json.WriteRawValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity", skipInputValidation: true);
    }

    private static void Number(Utf8JsonWriter json, string name, float value)
    {
        if (float.IsFinite(value)) json.WriteNumber(name, value);
        else Number(json, name, (double)value);
    }

    private Utf8JsonWriter BeginLine()
    {
        _line.Clear();
        _json.Reset(_line);
        _json.WriteStartObject();
        return _json;
    }

    private void EndLine()
    {
        _json.WriteEndObject();
        _json.Flush();
        _line.Write("\n"u8);
        // One write per line, then flush: a crash leaves at most one partial last line.
        _stream.Write(_line.WrittenSpan);
        _stream.Flush();
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        _json.Dispose();
        _stream.Dispose();
    }
}
