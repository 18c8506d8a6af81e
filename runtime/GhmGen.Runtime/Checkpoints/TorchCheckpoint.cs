using System.Buffers.Binary;
using System.Numerics;

namespace GhmGen.Checkpoints;

/// <summary>Which of PyTorch's two file layouts a checkpoint uses.</summary>
public enum CheckpointFormat
{
    /// <summary>The zip archive that <c>torch.save</c> writes since PyTorch 1.6.</summary>
    Zip,

    /// <summary>The older stream of pickles followed by raw storages (mmdetection's published files).</summary>
    Legacy,
}

/// <summary>
/// A PyTorch checkpoint read without running untrusted code: its format, the mmdetection
/// <c>meta</c> dict and the state-dict tensors (read lazily from a memory map of the file).
/// It holds the file open (and mapped) until disposed; tensors cannot be read afterwards. Not
/// thread-safe: use an instance from one thread at a time.
/// </summary>
public sealed partial class TorchCheckpoint : IDisposable
{
    private static readonly BigInteger LegacyMagic = BigInteger.Parse("119547037146038801333356", System.Globalization.CultureInfo.InvariantCulture);
    private const long LegacyProtocolVersion = 1001;

    private readonly CheckpointBytes _bytes;
    private readonly Dictionary<string, int> _index;

    private TorchCheckpoint(CheckpointBytes bytes, CheckpointFormat format, PickleValue root)
    {
        _bytes = bytes;
        Format = format;
        Root = root;
        (StateDict, Meta) = FindStateDict(bytes, root);
        var tensors = new List<CheckpointTensor>(StateDict.Entries.Count);
        _index = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (KeyValuePair<PickleValue, PickleValue> entry in StateDict.Entries)
        {
            if (entry.Key.Kind != PickleValueKind.String) throw bytes.Fail($"state_dict key {entry.Key} is not a string");
            string key = entry.Key.AsString;
            if (entry.Value.Kind != PickleValueKind.Tensor) throw bytes.Fail($"state_dict entry '{key}' is a {entry.Value.Kind.ToString().ToLowerInvariant()}, not a tensor");
            _index[key] = tensors.Count;
            tensors.Add(entry.Value.AsTensor.WithKey(key));
        }
        Tensors = tensors;
    }

    /// <summary>The file name (without directories) used in messages.</summary>
    public string FileName => _bytes.Name;

    /// <summary>Zip or legacy.</summary>
    public CheckpointFormat Format { get; }

    /// <summary>The whole unpickled object.</summary>
    public PickleValue Root { get; }

    /// <summary>The state dict: <c>Root['state_dict']</c>, or <see cref="Root"/> itself for a bare state dict.</summary>
    public PickleValue StateDict { get; }

    /// <summary><c>Root['meta']</c>, or null when the file has none.</summary>
    public PickleValue? Meta { get; }

    /// <summary>The state-dict tensors in file order.</summary>
    public IReadOnlyList<CheckpointTensor> Tensors { get; }

    /// <summary>mmdetection's class names (<c>meta['CLASSES']</c>), or null when absent.</summary>
    public IReadOnlyList<string>? ClassNames =>
        Meta?["CLASSES"] is { Kind: PickleValueKind.List or PickleValueKind.Tuple } names && names.Items.All(n => n.Kind == PickleValueKind.String)
            ? names.Items.Select(n => n.AsString).ToArray()
            : null;

    /// <summary>The training config text mmdetection stores in <c>meta['config']</c>, or null.</summary>
    public string? ConfigText => Meta?["config"] is { Kind: PickleValueKind.String } config ? config.AsString : null;

    /// <summary>The state-dict tensor with this key, or null.</summary>
    public CheckpointTensor? Find(string key) => _index.TryGetValue(key, out int i) ? Tensors[i] : null;

