using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;

namespace GhmGen.Checkpoints;

/// <summary>What a <see cref="PickleValue"/> holds.</summary>
public enum PickleValueKind
{
    /// <summary>Python <c>None</c>.</summary>
    None,

    /// <summary>Python <c>bool</c>.</summary>
    Bool,

    /// <summary>Python <c>int</c> that fits in 64 bits.</summary>
    Int,

    /// <summary>Python <c>int</c> wider than 64 bits.</summary>
    BigInt,

    /// <summary>Python <c>float</c> (a double).</summary>
    Float,

    /// <summary>Python <c>str</c>.</summary>
    String,

    /// <summary>Python <c>bytes</c>.</summary>
    Bytes,

    /// <summary>Python <c>list</c>.</summary>
    List,

    /// <summary>Python <c>tuple</c>.</summary>
    Tuple,

    /// <summary>Python <c>dict</c> or <c>collections.OrderedDict</c>, in insertion order.</summary>
    Dict,

    /// <summary>A tensor (a view of a storage in the checkpoint).</summary>
    Tensor,
}

/// <summary>
/// A plain value read from (or to be written into) a checkpoint pickle: the tree of
/// None/bool/int/float/str/bytes/list/tuple/dict that mmdetection's <c>meta</c> holds, plus tensors.
/// Trees read from files are acyclic and at most <see cref="MaxDepth"/> deep.
/// </summary>
public sealed class PickleValue
{
    /// <summary>Deepest nesting of containers accepted in a file (and written by us).</summary>
    public const int MaxDepth = 100;

    private static readonly PickleValue NoneValue = new(PickleValueKind.None);
    private static readonly PickleValue TrueValue = new(PickleValueKind.Bool) { _int = 1 };
    private static readonly PickleValue FalseValue = new(PickleValueKind.Bool);

    private long _int;
    private double _float;
    private object? _ref;
    private Dictionary<string, int>? _stringKeys;
    private Dictionary<long, int>? _intKeys;

    private PickleValue(PickleValueKind kind) => Kind = kind;

    /// <summary>What this value holds.</summary>
    public PickleValueKind Kind { get; }

    /// <summary>For dicts: whether it was (or will be written as) a <c>collections.OrderedDict</c>.</summary>
    public bool IsOrderedDict { get; private set; }

    /// <summary>Python <c>None</c>.</summary>
    public static PickleValue None => NoneValue;

    /// <summary>A bool.</summary>
    public static PickleValue FromBool(bool value) => value ? TrueValue : FalseValue;

    /// <summary>An int.</summary>
    public static PickleValue FromInt64(long value) => new(PickleValueKind.Int) { _int = value };

    /// <summary>An int of any size (stored as <see cref="PickleValueKind.Int"/> when it fits 64 bits).</summary>
    public static PickleValue FromBigInteger(BigInteger value) =>
        value >= long.MinValue && value <= long.MaxValue ? FromInt64((long)value) : new(PickleValueKind.BigInt) { _ref = value };

    /// <summary>A float.</summary>
    public static PickleValue FromDouble(double value) => new(PickleValueKind.Float) { _float = value };

    /// <summary>A str.</summary>
    public static PickleValue FromString(string value) =>
        new(PickleValueKind.String) { _ref = value ?? throw new ArgumentNullException(nameof(value)) };

    /// <summary>A bytes object.</summary>
    public static PickleValue FromBytes(byte[] value) =>
        new(PickleValueKind.Bytes) { _ref = value ?? throw new ArgumentNullException(nameof(value)) };

    /// <summary>A list of the given items.</summary>
    public static PickleValue NewList(IEnumerable<PickleValue> items) => new(PickleValueKind.List) { _ref = new List<PickleValue>(items) };

    /// <summary>A tuple of the given items.</summary>
    public static PickleValue NewTuple(params IEnumerable<PickleValue> items) => new(PickleValueKind.Tuple) { _ref = new List<PickleValue>(items) };

    /// <summary>A dict (or OrderedDict) of the given entries, in order; a repeated key keeps its last value.</summary>
    public static PickleValue NewDict(IEnumerable<KeyValuePair<PickleValue, PickleValue>> entries, bool ordered = false)
    {
        PickleValue dict = NewEmptyDict(ordered);
        foreach (KeyValuePair<PickleValue, PickleValue> entry in entries) dict.SetItem(entry.Key, entry.Value);
        return dict;
    }

