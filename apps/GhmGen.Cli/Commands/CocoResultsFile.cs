using System.Text.Json;
using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>
/// The COCO results file of <c>ghm test --out FILE</c>: a JSON array, one
/// <c>{"image_id", "category_id", "bbox": [x, y, w, h], "score"}</c> object per line. The numbers are
/// the float32 values of the detector as doubles, written in full (what mmdetection's
/// <c>results2json</c> writes), so evaluating the file gives exactly the figures <c>ghm test</c>
/// printed. The temporary file <c>FILE.tmp-*</c> in the same folder is created before any work
/// (so a folder that cannot be written stops the run at once) and renamed over <c>FILE</c> when
/// everything is written; on any failure it is removed and <c>FILE</c> stays as it was.
/// </summary>
internal sealed class CocoResultsFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly string _temporary, _destination;
    private bool _committed;

    private CocoResultsFile(FileStream stream, string temporary, string destination)
    {
        _stream = stream;
        _temporary = temporary;
        _destination = destination;
    }

    /// <summary>Creates the temporary file next to <paramref name="path"/>; <see cref="UsageException"/> when that fails.</summary>
    public static CocoResultsFile Open(string option, string path)
    {
        string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            return new CocoResultsFile(new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None), temporary, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{option} '{path}' cannot be written: {OutputTargets.Reason(e, temporary)}", e);
        }
    }

    /// <summary>Writes every detection, in order, and renames the file into place.</summary>
    public void Commit(IReadOnlyList<CocoDetection> detections)
    {
        Write(_stream, detections);
        _stream.Dispose();
        File.Move(_temporary, _destination, overwrite: true);
        _committed = true;
    }

    /// <summary>The results array, one object per line.</summary>
    public static void Write(Stream stream, IReadOnlyList<CocoDetection> detections)
    {
        var buffered = new BufferedStream(stream, 1 << 16);
        using var json = new Utf8JsonWriter(buffered);
        buffered.WriteByte((byte)'[');
        for (int i = 0; i < detections.Count; i++)
        {
            CocoDetection d = detections[i];
            buffered.Write(i == 0 ? "\n"u8 : ",\n"u8);
            json.Reset();
            json.WriteStartObject();
            json.WriteNumber("image_id", d.ImageId);
            json.WriteNumber("category_id", d.CategoryId);
            json.WriteStartArray("bbox");
            json.WriteNumberValue(d.Box.X);
            json.WriteNumberValue(d.Box.Y);
            json.WriteNumberValue(d.Box.Width);
            json.WriteNumberValue(d.Box.Height);
            json.WriteEndArray();
            json.WriteNumber("score", d.Score);
            json.WriteEndObject();
            json.Flush();
        }
        buffered.Write("\n]\n"u8);
        buffered.Flush();
    }

    /// <summary>Closes the file; one not committed is deleted.</summary>
    public void Dispose()
    {
        _stream.Dispose();
        if (_committed) return;
        try
        {
            File.Delete(_temporary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing more to do: the failure that got here is the one to report.
        }
    }
}
