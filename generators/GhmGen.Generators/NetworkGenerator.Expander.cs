using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using GhmGen.Generators.Diagnostics;
using GhmGen.Generators.Expressions;
using GhmGen.Generators.Models;
using Microsoft.CodeAnalysis;

namespace GhmGen.Generators;

public sealed partial class NetworkGenerator
{
    /// <summary>
    /// Flattens a network's blocks into one graph of layers, values and nodes, evaluating every
    /// expression and checking channels, groups, names, references, cycles and sizes.
    /// The first error stops the expansion of that network (later errors would only echo it).
    /// </summary>
    internal sealed class Expander
    {
        // Probe input sizes: the declared minimum (shrinking check) and an odd, non-square one
        // (operands of an add must agree at both).
        private readonly (long H, long W)[] _probes;
        private readonly Dictionary<string, BlockDecl> _blocks = new(StringComparer.Ordinal);
        private readonly List<LayerModel> _layers = [];
        private readonly Dictionary<string, int> _layerByKey = new(StringComparer.Ordinal);
        private readonly List<ValueModel> _values = [];
        private readonly List<(long H, long W)[]> _sizes = [];
        private readonly Dictionary<string, int> _valueByName = new(StringComparer.Ordinal);
        private readonly List<NodeModel> _nodes = [];
        private readonly List<NodeLocation> _nodeLocations = [];
        private readonly List<string> _parts = [];
        private readonly BlockDecl _type;
        private readonly NetworkDecl _network;
        // Frozen key paths of the network, and whether each named at least one layer.
        private readonly List<string> _frozen;
        private readonly bool[] _frozenUsed;

        private Expander(BlockDecl type, NetworkDecl network, IEnumerable<BlockDecl> blocks)
        {
            _type = type;
            _network = network;
            foreach (BlockDecl b in blocks)
                if (!_blocks.ContainsKey(b.TypeName)) _blocks.Add(b.TypeName, b);
            long min = network.MinInputSize;
            _probes = [(min, min), (3 * min + 5, 2 * min + 7)];
            _frozen = network.Frozen is null ? [] : IntExpression.SplitNames(network.Frozen);
            _frozenUsed = new bool[_frozen.Count];
        }

        public static ExpansionResult Expand(BlockDecl type, IEnumerable<BlockDecl> blocks)
        {
            // Errors in reading the attributes: a [Block] class reports its own on the blocks branch.
            if (type.Diagnostics.Count > 0)
                return new ExpansionResult(null, EquatableArray<NodeLocation>.Empty, type.IsBlock ? EquatableArray<DiagnosticInfo>.Empty : type.Diagnostics);
            if (type.IsNested)
                return Fail(Diag(DiagnosticDescriptors.NestedType, type.Location, type.TypeName));
            if (!type.IsPartial)
                return Fail(Diag(DiagnosticDescriptors.NotPartial, type.Location, type.TypeName));
            var expander = new Expander(type, type.Network!, blocks);
            try
            {
                NetworkModel model = expander.Run();
                return new ExpansionResult(model, expander._nodeLocations.ToEquatableArray(), EquatableArray<DiagnosticInfo>.Empty);
            }
            catch (ExpansionException e)
            {
                // An error inside a block read from a referenced assembly has no source location:
                // it is reported at the [Network] attribute that led to it.
                return e.Diagnostic is { } d ? Fail(d.Location is null ? d with { Location = type.Location } : d)
                    : new ExpansionResult(null, EquatableArray<NodeLocation>.Empty, EquatableArray<DiagnosticInfo>.Empty);
            }
        }

        private static ExpansionResult Fail(DiagnosticInfo d) => new(null, EquatableArray<NodeLocation>.Empty, new EquatableArray<DiagnosticInfo>([d]));