    /// <summary>A dict with string keys, in order.</summary>
    public static PickleValue NewDict(IEnumerable<KeyValuePair<string, PickleValue>> entries, bool ordered = false) =>
        NewDict(entries.Select(e => KeyValuePair.Create(FromString(e.Key), e.Value)), ordered);

    internal static PickleValue NewEmptyList() => new(PickleValueKind.List) { _ref = new List<PickleValue>() };

    internal static PickleValue NewEmptyDict(bool ordered) =>
        new(PickleValueKind.Dict) { _ref = new List<KeyValuePair<PickleValue, PickleValue>>(), IsOrderedDict = ordered };

    internal static PickleValue FromTensor(CheckpointTensor tensor) => new(PickleValueKind.Tensor) { _ref = tensor };

    /// <summary>The bool value.</summary>
    public bool AsBool => Kind == PickleValueKind.Bool ? _int != 0 : throw WrongKind("bool");

    /// <summary>The int value (bools count as 0/1, as in Python).</summary>
    public long AsInt64 => Kind is PickleValueKind.Int or PickleValueKind.Bool ? _int : throw WrongKind("int");

    /// <summary>The int value at any size.</summary>
    public BigInteger AsBigInteger => Kind == PickleValueKind.BigInt ? (BigInteger)_ref! : AsInt64;

    /// <summary>The float value (ints convert).</summary>
    public double AsDouble => Kind switch
    {
        PickleValueKind.Float => _float,
        PickleValueKind.Int or PickleValueKind.Bool => _int,
        PickleValueKind.BigInt => (double)(BigInteger)_ref!,
        _ => throw WrongKind("float"),
    };

    /// <summary>The str value.</summary>
    public string AsString => Kind == PickleValueKind.String ? (string)_ref! : throw WrongKind("str");

    /// <summary>The bytes value.</summary>
    public ReadOnlyMemory<byte> AsBytes => Kind == PickleValueKind.Bytes ? (byte[])_ref! : throw WrongKind("bytes");

    /// <summary>The tensor.</summary>
    public CheckpointTensor AsTensor => Kind == PickleValueKind.Tensor ? (CheckpointTensor)_ref! : throw WrongKind("tensor");

    /// <summary>Items of a list or tuple.</summary>
    public IReadOnlyList<PickleValue> Items => Kind is PickleValueKind.List or PickleValueKind.Tuple
        ? (List<PickleValue>)_ref! : throw WrongKind("list or tuple");

    /// <summary>Entries of a dict, in insertion order.</summary>
    public IReadOnlyList<KeyValuePair<PickleValue, PickleValue>> Entries => Kind == PickleValueKind.Dict
        ? (List<KeyValuePair<PickleValue, PickleValue>>)_ref! : throw WrongKind("dict");

    /// <summary>The dict's value for a str key, or null when this is not a dict or has no such key.</summary>
    public PickleValue? this[string key] =>
        Kind == PickleValueKind.Dict && _stringKeys != null && _stringKeys.TryGetValue(key, out int i) ? DictEntries[i].Value : null;

    private List<KeyValuePair<PickleValue, PickleValue>> DictEntries => (List<KeyValuePair<PickleValue, PickleValue>>)_ref!;

    internal List<PickleValue> MutableItems => (List<PickleValue>)_ref!;

    internal void SetItem(PickleValue key, PickleValue value)
    {
        List<KeyValuePair<PickleValue, PickleValue>> entries = DictEntries;
        int existing = -1;
        if (key.Kind == PickleValueKind.String)
        {
            _stringKeys ??= new Dictionary<string, int>(StringComparer.Ordinal);
            if (!_stringKeys.TryAdd((string)key._ref!, entries.Count)) existing = _stringKeys[(string)key._ref!];
        }
        else if (key.Kind is PickleValueKind.Int or PickleValueKind.Bool)
        {
            _intKeys ??= [];
            if (!_intKeys.TryAdd(key._int, entries.Count)) existing = _intKeys[key._int];
        }
        if (existing >= 0) entries[existing] = KeyValuePair.Create(entries[existing].Key, value);
        else entries.Add(KeyValuePair.Create(key, value));
    }

    private InvalidOperationException WrongKind(string wanted) =>
        new($"pickle value is {Kind.ToString().ToLowerInvariant()}, not {wanted}");

