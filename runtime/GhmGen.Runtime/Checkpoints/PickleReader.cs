using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace GhmGen.Checkpoints;

/// <summary>A pickle global that the reader accepts (see <see cref="PickleReader"/>).</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => Module + "." + Name;

    public CheckpointDType? StorageDType => Module == "torch" ? CheckpointDTypes.FromStorageName(Name) : null;
}

/// <summary>
/// A pickle interpreter that builds only what a state dict needs. It runs the protocol 0-4 binary
/// opcodes that <c>torch.save</c> and Python's pickler emit for plain data, resolves persistent
/// ids (storages) through a callback, and accepts exactly these globals:
/// <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor_v2</c> (and the older
/// <c>_rebuild_tensor</c>), <c>torch._utils._rebuild_parameter</c>, the eight
/// <c>torch.*Storage</c> types, and <c>_codecs.encode</c> (how protocol 2 spells bytes).
/// Anything else, including every other global, is refused with its name. The result is checked
/// to be acyclic, at most <see cref="PickleValue.MaxDepth"/> deep and of bounded expanded size.
/// </summary>
internal sealed class PickleReader(string fileName, Func<object[], CheckpointStorage> loadStorage)
{
    /// <summary>Most values a result may expand to when shared sub-trees are counted each time.</summary>
    public const long MaxExpandedValues = 1_000_000;