        private NetworkModel Run()
        {
            string networkName = _network.Name;
            if (_network.MinInputSize <= 0)
                throw Error(DiagnosticDescriptors.NonPositive, _network.Location, networkName, "MinInputSize", "positive", _network.MinInputSize.ToString());

            BlockDecl root = _type;
            var args = new Dictionary<string, long>(StringComparer.Ordinal);
            if (_network.Block is { } blockName)
            {
                root = FindBlock(blockName, _network.Location, []);
                args = EvaluateArgs(_network.Args, new Dictionary<string, long>(), networkName, _network.Location);
            }

            if (root.Inputs.Count != 1)
                throw Error(DiagnosticDescriptors.BadShape, _network.Location, networkName,
                    $"a network needs exactly one [Input] but '{root.TypeName}' declares {root.Inputs.Count}");
            InputDecl input = root.Inputs[0];
            if (input.Channels is not { } channelsText)
                throw Error(DiagnosticDescriptors.BadShape, input.Location, networkName,
                    $"the network input '{input.Name}' must declare Channels");
            long channels = Eval(channelsText, Scope(root, args, networkName, _network.Location), networkName, input.Location);
            RequirePositive(channels, "input channels", networkName, input.Location);
            int inputValue = AddValue(input.Name, (int)channels, _probes.Select(p => p).ToArray(), 1, input.Location);
            AddNode(input.Location, new InputNode(inputValue));

            Dictionary<string, int> outputs = ExpandBlock(root, "", "", args, [inputValue], _network.Location, "", shared: false, trainable: true, new List<string> { root.TypeName });
            if (outputs.Count == 0)
                throw Error(DiagnosticDescriptors.BadShape, _network.Location, networkName, "the network has no outputs");

            for (int i = 0; i < _frozen.Count; i++)
                if (!_frozenUsed[i])
                    throw Error(DiagnosticDescriptors.FrozenPathNamesNothing, _network.Location, networkName, _frozen[i]);

            return new NetworkModel(
                _type.TypeName, _type.Namespace, _type.Accessibility, networkName, _network.MinInputSize,
                _layers.ToEquatableArray(), _values.ToEquatableArray(), _nodes.ToEquatableArray(),
                outputs.Where(kv => kv.Key.Length > 0).Select(kv => new OutputModel(kv.Key, kv.Value)).ToEquatableArray(),
                _parts.ToEquatableArray());
        }

        /// <summary>
        /// Expands one instance of a block. Keys of its layers start with <paramref name="keyPrefix"/>,
        /// names of its values with <paramref name="valuePrefix"/>. When <paramref name="shared"/>, its
        /// layers already exist (a repeated application of shared weights) and are reused. Its layers
        /// are trained only when <paramref name="trainable"/> (no enclosing instance is frozen).
        /// Returns its outputs by name; the key "" is its default output.
        /// </summary>
        private Dictionary<string, int> ExpandBlock(BlockDecl block, string keyPrefix, string valuePrefix,
            Dictionary<string, long> args, List<int> inputValues, LocationInfo? callSite, string part, bool shared, bool trainable, List<string> stack)
        {
            Dictionary<string, long> scope = Scope(block, args, block.TypeName, callSite);

            if (block.Inputs.Count != inputValues.Count)
                throw Error(DiagnosticDescriptors.BadShape, callSite, block.TypeName,
                    $"block '{block.TypeName}' takes {block.Inputs.Count} input(s) but {inputValues.Count} are connected");

            var local = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < block.Inputs.Count; i++)
            {
                InputDecl input = block.Inputs[i];
                if (input.Channels is { } expected)
                {
                    long want = Eval(expected, scope, block.TypeName, input.Location);
                    int have = _values[inputValues[i]].Channels;
                    if (want != have)
                        throw Error(DiagnosticDescriptors.ChannelMismatch, callSite ?? input.Location,
                            $"input '{input.Name}' of block '{block.TypeName}'", want.ToString(), _values[inputValues[i]].Name, have.ToString());
                }
                local[input.Name] = inputValues[i];
            }

