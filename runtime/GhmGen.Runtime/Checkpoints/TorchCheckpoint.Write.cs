using System.Runtime.InteropServices;
using System.Text;
using GhmGen.Layers;

namespace GhmGen.Checkpoints;

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
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("writing checkpoints needs a little-endian machine");
        List<StateTensor> tensors = [.. state];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (StateTensor tensor in tensors)
        {
            if (!seen.Add(tensor.Key)) throw new ArgumentException($"state key '{tensor.Key}' appears twice", nameof(state));
        }

        var pickle = new PickleWriter();
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("meta");
        pickle.Value(meta ?? PickleValue.NewDict(Array.Empty<KeyValuePair<PickleValue, PickleValue>>()));
        pickle.String("state_dict");
        pickle.NewOrderedDict();
        if (tensors.Count > 0)
        {
            pickle.Mark();
            for (int i = 0; i < tensors.Count; i++)
            {
                StateTensor tensor = tensors[i];
                pickle.String(tensor.Key);
                pickle.Tensor(i.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    tensor.ElementType == StateElementType.Int64 ? CheckpointDType.Int64 : CheckpointDType.Float32, tensor.Shape);
            }
            pickle.SetItems();
        }
        pickle.SetItems();
        byte[] pickleBytes = pickle.Finish();

        string fullPath = Path.GetFullPath(path);
        string archive = ArchiveName(fullPath);
        string temporary = fullPath + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                var zip = new ZipWriter(stream);
                zip.Add(archive + "/data.pkl", pickleBytes);
                for (int i = 0; i < tensors.Count; i++)
                {
                    StateTensor tensor = tensors[i];
                    ReadOnlySpan<byte> data = tensor.ElementType == StateElementType.Int64
                        ? MemoryMarshal.AsBytes(tensor.Int64Data.AsSpan())
                        : MemoryMarshal.AsBytes(tensor.Data.AsSpan());
                    zip.Add(archive + "/data/" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), data);
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

    /// <summary>Writes a network's whole state (buffers included) with <see cref="Write(string, IEnumerable{StateTensor}, PickleValue?)"/>.</summary>
    public static void Write(string path, INetwork network, PickleValue? meta = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        Write(path, network.State, meta);
    }

    /// <summary>The archive folder name: the file name without extension, as torch.save uses, if it is plain ASCII.</summary>
    private static string ArchiveName(string path)
    {
        string stem = Path.GetFileNameWithoutExtension(path);
        bool plain = stem.Length is > 0 and <= 100 && stem.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');
        return plain ? stem : "archive";
    }
}
