using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace GhmGen.Checkpoints;

/// <summary>One storage record of a checkpoint: a typed run of elements somewhere in the file.</summary>
internal sealed class CheckpointStorage(CheckpointBytes bytes, string key, CheckpointDType dtype, long elementCount)
{
    private long _dataOffset = -1;

    public CheckpointBytes Bytes { get; } = bytes;

    public string Key { get; } = key;

    public CheckpointDType DType { get; } = dtype;

    public long ElementCount { get; } = elementCount;

    /// <summary>For a legacy storage view: the storage it views and its offset there in elements.</summary>
    public (CheckpointStorage Root, long Offset)? ViewOf { get; init; }

    /// <summary>File offset of element 0, or -1 until the legacy reader reaches the storage's bytes.</summary>
    public long DataOffset
    {
        get => ViewOf is { } view
            ? (view.Root.DataOffset < 0 ? -1 : view.Root.DataOffset + view.Offset * DType.ElementSize())
            : _dataOffset;
        set => _dataOffset = value;
    }
}

/// <summary>
/// A tensor in a checkpoint: a strided view (shape, strides, offset in elements) of a storage that
/// other tensors may share. Values are read from the file on demand and converted to float32 or int64.
/// </summary>
public sealed class CheckpointTensor
{
    private readonly CheckpointStorage _storage;
    private readonly int[] _shape;
    private readonly long[] _strides;

    internal CheckpointTensor(string key, CheckpointStorage storage, long storageOffset, int[] shape, long[] strides, long elementCount)
    {
        Key = key;
        _storage = storage;
        StorageOffset = storageOffset;
        _shape = shape;
        _strides = strides;
        ElementCount = elementCount;
    }

    /// <summary>The state-dict key (empty for a tensor that is not a state-dict entry).</summary>
    public string Key { get; }

    /// <summary>Element type as stored.</summary>
    public CheckpointDType DType => _storage.DType;

    /// <summary>Shape, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>Strides in elements, one per dimension.</summary>
    public IReadOnlyList<long> Strides => _strides;

    /// <summary>Offset of the first element within the storage, in elements.</summary>
    public long StorageOffset { get; }

    /// <summary>Product of the shape (1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <summary>The storage's key in the file; tensors with the same key share their data.</summary>
    public string StorageKey => _storage.Key;

    /// <summary>The shape written as PyTorch prints it, e.g. <c>[64, 3, 7, 7]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", _shape) + "]";

    internal CheckpointStorage Storage => _storage;

    internal CheckpointTensor WithKey(string key) => new(key, _storage, StorageOffset, _shape, _strides, ElementCount);

    internal string Describe() => $"{DType.TorchName()} {ShapeText}";