    /// <summary>Reads a checkpoint file (zip or legacy), memory-mapping it so tensors are read in place.</summary>
    /// <exception cref="CheckpointFormatException">The file is missing, malformed or refers to code we refuse to run.</exception>
    public static TorchCheckpoint Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        CheckpointBytes bytes = CheckpointBytes.Mapped.Open(path);
        return Parse(bytes);
    }

    /// <summary>Reads a checkpoint held in memory; <paramref name="name"/> appears in error messages.</summary>
    public static TorchCheckpoint Read(ReadOnlyMemory<byte> contents, string name) => Parse(new CheckpointBytes.InMemory(name, contents));

    private static TorchCheckpoint Parse(CheckpointBytes bytes)
    {
        try
        {
            if (bytes.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(bytes.Slice(0, 4)) == 0x04034b50)
            {
                return new TorchCheckpoint(bytes, CheckpointFormat.Zip, ReadZip(bytes));
            }
            if (bytes.Length >= 2 && bytes.Slice(0, 2)[0] == 0x80)
            {
                return new TorchCheckpoint(bytes, CheckpointFormat.Legacy, ReadLegacy(bytes));
            }
            throw bytes.Fail(bytes.Length == 0
                ? "file is empty"
                : "not a PyTorch checkpoint (expected a zip archive 'PK\\x03\\x04' or a legacy pickle '\\x80\\x02')");
        }
        catch
        {
            bytes.Dispose();
            throw;
        }
    }

    private static PickleValue ReadZip(CheckpointBytes bytes)
    {
        Dictionary<string, ZipEntry> entries = ZipDirectory.Read(bytes);
        string? pickleName = entries.Keys.Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/') == n.Length - 9).Order(StringComparer.Ordinal).FirstOrDefault();
        if (pickleName == null) throw bytes.Fail("zip archive has no '<archive>/data.pkl' entry; not a PyTorch checkpoint");
        string archive = pickleName[..^"/data.pkl".Length];
        if (entries.TryGetValue(archive + "/byteorder", out ZipEntry byteOrder))
        {
            // torch >= 2.1 records the writer's byte order; only little-endian data is read here.
            RequireStored(bytes, byteOrder);
            if (byteOrder.Size > 16 || !bytes.Slice(byteOrder.DataOffset, (int)byteOrder.Size).SequenceEqual("little"u8))
            {
                throw bytes.Fail("checkpoint was written on a big-endian machine; only little-endian data is supported");
            }
        }
        ZipEntry pickle = entries[pickleName];
        RequireStored(bytes, pickle);
        if (pickle.Size > int.MaxValue) throw bytes.Fail($"data.pkl of {pickle.Size} bytes is too large");

        var storages = new Dictionary<string, CheckpointStorage>(StringComparer.Ordinal);
        CheckpointStorage LoadStorage(object[] pid)
        {
            (CheckpointDType dtype, string key, long numel) = ParseStorageId(bytes, pid, legacy: false);
            if (storages.TryGetValue(key, out CheckpointStorage? known)) return SameStorage(bytes, known, dtype, numel);
            if (!entries.TryGetValue($"{archive}/data/{key}", out ZipEntry entry)) throw bytes.Fail($"storage '{key}' has no entry '{archive}/data/{key}'");
            RequireStored(bytes, entry);
            if (numel > entry.Size / dtype.ElementSize())
            {
                throw bytes.Fail($"storage '{key}' declares {numel} {dtype.TorchName()} elements but its entry holds {entry.Size} bytes");
            }
            var storage = new CheckpointStorage(bytes, key, dtype, numel) { DataOffset = entry.DataOffset };
            storages.Add(key, storage);
            return storage;
        }

        var reader = new PickleReader(bytes.Name, LoadStorage);
        object root = reader.Read(bytes.Slice(pickle.DataOffset, (int)pickle.Size), out _);
        return root as PickleValue ?? throw bytes.Fail("data.pkl does not hold a plain object");
    }

    private static void RequireStored(CheckpointBytes bytes, ZipEntry entry)
    {
        if (entry.Method != 0) throw bytes.Fail($"zip entry '{entry.Name}' is compressed (method {entry.Method}); PyTorch stores entries uncompressed");
    }

    private static PickleValue ReadLegacy(CheckpointBytes bytes)
    {
        long pos = 0;
        object Next(PickleReader reader)
        {
            int window = (int)Math.Min(int.MaxValue, bytes.Length - pos);
            object value = reader.Read(bytes.Slice(pos, window), out int used);
            pos += used;
            return value;
        }

        var plain = new PickleReader(bytes.Name, _ => throw bytes.Fail("unexpected persistent id in a legacy header pickle"));
        if (Next(plain) is not PickleValue { Kind: PickleValueKind.BigInt } magic || magic.AsBigInteger != LegacyMagic)
        {
            throw bytes.Fail("legacy checkpoint has a wrong magic number");
        }
        if (Next(plain) is not PickleValue { Kind: PickleValueKind.Int } protocol || protocol.AsInt64 != LegacyProtocolVersion)
        {
            throw bytes.Fail($"legacy checkpoint protocol is not {LegacyProtocolVersion}");
        }
        if (Next(plain) is not PickleValue { Kind: PickleValueKind.Dict } sysInfo) throw bytes.Fail("legacy checkpoint has no sys-info dict");
        if (sysInfo["little_endian"] is { Kind: PickleValueKind.Bool } littleEndian && !littleEndian.AsBool)
        {
            throw bytes.Fail("big-endian legacy checkpoints are not supported");
        }

        var roots = new Dictionary<string, CheckpointStorage>(StringComparer.Ordinal);
        var views = new Dictionary<string, CheckpointStorage>(StringComparer.Ordinal);
        CheckpointStorage LoadStorage(object[] pid)
        {
            (CheckpointDType dtype, string key, long numel) = ParseStorageId(bytes, pid, legacy: true);
            if (numel > bytes.Length / dtype.ElementSize()) throw bytes.Fail($"storage '{key}' declares {numel} elements, more than the file holds");
            if (!roots.TryGetValue(key, out CheckpointStorage? root))
            {
                root = new CheckpointStorage(bytes, key, dtype, numel);
                roots.Add(key, root);
            }
            else
            {
                SameStorage(bytes, root, dtype, numel);
            }
            if (pid[5] is PickleValue { Kind: PickleValueKind.None }) return root;

            // Pre-1.6 storage views: (view_key, offset, size) in elements of the root.
            if (pid[5] is not PickleValue { Kind: PickleValueKind.Tuple } view || view.Items.Count != 3
                || view.Items[0].Kind != PickleValueKind.String || view.Items[1].Kind != PickleValueKind.Int || view.Items[2].Kind != PickleValueKind.Int)
            {
                throw bytes.Fail($"storage '{key}' has malformed view metadata");
            }
            string viewKey = view.Items[0].AsString;
            long offset = view.Items[1].AsInt64, size = view.Items[2].AsInt64;
            if (offset < 0 || size < 0 || offset > numel || size > numel - offset)
            {
                throw bytes.Fail($"storage view '{viewKey}' ({size} elements at {offset}) lies outside storage '{key}' of {numel}");
            }
            if (views.TryGetValue(viewKey, out CheckpointStorage? known)) return known;
            var storageView = new CheckpointStorage(bytes, viewKey, dtype, size) { ViewOf = (root, offset) };
            views.Add(viewKey, storageView);
            return storageView;
        }

        object top = Next(new PickleReader(bytes.Name, LoadStorage));
        if (top is not PickleValue root) throw bytes.Fail("legacy checkpoint does not hold a plain object");
        if (Next(plain) is not PickleValue { Kind: PickleValueKind.List } keys) throw bytes.Fail("legacy checkpoint has no storage key list");

        foreach (PickleValue keyValue in keys.Items)
        {
            if (keyValue.Kind != PickleValueKind.String) throw bytes.Fail("legacy storage key is not a string");
            string key = keyValue.AsString;
            if (!roots.TryGetValue(key, out CheckpointStorage? storage)) throw bytes.Fail($"storage '{key}' is listed but no tensor uses it");
            if (storage.DataOffset >= 0) throw bytes.Fail($"storage '{key}' is listed twice");
            long count = BinaryPrimitives.ReadInt64LittleEndian(bytes.Slice(pos, 8));
            pos += 8;
            if (count != storage.ElementCount)
            {
                throw bytes.Fail($"storage '{key}' holds {count} elements but its tensors declared {storage.ElementCount}");
            }
            long byteCount = count * storage.DType.ElementSize();
            if (!bytes.Contains(pos, byteCount)) throw bytes.Fail($"storage '{key}' needs {byteCount} bytes at {pos} but the file ends at {bytes.Length} (file truncated?)");
            storage.DataOffset = pos;
            pos += byteCount;
        }
        foreach (CheckpointStorage storage in roots.Values)
        {
            if (storage.DataOffset < 0) throw bytes.Fail($"storage '{storage.Key}' is used but its data is missing");
        }
        return root;
    }

    /// <summary>Parses <c>('storage', torch.XStorage, key, location, numel[, view_metadata])</c>.</summary>
    private static (CheckpointDType DType, string Key, long ElementCount) ParseStorageId(CheckpointBytes bytes, object[] pid, bool legacy)
    {
        int expected = legacy ? 6 : 5;
        if (pid.Length != expected || pid[0] is not PickleValue { Kind: PickleValueKind.String } tag || tag.AsString != "storage")
        {
            throw bytes.Fail($"persistent id is not a {expected}-tuple ('storage', ...)");
        }
        if (pid[1] is not PickleGlobal { StorageDType: { } dtype }) throw bytes.Fail("persistent id does not name a torch storage type");
        if (pid[2] is not PickleValue { Kind: PickleValueKind.String } key) throw bytes.Fail("storage key is not a string");
        if (pid[3] is not PickleValue { Kind: PickleValueKind.String }) throw bytes.Fail($"storage '{key.AsString}' location is not a string");
        if (pid[4] is not PickleValue { Kind: PickleValueKind.Int } numel || numel.AsInt64 < 0)
        {
            throw bytes.Fail($"storage '{key.AsString}' element count is not a non-negative int");
        }
        return (dtype, key.AsString, numel.AsInt64);
    }

    private static CheckpointStorage SameStorage(CheckpointBytes bytes, CheckpointStorage known, CheckpointDType dtype, long numel) =>
        known.DType == dtype && known.ElementCount == numel
            ? known
            : throw bytes.Fail($"storage '{known.Key}' is declared as both {known.DType.TorchName()}[{known.ElementCount}] and {dtype.TorchName()}[{numel}]");

    private static (PickleValue StateDict, PickleValue? Meta) FindStateDict(CheckpointBytes bytes, PickleValue root)
    {
        if (root.Kind != PickleValueKind.Dict) throw bytes.Fail($"checkpoint holds a {root.Kind.ToString().ToLowerInvariant()}, not a dict");
        if (root["state_dict"] is { } stateDict)
        {
            if (stateDict.Kind != PickleValueKind.Dict) throw bytes.Fail("'state_dict' is not a dict");
            return (stateDict, root["meta"]);
        }
        if (root.Entries.All(e => e.Value.Kind == PickleValueKind.Tensor)) return (root, null);
        string keys = string.Join(", ", root.Entries.Take(10).Select(e => e.Key.ToString()));
        throw bytes.Fail($"no state dict: the top-level dict has no 'state_dict' and is not a dict of tensors (keys: {keys})");
    }

    /// <summary>Releases the file mapping.</summary>
    public void Dispose() => _bytes.Dispose();
}