            // Layer ops in declaration order, with their names and references resolved to local names.
            var layerOps = new List<PlannedOp>();
            var byName = new Dictionary<string, PlannedOp>(StringComparer.Ordinal);
            string previous = block.Inputs.Count > 0 ? block.Inputs[0].Name : "";
            int autoIndex = 0;
            foreach (LayerDecl op in block.Layers)
            {
                string name = op.Name ?? $"{op.Kind.ToLowerInvariant()}{autoIndex++}";
                if (byName.ContainsKey(name) || local.ContainsKey(name))
                    throw Error(DiagnosticDescriptors.Duplicate, op.Location, name, $" in block '{block.TypeName}'");
                var refs = new List<string>();
                switch (op)
                {
                    case BufferDecl:
                        break;
                    case AddDecl add:
                        refs.Add(add.Left);
                        refs.Add(add.Right);
                        break;
                    case UpsampleDecl up:
                        refs.Add(up.From ?? previous);
                        refs.Add(up.SizeOf);
                        break;
                    case SharedDecl or UseDecl:
                        refs.AddRange(IntExpression.SplitNames(op.From ?? previous));
                        break;
                    default:
                        refs.Add(op.From ?? previous);
                        break;
                }
                var planned = new PlannedOp(op, name, refs, layerOps.Count);
                layerOps.Add(planned);
                byName[name] = planned;
                if (op is not BufferDecl) previous = name;
            }

            // Dependencies between ops of this block; order = topological, declaration order breaking ties.
            foreach (PlannedOp op in layerOps)
                foreach (string r in op.References)
                {
                    string? owner = OwnerOf(r, byName, local);
                    if (owner is null)
                        throw Error(DiagnosticDescriptors.UnknownValue, op.Decl.Location, $"'{op.Name}'", r,
                            $" in block '{block.TypeName}'; declare a layer or input of that name");
                    if (byName.TryGetValue(owner, out PlannedOp? dep)) op.DependsOn.Add(dep);
                }
            List<PlannedOp> order = TopologicalOrder(layerOps, block);

            foreach (PlannedOp op in order)
                ExecuteOp(op, block, scope, keyPrefix, valuePrefix, local, part, shared, trainable, stack);

            // Outputs: explicit, or the last layer's value.
            var outputs = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (OutputDecl o in block.Outputs)
            {
                if (outputs.ContainsKey(o.Name))
                    throw Error(DiagnosticDescriptors.Duplicate, o.Location, o.Name, $" among the outputs of '{block.TypeName}'");
                outputs[o.Name] = Resolve(o.From, local, o.Location, block.TypeName);
                if (!outputs.ContainsKey("")) outputs[""] = outputs[o.Name];
            }
            if (outputs.Count == 0)
            {
                PlannedOp? last = layerOps.LastOrDefault(o => o.Decl is not BufferDecl);
                if (last is not null) outputs[""] = local[last.Name];
                else if (block.Inputs.Count > 0) outputs[""] = local[block.Inputs[0].Name];
            }
            return outputs;
        }