    /// <summary>Whether the elements lie in row-major order without gaps.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int d = _shape.Length - 1; d >= 0; d--)
            {
                if (_shape[d] != 1 && _strides[d] != expected) return false;
                expected *= _shape[d];
            }
            return true;
        }
    }

    /// <summary>Reads all values in row-major order, converted to float32 (bools as 0/1).</summary>
    public float[] ReadFloat32()
    {
        var values = new float[ElementCount];
        ReadFloat32(values);
        return values;
    }

    /// <summary>Reads all values in row-major order into <paramref name="destination"/> (length = <see cref="ElementCount"/>).</summary>
    public void ReadFloat32(Span<float> destination)
    {
        CheckDestination(destination.Length);
        if (ElementCount == 0) return;
        ReadOnlySpan<byte> window = Window(out long first);
        int esize = DType.ElementSize();
        if (IsContiguous)
        {
            ReadOnlySpan<byte> src = window.Slice((int)((StorageOffset - first) * esize), destination.Length * esize);
            ConvertToFloat32(src, DType, destination);
            return;
        }
        int i = 0;
        foreach (long index in StorageIndices())
        {
            destination[i++] = ElementAsFloat32(window, (int)((index - first) * esize), DType);
        }
    }

    /// <summary>Reads all values in row-major order as int64; only integer and bool tensors can be read this way.</summary>
    public long[] ReadInt64()
    {
        var values = new long[ElementCount];
        ReadInt64(values);
        return values;
    }

    /// <summary>Reads all values in row-major order as int64 into <paramref name="destination"/>.</summary>
    public void ReadInt64(Span<long> destination)
    {
        if (!DType.IsInteger())
        {
            throw new CheckpointFormatException(_storage.Bytes.Name, $"tensor '{Key}' is {DType.TorchName()} and cannot be read as int64");
        }
        CheckDestination(destination.Length);
        if (ElementCount == 0) return;
        ReadOnlySpan<byte> window = Window(out long first);
        int esize = DType.ElementSize();
        int i = 0;
        foreach (long index in StorageIndices())
        {
            int at = (int)((index - first) * esize);
            destination[i++] = DType switch
            {
                CheckpointDType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(window.Slice(at, 8)),
                CheckpointDType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(window.Slice(at, 4)),
                CheckpointDType.UInt8 => window[at],
                _ => window[at] != 0 ? 1 : 0,
            };
        }
    }

    private void CheckDestination(int length)
    {
        if (length != ElementCount)
        {
            throw new ArgumentException($"tensor '{Key}' has {ElementCount} elements but the destination holds {length}", "destination");
        }
    }

    /// <summary>The bytes spanning every element this view touches; <paramref name="first"/> is the storage index at byte 0.</summary>
    private ReadOnlySpan<byte> Window(out long first)
    {
        if (_storage.DataOffset < 0)
        {
            throw new CheckpointFormatException(_storage.Bytes.Name, $"storage '{_storage.Key}' of tensor '{Key}' has no data");
        }
        long last = StorageOffset;
        for (int d = 0; d < _shape.Length; d++) last += (_shape[d] - 1) * _strides[d];
        first = StorageOffset;
        int esize = DType.ElementSize();
        long byteCount = (last - first + 1) * esize;
        if (byteCount > int.MaxValue)
        {
            throw new CheckpointFormatException(_storage.Bytes.Name, $"tensor '{Key}' spans {byteCount} bytes; at most {int.MaxValue} per tensor are supported");
        }
        return _storage.Bytes.Slice(_storage.DataOffset + first * esize, (int)byteCount);
    }

    /// <summary>Storage indices of the elements in row-major order.</summary>
    private IEnumerable<long> StorageIndices()
    {
        int rank = _shape.Length;
        var counter = new int[rank];
        long index = StorageOffset;
        for (long n = 0; n < ElementCount; n++)
        {
            yield return index;
            for (int d = rank - 1; d >= 0; d--)
            {
                if (++counter[d] < _shape[d])
                {
                    index += _strides[d];
                    break;
                }
                index -= (long)(_shape[d] - 1) * _strides[d];
                counter[d] = 0;
            }
        }
    }

    private static float ElementAsFloat32(ReadOnlySpan<byte> bytes, int at, CheckpointDType dtype) => dtype switch
    {
        CheckpointDType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(at, 4)),
        CheckpointDType.Float16 => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.Slice(at, 2)),
        CheckpointDType.BFloat16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(at, 2)) << 16),
        CheckpointDType.Float64 => (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(at, 8)),
        CheckpointDType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(bytes.Slice(at, 8)),
        CheckpointDType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(bytes.Slice(at, 4)),
        CheckpointDType.UInt8 => bytes[at],
        _ => bytes[at] != 0 ? 1f : 0f,
    };

    private static void ConvertToFloat32(ReadOnlySpan<byte> src, CheckpointDType dtype, Span<float> destination)
    {
        if (dtype == CheckpointDType.Float32 && BitConverter.IsLittleEndian)
        {
            MemoryMarshal.Cast<byte, float>(src).CopyTo(destination);
            return;
        }
        int esize = dtype.ElementSize();
        for (int i = 0; i < destination.Length; i++) destination[i] = ElementAsFloat32(src, i * esize, dtype);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Key} {Describe()}";
}