    private const int MaxBigIntegerBytes = 1024;
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);
    private static readonly object Mark = new();

    private readonly List<object> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object> _memo = [];
    private int _opPosition;

    /// <summary>Runs one pickle starting at <paramref name="data"/>[0]; returns its value and how many bytes it used.</summary>
    public object Read(ReadOnlySpan<byte> data, out int consumed)
    {
        _stack.Clear();
        _marks.Clear();
        _memo.Clear();
        int pos = 0;
        while (true)
        {
            _opPosition = pos;
            if (pos >= data.Length) throw Fail("pickle ends without STOP (file truncated?)");
            byte op = data[pos++];
            switch (op)
            {
                case 0x80: // PROTO
                    byte protocol = Bytes(data, ref pos, 1)[0];
                    if (protocol > 5) throw Fail($"pickle protocol {protocol} is not supported");
                    break;
                case 0x95: // FRAME (protocol 4): a length hint only
                    Bytes(data, ref pos, 8);
                    break;
                case (byte)'.': // STOP
                    if (_stack.Count != 1 || _marks.Count != 0) throw Fail($"pickle stops with {_stack.Count} values on the stack");
                    consumed = pos;
                    object result = _stack[0];
                    if (result is PickleValue tree) CheckTree(tree);
                    return result;
                case (byte)'(': _marks.Add(_stack.Count); break;
                case (byte)')': Push(PickleValue.NewTuple()); break;
                case (byte)']': Push(PickleValue.NewEmptyList()); break;
                case (byte)'}': Push(PickleValue.NewEmptyDict(ordered: false)); break;
                case (byte)'N': Push(PickleValue.None); break;
                case 0x88: Push(PickleValue.FromBool(true)); break;
                case 0x89: Push(PickleValue.FromBool(false)); break;
                case (byte)'J': Push(PickleValue.FromInt64(BinaryPrimitives.ReadInt32LittleEndian(Bytes(data, ref pos, 4)))); break;
                case (byte)'K': Push(PickleValue.FromInt64(Bytes(data, ref pos, 1)[0])); break;
                case (byte)'M': Push(PickleValue.FromInt64(BinaryPrimitives.ReadUInt16LittleEndian(Bytes(data, ref pos, 2)))); break;
                case 0x8a: // LONG1
                    Push(PickleValue.FromBigInteger(new BigInteger(Bytes(data, ref pos, Bytes(data, ref pos, 1)[0]), isUnsigned: false, isBigEndian: false)));
                    break;
                case 0x8b: // LONG4
                {
                    int n = BinaryPrimitives.ReadInt32LittleEndian(Bytes(data, ref pos, 4));
                    if (n < 0 || n > MaxBigIntegerBytes) throw Fail($"LONG4 of {n} bytes is not accepted");
                    Push(PickleValue.FromBigInteger(new BigInteger(Bytes(data, ref pos, n), isUnsigned: false, isBigEndian: false)));
                    break;
                }
                case (byte)'G': Push(PickleValue.FromDouble(BinaryPrimitives.ReadDoubleBigEndian(Bytes(data, ref pos, 8)))); break;
                case (byte)'X': Push(PickleValue.FromString(Utf8(Bytes(data, ref pos, Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(data, ref pos, 4)), data, pos))))); break;
                case 0x8c: Push(PickleValue.FromString(Utf8(Bytes(data, ref pos, Bytes(data, ref pos, 1)[0])))); break;
                case 0x8d: Push(PickleValue.FromString(Utf8(Bytes(data, ref pos, Length(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(data, ref pos, 8)), data, pos))))); break;
                case (byte)'U': Push(PickleValue.FromString(Latin1OrUtf8(Bytes(data, ref pos, Bytes(data, ref pos, 1)[0])))); break;
                case (byte)'T': Push(PickleValue.FromString(Latin1OrUtf8(Bytes(data, ref pos, Length((uint)BinaryPrimitives.ReadInt32LittleEndian(Bytes(data, ref pos, 4)), data, pos))))); break;
                case (byte)'C': Push(PickleValue.FromBytes(Bytes(data, ref pos, Bytes(data, ref pos, 1)[0]).ToArray())); break;
                case (byte)'B': Push(PickleValue.FromBytes(Bytes(data, ref pos, Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(data, ref pos, 4)), data, pos)).ToArray())); break;
                case 0x8e: Push(PickleValue.FromBytes(Bytes(data, ref pos, Length(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(data, ref pos, 8)), data, pos)).ToArray())); break;
                case (byte)'q': _memo[Bytes(data, ref pos, 1)[0]] = Top(); break;
                case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Bytes(data, ref pos, 4))] = Top(); break;
                case 0x94: _memo[_memo.Count] = Top(); break; // MEMOIZE
                case (byte)'h': Push(Memo(Bytes(data, ref pos, 1)[0])); break;
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(data, ref pos, 4)))); break;
                case (byte)'t': Push(MakeTuple(PopToMark())); break;
                case 0x85: Push(MakeTuple(PopN(1))); break;
                case 0x86: Push(MakeTuple(PopN(2))); break;
                case 0x87: Push(MakeTuple(PopN(3))); break;
                case (byte)'l': // LIST (protocol 0/1)
                    Push(PickleValue.NewList(PopToMark().Select(AsValue)));
                    break;
                case (byte)'d': // DICT (protocol 0/1)
                {
                    object[] items = PopToMark();
                    if (items.Length % 2 != 0) throw Fail("DICT with an odd number of items");
                    PickleValue dict = PickleValue.NewEmptyDict(ordered: false);
                    for (int i = 0; i < items.Length; i += 2) dict.SetItem(AsValue(items[i]), AsValue(items[i + 1]));
                    Push(dict);
                    break;
                }
                case (byte)'a': // APPEND
                {
                    PickleValue item = AsValue(Pop());
                    ListAt(_stack.Count - 1).MutableItems.Add(item);
                    break;
                }
                case (byte)'e': // APPENDS
                {
                    object[] items = PopToMark();
                    PickleValue list = ListAt(_stack.Count - 1);
                    foreach (object item in items) list.MutableItems.Add(AsValue(item));
                    break;
                }
                case (byte)'s': // SETITEM
                {
                    PickleValue value = AsValue(Pop());
                    PickleValue key = AsValue(Pop());
                    DictAt(_stack.Count - 1).SetItem(key, value);
                    break;
                }
                case (byte)'u': // SETITEMS
                {
                    object[] items = PopToMark();
                    if (items.Length % 2 != 0) throw Fail("SETITEMS with an odd number of items");
                    PickleValue dict = DictAt(_stack.Count - 1);
                    for (int i = 0; i < items.Length; i += 2) dict.SetItem(AsValue(items[i]), AsValue(items[i + 1]));
                    break;
                }
                case (byte)'c': // GLOBAL "module\nname\n"
                {
                    string module = Line(data, ref pos);
                    string name = Line(data, ref pos);
                    Push(Global(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    PickleValue name = AsValue(Pop());
                    PickleValue module = AsValue(Pop());
                    if (name.Kind != PickleValueKind.String || module.Kind != PickleValueKind.String) throw Fail("STACK_GLOBAL needs two strings");
                    Push(Global(module.AsString, name.AsString));
                    break;
                }
                case (byte)'R': // REDUCE
                {
                    object args = Pop();
                    object callable = Pop();
                    Push(Reduce(callable, args));
                    break;
                }
                case (byte)'Q': // BINPERSID
                {
                    object pid = Pop();
                    object[] fields = TupleItems(pid) ?? throw Fail("persistent id is not a tuple");
                    Push(loadStorage(fields));
                    break;
                }
                case (byte)'b': // BUILD
                {
                    object state = Pop();
                    object target = Top();
                    // Module.state_dict() is an OrderedDict with a `_metadata` attribute; it only
                    // records module versions, so it is accepted and dropped.
                    if (target is PickleValue { Kind: PickleValueKind.Dict, IsOrderedDict: true }
                        && state is PickleValue { Kind: PickleValueKind.Dict or PickleValueKind.None })
                    {
                        break;
                    }
                    throw Fail($"BUILD on {Describe(target)} is not supported");
                }
                case (byte)'0': Pop(); break; // POP
                case (byte)'1': PopToMark(); break; // POP_MARK
                case (byte)'2': Push(Top()); break; // DUP
                default:
                    throw Fail($"pickle opcode 0x{op:x2} ('{(op is >= 0x20 and < 0x7f ? (char)op : '?')}') is not supported");
            }
        }
    }

    private CheckpointFormatException Fail(string problem) => new(fileName, $"{problem} (pickle byte {_opPosition})");

    private ReadOnlySpan<byte> Bytes(ReadOnlySpan<byte> data, ref int pos, int count)
    {
        if (count < 0 || count > data.Length - pos) throw Fail($"pickle needs {count} more bytes but only {data.Length - pos} remain (file truncated?)");
        ReadOnlySpan<byte> slice = data.Slice(pos, count);
        pos += count;
        return slice;
    }

    /// <summary>A declared length, checked against what is left before anything is allocated.</summary>
    private int Length(ulong declared, ReadOnlySpan<byte> data, int pos)
    {
        if (declared > (ulong)(data.Length - pos)) throw Fail($"declared length {declared} exceeds the {data.Length - pos} bytes that remain");
        return (int)declared;
    }

    private string Line(ReadOnlySpan<byte> data, ref int pos)
    {
        int end = data[pos..].IndexOf((byte)'\n');
        if (end < 0 || end > 256) throw Fail("GLOBAL name is not terminated");
        string text = Encoding.ASCII.GetString(data.Slice(pos, end));
        pos += end + 1;
        return text;
    }

    private string Utf8(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Fail("string is not valid UTF-8");
        }
    }

    private static string Latin1OrUtf8(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return Encoding.Latin1.GetString(bytes);
        }
    }

    private void Push(object value) => _stack.Add(value);

    private object Top() => _stack.Count > 0 && (_marks.Count == 0 || _marks[^1] < _stack.Count)
        ? _stack[^1] : throw Fail("stack underflow");

    private object Pop()
    {
        object top = Top();
        _stack.RemoveAt(_stack.Count - 1);
        return top;
    }

    private object[] PopN(int n)
    {
        int floor = _marks.Count > 0 ? _marks[^1] : 0;
        if (_stack.Count - floor < n) throw Fail("stack underflow");
        object[] items = _stack.GetRange(_stack.Count - n, n).ToArray();
        _stack.RemoveRange(_stack.Count - n, n);
        return items;
    }

    private object[] PopToMark()
    {
        if (_marks.Count == 0) throw Fail("no MARK on the stack");
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        object[] items = _stack.GetRange(mark, _stack.Count - mark).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private object Memo(long index) => _memo.TryGetValue(index, out object? value) ? value : throw Fail($"memo entry {index} was never stored");

    private PickleValue ListAt(int index)
    {
        object target = index >= 0 && (_marks.Count == 0 || _marks[^1] <= index) ? _stack[index] : throw Fail("stack underflow");
        return target is PickleValue { Kind: PickleValueKind.List } list ? list : throw Fail($"APPEND to {Describe(target)}");
    }

    private PickleValue DictAt(int index)
    {
        object target = index >= 0 && (_marks.Count == 0 || _marks[^1] <= index) ? _stack[index] : throw Fail("stack underflow");
        return target is PickleValue { Kind: PickleValueKind.Dict } dict ? dict : throw Fail($"SETITEM on {Describe(target)}");
    }

    /// <summary>A tuple of plain values, or a raw object[] when it holds a storage or a global (only arguments do).</summary>
    private static object MakeTuple(object[] items) =>
        items.All(i => i is PickleValue) ? PickleValue.NewTuple(items.Cast<PickleValue>()) : items;

    private static object[]? TupleItems(object value) => value switch
    {
        object[] raw => raw,
        PickleValue { Kind: PickleValueKind.Tuple } tuple => [.. tuple.Items],
        _ => null,
    };

    private PickleValue AsValue(object item) =>
        item as PickleValue ?? throw Fail($"{Describe(item)} cannot be stored in a container");

    private static string Describe(object item) => item switch
    {
        PickleValue v => v.Kind.ToString().ToLowerInvariant(),
        PickleGlobal g => "global '" + g.FullName + "'",
        CheckpointStorage => "a storage",
        object[] => "a tuple holding a storage or global",
        _ => "a mark",
    };

    private PickleGlobal Global(string module, string name)
    {
        var global = new PickleGlobal(module, name);
        bool allowed = (module, name) switch
        {
            ("collections", "OrderedDict") => true,
            ("torch._utils", "_rebuild_tensor_v2" or "_rebuild_tensor" or "_rebuild_parameter") => true,
            ("_codecs", "encode") => true,
            ("torch", _) => global.StorageDType != null,
            _ => false,
        };
        if (!allowed) throw new CheckpointFormatException(fileName, $"pickle global '{global.FullName}' is not allowed");
        return global;
    }

    private object Reduce(object callable, object argsObject)
    {
        if (callable is not PickleGlobal global) throw Fail($"REDUCE calls {Describe(callable)}");
        object[] args = TupleItems(argsObject) ?? throw Fail($"REDUCE arguments for '{global.FullName}' are not a tuple");
        switch (global.FullName)
        {
            case "collections.OrderedDict":
            {
                PickleValue dict = PickleValue.NewEmptyDict(ordered: true);
                if (args.Length == 1 && args[0] is PickleValue { Kind: PickleValueKind.List or PickleValueKind.Tuple } pairs)
                {
                    foreach (PickleValue pair in pairs.Items)
                    {
                        if (pair.Kind is not (PickleValueKind.List or PickleValueKind.Tuple) || pair.Items.Count != 2) throw Fail("OrderedDict item is not a pair");
                        dict.SetItem(pair.Items[0], pair.Items[1]);
                    }
                }
                else if (args.Length != 0)
                {
                    throw Fail("OrderedDict takes no arguments or one list of pairs");
                }
                return dict;
            }
            case "torch._utils._rebuild_tensor_v2":
            case "torch._utils._rebuild_tensor":
                if (args.Length < 4 || args.Length > 7) throw Fail($"{global.Name} takes 4 to 7 arguments, got {args.Length}");
                return PickleValue.FromTensor(RebuildTensor(args));
            case "torch._utils._rebuild_parameter":
                if (args.Length != 3 || args[0] is not PickleValue { Kind: PickleValueKind.Tensor } data) throw Fail("_rebuild_parameter takes (tensor, requires_grad, hooks)");
                return data;
            case "_codecs.encode":
                if (args.Length != 2 || args[0] is not PickleValue { Kind: PickleValueKind.String } text || args[1] is not PickleValue { Kind: PickleValueKind.String } encoding)
                {
                    throw Fail("_codecs.encode takes (str, encoding)");
                }
                return encoding.AsString is "latin1" or "latin-1" or "iso-8859-1"
                    ? PickleValue.FromBytes(Encoding.Latin1.GetBytes(text.AsString))
                    : throw Fail($"_codecs.encode with encoding '{encoding.AsString}' is not supported");
            default:
                throw Fail($"'{global.FullName}' cannot be called");
        }
    }

    private CheckpointTensor RebuildTensor(object[] args)
    {
        if (args[0] is not CheckpointStorage storage) throw Fail("tensor storage is not a persistent storage record");
        long offset = IntArg(args[1], "storage offset");
        PickleValue size = args[2] as PickleValue ?? throw Fail("tensor size is not a tuple");
        PickleValue stride = args[3] as PickleValue ?? throw Fail("tensor stride is not a tuple");
        if (size.Kind != PickleValueKind.Tuple || stride.Kind != PickleValueKind.Tuple) throw Fail("tensor size and stride must be tuples");
        int rank = size.Items.Count;
        if (stride.Items.Count != rank) throw Fail($"tensor has {rank} sizes but {stride.Items.Count} strides");
        if (rank > 64) throw Fail($"tensor rank {rank} is not supported");
        var shape = new int[rank];
        var strides = new long[rank];
        long count = 1;
        for (int d = 0; d < rank; d++)
        {
            long n = IntArg(size.Items[d], "tensor size");
            long s = IntArg(stride.Items[d], "tensor stride");
            if (n > int.MaxValue) throw Fail($"tensor size {n} is too large");
            shape[d] = (int)n;
            strides[d] = s;
            count = n == 0 || count == 0 ? 0 : (count > int.MaxValue / n ? throw Fail("tensor has more than 2^31 elements") : count * n);
        }
        if (count > storage.ElementCount)
        {
            // Only stride-0 (expanded) views can do this; refusing them bounds every read by the file size.
            throw Fail($"tensor view {size} has {count} elements but its storage only {storage.ElementCount}");
        }
        if (count > 0)
        {
            // The last element the view touches must lie inside the storage; each step is
            // checked before it is added so nothing overflows.
            if (offset >= storage.ElementCount) throw Fail($"tensor offset {offset} is outside its storage of {storage.ElementCount} elements");
            long last = offset;
            for (int d = 0; d < rank; d++)
            {
                if (shape[d] > 1 && strides[d] > 0)
                {
                    if (shape[d] - 1 > (storage.ElementCount - 1 - last) / strides[d])
                    {
                        throw Fail($"tensor view {size} with strides {stride} at offset {offset} reaches past its storage of {storage.ElementCount} elements");
                    }
                    last += (shape[d] - 1) * strides[d];
                }
            }
        }
        return new CheckpointTensor("", storage, offset, shape, strides, count);
    }

    private long IntArg(object value, string what)
    {
        if (value is PickleValue { Kind: PickleValueKind.Int } v && v.AsInt64 >= 0) return v.AsInt64;
        throw Fail($"{what} is not a non-negative int");
    }

    /// <summary>Rejects cycles, nesting deeper than the limit and DAGs that expand beyond the limit.</summary>
    private void CheckTree(PickleValue root)
    {
        // Post-order over the DAG with an explicit stack; each node is finished once and memoised.
        var finished = new Dictionary<PickleValue, (int Height, long Size)>(ReferenceEqualityComparer.Instance);
        var onPath = new HashSet<PickleValue>(ReferenceEqualityComparer.Instance);
        var work = new Stack<(PickleValue Node, int Next)>();
        work.Push((root, 0));
        onPath.Add(root);
        while (work.Count > 0)
        {
            (PickleValue node, int next) = work.Pop();
            PickleValue? child = ChildAt(node, next);
            if (child != null)
            {
                work.Push((node, next + 1));
                if (finished.ContainsKey(child)) continue;
                if (!onPath.Add(child)) throw Fail("pickle builds a self-referencing structure");
                if (work.Count >= PickleValue.MaxDepth) throw Fail($"pickle nests deeper than {PickleValue.MaxDepth} levels");
                work.Push((child, 0));
                continue;
            }
            int height = 0;
            long size = 1;
            for (int i = 0; ChildAt(node, i) is { } c; i++)
            {
                (int h, long s) = finished[c];
                height = Math.Max(height, h + 1);
                size = Math.Min(MaxExpandedValues + 1, size + s);
            }
            if (size > MaxExpandedValues) throw Fail($"pickle expands to more than {MaxExpandedValues} values");
            finished[node] = (height, size);
            onPath.Remove(node);
        }
    }

    /// <summary>The i-th child of a container (dict keys and values alternate), or null past the end.</summary>
    private static PickleValue? ChildAt(PickleValue node, int i)
    {
        switch (node.Kind)
        {
            case PickleValueKind.List:
            case PickleValueKind.Tuple:
                return i < node.Items.Count ? node.Items[i] : null;
            case PickleValueKind.Dict:
                IReadOnlyList<KeyValuePair<PickleValue, PickleValue>> entries = node.Entries;
                return i / 2 < entries.Count ? (i % 2 == 0 ? entries[i / 2].Key : entries[i / 2].Value) : null;
            default:
                return null;
        }
    }
}
