using System.Text.Json;
using GhmGen.Detection;

namespace GhmGen.Cli.Commands;

/// <summary>
/// Where <c>ghm detect</c>'s results go, written as they are produced. Each detection is one object
/// <c>{"image", "bbox": [x, y, w, h], "score", "category_id", "label"}</c>.
/// <list type="bullet">
/// <item>no <c>--out</c>: a JSON array on standard output, printed when every image is done;</item>
/// <item><c>--out FILE.jsonl</c>: one object per line, flushed after each image, so a stopped run
/// keeps what it found;</item>
/// <item><c>--out FILE</c> (any other name, e.g. <c>.json</c>): a JSON array, written to a temporary
/// file in the same folder and renamed over <c>FILE</c> when every image is done, so <c>FILE</c> is
/// either the old file or the complete new one; the temporary file is deleted on any failure.</item>
/// </list>
/// </summary>
internal sealed class DetectionsWriter : IDisposable
{
    private readonly IReadOnlyList<string> _classNames;
    private readonly Stream _stream;
    private readonly Utf8JsonWriter _json;
    private readonly bool _lines;
    private readonly TextWriter? _stdout;
    private readonly string? _temporary, _destination;
    private bool _completed;

    private DetectionsWriter(IReadOnlyList<string> classNames, Stream stream, bool lines, TextWriter? stdout, string? temporary, string? destination)
    {
        _classNames = classNames;
        _stream = stream;
        _lines = lines;
        _stdout = stdout;
        _temporary = temporary;
        _destination = destination;
        _json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = !lines });
        if (!lines) _json.WriteStartArray();
    }

    /// <summary>Whether <paramref name="path"/> names a JSON-lines file (<c>.jsonl</c>).</summary>
    public static bool IsJsonLines(string path) => Path.GetExtension(path).Equals(".jsonl", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Opens the destination: <paramref name="path"/> (checked by <see cref="OutputTargets.CheckFile"/>),
    /// or standard output when it is null. Throws <see cref="UsageException"/> when the file cannot be created.
    /// </summary>
    public static DetectionsWriter Open(string? path, TextWriter stdout, IReadOnlyList<string> classNames)
    {
        if (path is null) return new DetectionsWriter(classNames, new MemoryStream(), lines: false, stdout, null, null);
        bool lines = IsJsonLines(path);
        string target = lines ? path : path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            var stream = new FileStream(target, lines ? FileMode.Create : FileMode.CreateNew, FileAccess.Write, FileShare.Read);
            return new DetectionsWriter(classNames, stream, lines, null, lines ? null : target, lines ? null : path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--out '{path}' cannot be written: {OutputTargets.Reason(e, target)}", e);
        }
    }

    /// <summary>Writes the detections of one image (none for an image without any).</summary>
    public void Add(string image, IReadOnlyList<DetectedObject> objects)
    {
        foreach (DetectedObject o in objects)
        {
            WriteObject(image, o);
            if (_lines)
            {
                _json.Flush();
                _json.Reset();
                _stream.WriteByte((byte)'\n');
            }
        }
        // Utf8JsonWriter buffers until flushed: per image keeps memory flat and a .jsonl current.
        _json.Flush();
        _stream.Flush();
    }

    /// <summary>Finishes the output: prints the array, or closes the file (renaming a <c>.json</c> into place).</summary>
    public void Complete()
    {
        if (!_lines) _json.WriteEndArray();
        _json.Dispose(); // flushes
        if (_stdout is not null)
        {
            _stdout.WriteLine(System.Text.Encoding.UTF8.GetString(((MemoryStream)_stream).ToArray()));
        }
        else
        {
            if (!_lines) _stream.WriteByte((byte)'\n');
            _stream.Dispose();
            if (_temporary is not null) File.Move(_temporary, _destination!, overwrite: true);
        }
        _completed = true;
    }

    /// <summary>Closes the output; a <c>.json</c> that was not completed loses its temporary file, the old file stays.</summary>
    public void Dispose()
    {
        _json.Dispose();
        _stream.Dispose();
        if (!_completed && _temporary is not null)
        {
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

    private void WriteObject(string image, DetectedObject o)
    {
        var coco = new CocoResult(o.X1, o.Y1, o.X2 - o.X1, o.Y2 - o.Y1, o.Score,
            _classNames.Count == CocoCategories.Count ? CocoCategories.CategoryId(o.Label) : o.Label + 1);
        _json.WriteStartObject();
        _json.WriteString("image", image);
        _json.WriteStartArray("bbox");
        _json.WriteNumberValue(Math.Round(coco.X, 3));
        _json.WriteNumberValue(Math.Round(coco.Y, 3));
        _json.WriteNumberValue(Math.Round(coco.Width, 3));
        _json.WriteNumberValue(Math.Round(coco.Height, 3));
        _json.WriteEndArray();
        _json.WriteNumber("score", Math.Round(o.Score, 5));
        // COCO's id for an 80-class model; label + 1 otherwise (a checkpoint keeps names, not ids:
        // the ids of a dataset whose categories are numbered 1..N in json order, as the synthetic shapes').
        _json.WriteNumber("category_id", coco.CategoryId);
        _json.WriteString("label", _classNames[o.Label]);
        _json.WriteEndObject();
    }
}