    /// <summary>
    /// Writes the value as JSON: dicts become objects (non-str keys written as their Python repr),
    /// lists and tuples arrays, None null, non-finite floats strings, bytes base64, tensors
    /// <c>"tensor float32 [2, 3]"</c>.
    /// </summary>
    public void WriteJson(Utf8JsonWriter writer) => WriteJson(writer, 0);

    private void WriteJson(Utf8JsonWriter writer, int depth)
    {
        if (depth > MaxDepth) throw new InvalidOperationException($"pickle value nests deeper than {MaxDepth}");
        switch (Kind)
        {
            case PickleValueKind.None: writer.WriteNullValue(); break;
            case PickleValueKind.Bool: writer.WriteBooleanValue(_int != 0); break;
            case PickleValueKind.Int: writer.WriteNumberValue(_int); break;
            case PickleValueKind.BigInt: writer.WriteRawValue(((BigInteger)_ref!).ToString(CultureInfo.InvariantCulture)); break;
            case PickleValueKind.Float:
                if (double.IsFinite(_float)) writer.WriteNumberValue(_float);
                else writer.WriteStringValue(_float.ToString(CultureInfo.InvariantCulture));
                break;
            case PickleValueKind.String: writer.WriteStringValue((string)_ref!); break;
            case PickleValueKind.Bytes: writer.WriteBase64StringValue((byte[])_ref!); break;
            case PickleValueKind.Tensor: writer.WriteStringValue("tensor " + ((CheckpointTensor)_ref!).Describe()); break;
            case PickleValueKind.List:
            case PickleValueKind.Tuple:
                writer.WriteStartArray();
                foreach (PickleValue item in MutableItems) item.WriteJson(writer, depth + 1);
                writer.WriteEndArray();
                break;
            default:
                writer.WriteStartObject();
                foreach (KeyValuePair<PickleValue, PickleValue> entry in DictEntries)
                {
                    writer.WritePropertyName(entry.Key.Kind == PickleValueKind.String ? entry.Key.AsString : entry.Key.ToString());
                    entry.Value.WriteJson(writer, depth + 1);
                }
                writer.WriteEndObject();
                break;
        }
    }

    /// <summary>The value as Python would print it (tensors shortened).</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        AppendRepr(text, 0);
        return text.ToString();
    }

    private void AppendRepr(StringBuilder text, int depth)
    {
        if (depth > MaxDepth)
        {
            text.Append("...");
            return;
        }
        switch (Kind)
        {
            case PickleValueKind.None: text.Append("None"); break;
            case PickleValueKind.Bool: text.Append(_int != 0 ? "True" : "False"); break;
            case PickleValueKind.Int: text.Append(_int.ToString(CultureInfo.InvariantCulture)); break;
            case PickleValueKind.BigInt: text.Append(((BigInteger)_ref!).ToString(CultureInfo.InvariantCulture)); break;
            case PickleValueKind.Float: text.Append(_float.ToString("R", CultureInfo.InvariantCulture)); break;
            case PickleValueKind.String: text.Append('\'').Append(((string)_ref!).Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n")).Append('\''); break;
            case PickleValueKind.Bytes: text.Append("b<").Append(((byte[])_ref!).Length).Append(" bytes>"); break;
            case PickleValueKind.Tensor: text.Append("tensor(").Append(((CheckpointTensor)_ref!).Describe()).Append(')'); break;
            case PickleValueKind.List:
            case PickleValueKind.Tuple:
                List<PickleValue> items = MutableItems;
                text.Append(Kind == PickleValueKind.List ? '[' : '(');
                for (int i = 0; i < items.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    items[i].AppendRepr(text, depth + 1);
                }
                if (Kind == PickleValueKind.Tuple && items.Count == 1) text.Append(',');
                text.Append(Kind == PickleValueKind.List ? ']' : ')');
                break;
            default:
                text.Append('{');
                bool first = true;
                foreach (KeyValuePair<PickleValue, PickleValue> entry in DictEntries)
                {
                    if (!first) text.Append(", ");
                    first = false;
                    entry.Key.AppendRepr(text, depth + 1);
                    text.Append(": ");
                    entry.Value.AppendRepr(text, depth + 1);
                }
                text.Append('}');
                break;
        }
    }
}