        private void ExecuteOp(PlannedOp op, BlockDecl block, Dictionary<string, long> scope, string keyPrefix, string valuePrefix,
            Dictionary<string, int> local, string part, bool shared, bool trainable, List<string> stack)
        {
            LayerDecl d = op.Decl;
            string where = $"'{keyPrefix}{op.Name}'";
            List<int> inputs = op.References.Select(r => Resolve(r, local, d.Location, block.TypeName)).ToList();

            if (d.When is { } when && Eval(when, scope, where, d.Location) == 0)
            {
                // Absent layer: its output is its input.
                if (inputs.Count > 0) local[op.Name] = inputs[0];
                return;
            }
            trainable &= d.Trainable;

            switch (d)
            {
                case ConvDecl c:
                {
                    int x = inputs[0];
                    int inC = _values[x].Channels;
                    long outC = Eval(c.Out ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Out", "a convolution needs Out (output channels)"), scope, where, d.Location);
                    long k = EvalOr(c.Kernel, 1, scope, where, d.Location);
                    long s = EvalOr(c.Stride, 1, scope, where, d.Location);
                    long p = EvalOr(c.Padding, 0, scope, where, d.Location);
                    long g = EvalOr(c.Groups, 1, scope, where, d.Location);
                    RequirePositive(outC, "output channels", where, d.Location);
                    RequirePositive(k, "kernel size", where, d.Location);
                    RequirePositive(s, "stride", where, d.Location);
                    RequirePositive(g, "groups", where, d.Location);
                    if (p < 0) throw Error(DiagnosticDescriptors.NonPositive, d.Location, where, "padding", "zero or more", p.ToString());
                    if (c.In is { } inText)
                    {
                        long want = Eval(inText, scope, where, d.Location);
                        if (want != inC)
                            throw Error(DiagnosticDescriptors.ChannelMismatch, d.Location, where, want.ToString(), _values[x].Name, inC.ToString());
                    }
                    if (inC % g != 0 || outC % g != 0)
                        throw Error(DiagnosticDescriptors.GroupsDoNotDivide, d.Location, where, g.ToString(), inC.ToString(), outC.ToString());
                    string key = keyPrefix + op.Name;
                    int layer = AddLayer(new ConvLayer(key, part, Trained(key, trainable), inC, (int)outC, (int)k, (int)s, (int)p, (int)g, c.Bias), d.Location, shared);
                    (long H, long W)[] sizes = _sizes[x].Select(z => (Shrink(z.H, k, s, p), Shrink(z.W, k, s, p))).ToArray();
                    int y = AddValue(valuePrefix + op.Name, (int)outC, sizes, _values[x].Stride * s, d.Location);
                    AddNode(d.Location, new ConvNode(y, x, layer, c.Relu, shared));
                    local[op.Name] = y;
                    break;
                }
                case BatchNormDecl:
                {
                    int x = inputs[0];
                    int channels = _values[x].Channels;
                    string key = keyPrefix + op.Name;
                    bool trained = Trained(key, trainable);
                    int layer = AddLayer(new BatchNormLayer(key, part, trained, channels, BatchStatistics: trained && !_network.NormEval), d.Location, shared);
                    int y = AddValue(valuePrefix + op.Name, channels, _sizes[x], _values[x].Stride, d.Location);
                    AddNode(d.Location, new BatchNormNode(y, x, layer, shared));
                    local[op.Name] = y;
                    break;
                }
                case ReluDecl:
                {
                    int x = inputs[0];
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, _sizes[x], _values[x].Stride, d.Location);
                    AddNode(d.Location, new ReluNode(y, x, shared));
                    local[op.Name] = y;
                    break;
                }
                case MaxPoolDecl m:
                {
                    int x = inputs[0];
                    long k = Eval(m.Kernel ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Kernel", "max-pool needs Kernel"), scope, where, d.Location);
                    long s = EvalOr(m.Stride, k, scope, where, d.Location);
                    long p = EvalOr(m.Padding, 0, scope, where, d.Location);
                    RequirePositive(k, "kernel size", where, d.Location);
                    RequirePositive(s, "stride", where, d.Location);
                    if (p < 0 || 2 * p > k) throw Error(DiagnosticDescriptors.NonPositive, d.Location, where, "padding", "between 0 and half the kernel", p.ToString());
                    (long H, long W)[] sizes = _sizes[x].Select(z => (Shrink(z.H, k, s, p), Shrink(z.W, k, s, p))).ToArray();
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, sizes, _values[x].Stride * s, d.Location);
                    AddNode(d.Location, new MaxPoolNode(y, x, (int)k, (int)s, (int)p, shared));
                    local[op.Name] = y;
                    break;
                }
                case UpsampleDecl:
                {
                    int x = inputs[0], like = inputs[1];
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, _sizes[like], _values[like].Stride, d.Location);
                    AddNode(d.Location, new UpsampleNode(y, x, like, shared));
                    local[op.Name] = y;
                    break;
                }
                case AddDecl:
                {
                    int a = inputs[0], b = inputs[1];
                    if (_values[a].Channels != _values[b].Channels)
                        throw Error(DiagnosticDescriptors.ChannelMismatch, d.Location, where, _values[a].Channels.ToString(), _values[b].Name, _values[b].Channels.ToString());
                    for (int i = 0; i < _probes.Length; i++)
                        if (_sizes[a][i] != _sizes[b][i])
                            throw Error(DiagnosticDescriptors.BadShape, d.Location, where,
                                $"operands '{_values[a].Name}' ({_sizes[a][i].H}x{_sizes[a][i].W}) and '{_values[b].Name}' ({_sizes[b][i].H}x{_sizes[b][i].W}) differ in size for input {_probes[i].H}x{_probes[i].W}");
                    int y = AddValue(valuePrefix + op.Name, _values[a].Channels, _sizes[a], _values[a].Stride, d.Location);
                    AddNode(d.Location, new AddNode(y, a, b, shared));
                    local[op.Name] = y;
                    break;
                }
                case BufferDecl buffer:
                {
                    RequirePositive(buffer.Length, "buffer length", where, d.Location);
                    string key = keyPrefix + op.Name;
                    Trained(key, false); // a frozen path may name a buffer; it is never trained anyway
                    AddLayer(new BufferLayer(key, part, buffer.Length), d.Location, shared);
                    break;
                }
                case UseDecl use:
                {
                    BlockDecl inner = FindBlock(use.Block, d.Location, stack);
                    Dictionary<string, long> innerArgs = EvaluateArgs(use.Args, scope, where, d.Location);
                    string innerPart = part.Length == 0 ? RegisterPart(use.Part ?? op.Name) : part;
                    stack.Add(inner.TypeName);
                    Dictionary<string, int> outs = ExpandBlock(inner, keyPrefix + op.Name + ".", valuePrefix + op.Name + ".", innerArgs, inputs, d.Location, innerPart, shared, trainable, stack);
                    stack.RemoveAt(stack.Count - 1);
                    Publish(op.Name, outs, local);
                    break;
                }
                case StageDecl stage:
                {
                    BlockDecl inner = FindBlock(stage.Block, d.Location, stack);
                    long count = Eval(stage.Count ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Count", "a stage needs Count"), scope, where, d.Location);
                    RequirePositive(count, "block count", where, d.Location);
                    Dictionary<string, long> common = EvaluateArgs(stage.Args, scope, where, d.Location);
                    Dictionary<string, long> first = EvaluateArgs(stage.First, scope, where, d.Location);
                    int x = inputs[0];
                    stack.Add(inner.TypeName);
                    for (int i = 0; i < count; i++)
                    {
                        var blockArgs = new Dictionary<string, long>(common, StringComparer.Ordinal);
                        if (i == 0)
                            foreach (KeyValuePair<string, long> kv in first) blockArgs[kv.Key] = kv.Value;
                        Dictionary<string, int> outs = ExpandBlock(inner, $"{keyPrefix}{op.Name}.{i}.", $"{valuePrefix}{op.Name}.{i}.", blockArgs, [x], d.Location, part, shared, trainable, stack);
                        x = outs[""];
                        Publish($"{op.Name}.{i}", outs, local);
                    }
                    stack.RemoveAt(stack.Count - 1);
                    local[op.Name] = x;
                    break;
                }
                case SharedDecl sharedDecl:
                {
                    BlockDecl inner = FindBlock(sharedDecl.Block, d.Location, stack);
                    Dictionary<string, long> innerArgs = EvaluateArgs(sharedDecl.Args, scope, where, d.Location);
                    string innerPart = part.Length == 0 ? RegisterPart(sharedDecl.Part ?? op.Name) : part;
                    stack.Add(inner.TypeName);
                    for (int i = 0; i < inputs.Count; i++)
                    {
                        string reference = op.References[i];
                        string suffix = reference.Substring(reference.LastIndexOf('.') + 1);
                        Dictionary<string, int> outs = ExpandBlock(inner, keyPrefix + op.Name + ".", $"{valuePrefix}{op.Name}.{suffix}.", innerArgs, [inputs[i]], d.Location, innerPart, shared || i > 0, trainable, stack);
                        Publish($"{op.Name}.{suffix}", outs, local);
                        if (i == 0) local[op.Name] = outs[""];
                    }
                    stack.RemoveAt(stack.Count - 1);
                    break;
                }
                default:
                    throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, d.Kind, "this attribute is not a layer");
            }
        }

        /// <summary>
        /// Whether the layer keyed <paramref name="key"/> is trained: its enclosing instances are and
        /// no frozen path of the network names it (the key itself, or a dotted prefix of it).
        /// </summary>
        private bool Trained(string key, bool trainable)
        {
            for (int i = 0; i < _frozen.Count; i++)
            {
                string path = _frozen[i];
                if (key == path || key.StartsWith(path + ".", StringComparison.Ordinal))
                {
                    _frozenUsed[i] = true;
                    trainable = false;
                }
            }
            return trainable;
        }

        private BlockDecl FindBlock(string name, LocationInfo? location, List<string> stack)
        {
            if (!_blocks.TryGetValue(name, out BlockDecl? block))
                throw Error(DiagnosticDescriptors.UnknownBlock, location, name);
            if (stack.Contains(name))
                throw Error(DiagnosticDescriptors.Cycle, location, $"block '{name}'", string.Join(" -> ", stack) + " -> " + name);
            if (block.Diagnostics.Count > 0)
            {
                // A block of this compilation whose attributes could not be read reported that on
                // its own; stop quietly. One read from a referenced assembly reports nothing on its
                // own, so its first error is reported here, where it is used.
                if (block.Assembly is null) throw new ExpansionException(null);
                DiagnosticInfo first = block.Diagnostics[0];
                string[] arguments = [.. first.Arguments];
                if (arguments.Length > 0) arguments[0] = $"block '{name}' of assembly '{block.Assembly}': {arguments[0]}";
                throw Error(DiagnosticDescriptors.ById[first.Id], location, arguments);
            }
            return block;
        }

        private string RegisterPart(string part)
        {
            if (!_parts.Contains(part)) _parts.Add(part);
            return part;
        }

        private static void Publish(string name, Dictionary<string, int> outs, Dictionary<string, int> local)
        {
            foreach (KeyValuePair<string, int> kv in outs)
                local[kv.Key.Length == 0 ? name : name + "." + kv.Key] = kv.Value;
        }

        private static string? OwnerOf(string reference, Dictionary<string, PlannedOp> ops, Dictionary<string, int> local)
        {
            if (ops.ContainsKey(reference) || local.ContainsKey(reference)) return reference;
            // "instance.output" or "stage.3.output": the longest op name that prefixes the reference.
            string? best = null;
            foreach (string name in ops.Keys)
                if (reference.StartsWith(name + ".", StringComparison.Ordinal) && (best is null || name.Length > best.Length))
                    best = name;
            return best;
        }

        private int Resolve(string reference, Dictionary<string, int> local, LocationInfo? location, string block)
        {
            if (local.TryGetValue(reference, out int value)) return value;
            throw Error(DiagnosticDescriptors.UnknownValue, location, $"block '{block}'", reference,
                "; refer to a layer, an input, or an output of an instance as 'instance.output'");
        }

        private static List<PlannedOp> TopologicalOrder(List<PlannedOp> ops, BlockDecl block)
        {
            var order = new List<PlannedOp>();
            var done = new HashSet<PlannedOp>();
            while (order.Count < ops.Count)
            {
                PlannedOp? next = ops.FirstOrDefault(o => !done.Contains(o) && o.DependsOn.All(done.Contains));
                if (next is null)
                {
                    PlannedOp stuck = ops.First(o => !done.Contains(o));
                    var path = new List<string> { stuck.Name };
                    PlannedOp walk = stuck;
                    while (true)
                    {
                        walk = walk.DependsOn.First(o => !done.Contains(o));
                        if (path.Contains(walk.Name)) { path.Add(walk.Name); break; }
                        path.Add(walk.Name);
                    }
                    throw Error(DiagnosticDescriptors.Cycle, stuck.Decl.Location, $"'{stuck.Name}' in block '{block.TypeName}'", string.Join(" -> ", path));
                }
                order.Add(next);
                done.Add(next);
            }
            return order;
        }

        private void AddNode(LocationInfo? location, NodeModel node)
        {
            _nodes.Add(node);
            _nodeLocations.Add(new NodeLocation(location));
        }

        private int AddLayer(LayerModel layer, LocationInfo? location, bool shared)
        {
            if (_layerByKey.TryGetValue(layer.Key, out int existing))
            {
                if (shared && _layers[existing] == layer) return existing;
                throw Error(DiagnosticDescriptors.Duplicate, location, layer.Key, " as a checkpoint key");
            }
            _layers.Add(layer);
            _layerByKey[layer.Key] = _layers.Count - 1;
            return _layers.Count - 1;
        }

        private int AddValue(string name, int channels, (long H, long W)[] sizes, long stride, LocationInfo? location)
        {
            if (sizes[0].H <= 0 || sizes[0].W <= 0)
                throw Error(DiagnosticDescriptors.ShrinksToNothing, location, $"'{name}'", sizes[0].H.ToString(), sizes[0].W.ToString(), _network.MinInputSize.ToString());
            if (_valueByName.ContainsKey(name))
                throw Error(DiagnosticDescriptors.Duplicate, location, name, " as a value");
            int id = _values.Count;
            _values.Add(new ValueModel(id, name, channels, stride));
            _sizes.Add(sizes);
            _valueByName[name] = id;
            return id;
        }

        private static long Shrink(long n, long k, long s, long p) => n + 2 * p - k < 0 ? 0 : (n + 2 * p - k) / s + 1;

        private Dictionary<string, long> Scope(BlockDecl block, Dictionary<string, long> args, string where, LocationInfo? callSite)
        {
            List<KeyValuePair<string, string?>>? parameters = IntExpression.SplitParameters(block.Parameters, out string? error);
            if (parameters is null)
                throw Error(DiagnosticDescriptors.BadExpression, block.Location, block.TypeName, block.Parameters, error!);
            var scope = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (KeyValuePair<string, string?> p in parameters)
            {
                if (args.TryGetValue(p.Key, out long given)) scope[p.Key] = given;
                else if (p.Value is { } fallback) scope[p.Key] = Eval(fallback, scope, block.TypeName, block.Location);
                else throw Error(DiagnosticDescriptors.MissingArgument, callSite, where, p.Key, block.TypeName);
            }
            foreach (string given in args.Keys)
                if (!scope.ContainsKey(given))
                    throw Error(DiagnosticDescriptors.BadExpression, callSite, where, given,
                        $"block '{block.TypeName}' has no parameter '{given}' (it has: {string.Join(", ", parameters.Select(p => p.Key))})");
            foreach (LetDecl let in block.Lets)
                scope[let.Name] = Eval(let.Expression, scope, block.TypeName, let.Location);
            return scope;
        }

        private static Dictionary<string, long> EvaluateArgs(string? text, Dictionary<string, long> scope, string where, LocationInfo? location)
        {
            List<KeyValuePair<string, string>>? pairs = IntExpression.SplitAssignments(text, out string? error);
            if (pairs is null) throw Error(DiagnosticDescriptors.BadExpression, location, where, text ?? "", error!);
            var result = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (KeyValuePair<string, string> kv in pairs)
                result[kv.Key] = Eval(kv.Value, scope, where, location);
            return result;
        }

        private static long Eval(string text, IReadOnlyDictionary<string, long> scope, string where, LocationInfo? location)
        {
            long? value = IntExpression.Evaluate(text, scope, out string? error);
            if (value is null) throw Error(DiagnosticDescriptors.BadExpression, location, where, text, error!);
            if (value > int.MaxValue || value < int.MinValue)
                throw Error(DiagnosticDescriptors.BadExpression, location, where, text, "the value does not fit in an int");
            return value.Value;
        }

        private static long EvalOr(string? text, long fallback, IReadOnlyDictionary<string, long> scope, string where, LocationInfo? location)
            => text is null ? fallback : Eval(text, scope, where, location);

        private static void RequirePositive(long value, string what, string where, LocationInfo? location)
        {
            if (value <= 0) throw Error(DiagnosticDescriptors.NonPositive, location, where, what, "positive", value.ToString());
        }

        private static ExpansionException Error(DiagnosticDescriptor descriptor, LocationInfo? location, params string[] args)
            => new(Diag(descriptor, location, args));

        private static DiagnosticInfo Diag(DiagnosticDescriptor descriptor, LocationInfo? location, params string[] args)
            => new(descriptor.Id, args.ToEquatableArray(), location);

        private sealed class PlannedOp(LayerDecl decl, string name, List<string> references, int index)
        {
            public LayerDecl Decl { get; } = decl;
            public string Name { get; } = name;
            public List<string> References { get; } = references;
            public int Index { get; } = index;
            public List<PlannedOp> DependsOn { get; } = [];
        }

        /// <summary>Stops the expansion; without a diagnostic when the cause was reported elsewhere.</summary>
        private sealed class ExpansionException(DiagnosticInfo? diagnostic) : Exception(diagnostic?.Id)
        {
            public DiagnosticInfo? Diagnostic { get; } = diagnostic;
        }
    }
}
