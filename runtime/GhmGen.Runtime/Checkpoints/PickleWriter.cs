using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;
using GhmGen.Layers;

namespace GhmGen.Checkpoints;

/// <summary>
/// Emits pickle protocol 2 the way <c>torch.save</c> does for a checkpoint: plain values, an
/// OrderedDict state dict, and tensors as <c>_rebuild_tensor_v2</c> calls whose storages are
/// persistent ids <c>('storage', torch.XStorage, key, 'cpu', numel)</c>.
/// </summary>
internal sealed class PickleWriter
{
    private readonly MemoryStream _out = new();

    public PickleWriter() => Op(0x80, 2);

    public byte[] Finish()
    {
        _out.WriteByte((byte)'.');
        return _out.ToArray();
    }

    private void Op(byte op) => _out.WriteByte(op);

    private void Op(byte op, byte argument)
    {
        _out.WriteByte(op);
        _out.WriteByte(argument);
    }

    public void Mark() => Op((byte)'(');

    public void EmptyDict() => Op((byte)'}');

    public void SetItems() => Op((byte)'u');

    public void Tuple() => Op((byte)'t');

    public void Reduce() => Op((byte)'R');

    public void Global(string module, string name)
    {
        Op((byte)'c');
        _out.Write(Encoding.ASCII.GetBytes(module + "\n" + name + "\n"));
    }

    public void NewOrderedDict()
    {
        Global("collections", "OrderedDict");
        Op((byte)')');
        Reduce();
    }

    public void Int(long value)
    {
        if (value is >= 0 and <= byte.MaxValue)
        {
            Op((byte)'K', (byte)value);
        }
        else if (value is >= 0 and <= ushort.MaxValue)
        {
            Op((byte)'M');
            Span<byte> b = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)value);
            _out.Write(b);
        }
        else if (value is >= int.MinValue and <= int.MaxValue)
        {
            Op((byte)'J');
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)value);
            _out.Write(b);
        }
        else
        {
            BigInt(value);
        }
    }

    private void BigInt(BigInteger value)
    {
        byte[] bytes = value.ToByteArray(isUnsigned: false, isBigEndian: false);
        if (bytes.Length > byte.MaxValue) throw new ArgumentException($"int {value} is too large to write");
        Op(0x8a, (byte)bytes.Length);
        _out.Write(bytes);
    }

    public void String(string value)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(value);
        Op((byte)'X');
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)utf8.Length);
        _out.Write(b);
        _out.Write(utf8);
    }

    /// <summary>A tensor over a whole storage: <c>_rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())</c>.</summary>
    public void Tensor(string storageKey, CheckpointDType dtype, IReadOnlyList<int> shape)
    {
        long numel = 1;
        foreach (int d in shape) numel *= d;
        Global("torch._utils", "_rebuild_tensor_v2");
        Mark();
        Mark();
        String("storage");
        Global("torch", dtype.StorageName());
        String(storageKey);
        String("cpu");
        Int(numel);
        Tuple();
        Op((byte)'Q'); // BINPERSID
        Int(0);
        Mark();
        foreach (int d in shape) Int(d);
        Tuple();
        Mark();
        long stride = 1;
        var strides = new long[shape.Count];
        for (int d = shape.Count - 1; d >= 0; d--)
        {
            strides[d] = stride;
            stride *= shape[d];
        }
        foreach (long s in strides) Int(s);
        Tuple();
        Op(0x89); // requires_grad = False
        NewOrderedDict(); // backward_hooks
        Tuple();
        Reduce();
    }

    /// <summary>
    /// A state dict: <c>OrderedDict</c> of key to tensor, in order. Each tensor's data is appended
    /// to <paramref name="storages"/>, and its storage key is its index there.
    /// </summary>
    public void StateDict(IReadOnlyList<StateTensor> tensors, List<StorageSource> storages)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (StateTensor tensor in tensors)
        {
            if (!seen.Add(tensor.Key)) throw new ArgumentException($"state key '{tensor.Key}' appears twice", nameof(tensors));
        }
        NewOrderedDict();
        if (tensors.Count == 0) return;
        Mark();
        foreach (StateTensor tensor in tensors)
        {
            String(tensor.Key);
            Tensor(storages, StorageSource.Of(tensor), tensor.ElementType == StateElementType.Int64 ? CheckpointDType.Int64 : CheckpointDType.Float32, tensor.Shape);
        }
        SetItems();
    }

    /// <summary>A tensor over a new storage holding <paramref name="data"/>, appended to <paramref name="storages"/>.</summary>
    public void Tensor(List<StorageSource> storages, StorageSource data, CheckpointDType dtype, IReadOnlyList<int> shape)
    {
        Tensor(storages.Count.ToString(CultureInfo.InvariantCulture), dtype, shape);
        storages.Add(data);
    }

    /// <summary>A plain value (no tensors) such as mmdetection's meta dict.</summary>
    public void Value(PickleValue value, int depth = 0)
    {
        if (depth > PickleValue.MaxDepth) throw new ArgumentException($"meta nests deeper than {PickleValue.MaxDepth} levels");
        switch (value.Kind)
        {
            case PickleValueKind.None: Op((byte)'N'); break;
            case PickleValueKind.Bool: Op(value.AsBool ? (byte)0x88 : (byte)0x89); break;
            case PickleValueKind.Int: Int(value.AsInt64); break;
            case PickleValueKind.BigInt: BigInt(value.AsBigInteger); break;
            case PickleValueKind.Float:
            {
                Op((byte)'G');
                Span<byte> b = stackalloc byte[8];
                BinaryPrimitives.WriteDoubleBigEndian(b, value.AsDouble);
                _out.Write(b);
                break;
            }
            case PickleValueKind.String: String(value.AsString); break;
            case PickleValueKind.Bytes:
                // Protocol 2 has no bytes opcode; Python writes _codecs.encode(latin-1 text, 'latin1').
                Global("_codecs", "encode");
                Mark();
                String(Encoding.Latin1.GetString(value.AsBytes.Span));
                String("latin1");
                Tuple();
                Reduce();
                break;
            case PickleValueKind.List:
                Op((byte)']');
                if (value.Items.Count > 0)
                {
                    Mark();
                    foreach (PickleValue item in value.Items) Value(item, depth + 1);
                    Op((byte)'e');
                }
                break;
            case PickleValueKind.Tuple:
                Mark();
                foreach (PickleValue item in value.Items) Value(item, depth + 1);
                Tuple();
                break;
            case PickleValueKind.Dict:
                if (value.IsOrderedDict) NewOrderedDict();
                else EmptyDict();
                if (value.Entries.Count > 0)
                {
                    Mark();
                    foreach (KeyValuePair<PickleValue, PickleValue> entry in value.Entries)
                    {
                        Value(entry.Key, depth + 1);
                        Value(entry.Value, depth + 1);
                    }
                    SetItems();
                }
                break;
            default:
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"a {value.Kind} cannot be written inside meta"));
        }
    }
}
