using System.Globalization;
using System.Runtime.InteropServices;
using GhmGen.Layers;

namespace GhmGen.Checkpoints;

/// <summary>The bytes of one storage to write into a checkpoint archive (a float32 or int64 array).</summary>
internal readonly struct StorageSource
{
    private readonly float[]? _float32;
    private readonly long[]? _int64;

    private StorageSource(float[]? float32, long[]? int64)
    {
        _float32 = float32;
        _int64 = int64;
    }

    public static StorageSource Of(float[] values) => new(values, null);

    public static StorageSource Of(StateTensor tensor) =>
        tensor.ElementType == StateElementType.Int64 ? new(null, tensor.Int64Data) : new(tensor.Data, null);

    public ReadOnlySpan<byte> Bytes => _int64 != null
        ? MemoryMarshal.AsBytes(_int64.AsSpan())
        : MemoryMarshal.AsBytes(_float32.AsSpan());
}

public sealed partial class TorchCheckpoint
{
    /// <summary>
    /// Writes <c>{'meta': meta, 'state_dict': OrderedDict(...)}</c> in PyTorch's zip format
    /// (data.pkl protocol 2, data/&lt;n&gt;, version "3", 64-byte aligned stored entries), loadable
    /// by <c>torch.load</c>. The file is written beside <paramref name="path"/> and renamed into
    /// place, so a failure never leaves a half-written checkpoint.
    /// </summary>
    /// <param name="path">Destination file.</param>
    /// <param name="state">State tensors in the order to save them; keys must be unique.</param>
    /// <param name="meta">mmdetection meta (plain values only); null writes an empty dict.</param>
    public static void Write(string path, IEnumerable<StateTensor> state, PickleValue? meta = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(state);
        List<StateTensor> tensors = [.. state];
        var storages = new List<StorageSource>(tensors.Count);

        var pickle = new PickleWriter();
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("meta");
        pickle.Value(meta ?? PickleValue.NewDict(Array.Empty<KeyValuePair<PickleValue, PickleValue>>()));
        pickle.String("state_dict");
        pickle.StateDict(tensors, storages);
        pickle.SetItems();
        WriteArchive(path, pickle.Finish(), storages);
    }

    /// <summary>Writes a network's whole state (buffers included) with <see cref="Write(string, IEnumerable{StateTensor}, PickleValue?)"/>.</summary>
    public static void Write(string path, INetwork network, PickleValue? meta = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        Write(path, network.State, meta);
    }

    /// <summary>
    /// Writes a finished pickle and the storages it names ("0", "1", ... in list order) as a
    /// PyTorch zip archive, through a temporary file beside <paramref name="path"/> that is
    /// flushed to disk and renamed into place.
    /// </summary>
    internal static void WriteArchive(string path, byte[] pickleBytes, IReadOnlyList<StorageSource> storages)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("writing checkpoints needs a little-endian machine");
        string fullPath = Path.GetFullPath(path);
        string archive = ArchiveName(fullPath);
        string temporary = fullPath + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                var zip = new ZipWriter(stream);
                zip.Add(archive + "/data.pkl", pickleBytes);
                for (int i = 0; i < storages.Count; i++)
                {
                    zip.Add(archive + "/data/" + i.ToString(CultureInfo.InvariantCulture), storages[i].Bytes);
                }
                zip.Add(archive + "/version", "3\n"u8);
                zip.Finish();
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (IOException)
            {
                // The original error matters more than a leftover temporary file.
            }
            throw;
        }
    }

    /// <summary>The archive folder name: the file name without extension, as torch.save uses, if it is plain ASCII.</summary>
    private static string ArchiveName(string path)
    {
        string stem = Path.GetFileNameWithoutExtension(path);
        bool plain = stem.Length is > 0 and <= 100 && stem.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');
        return plain ? stem : "archive";
    }
}
