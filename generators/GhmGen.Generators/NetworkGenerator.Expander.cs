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
        private readonly List<LocationInfo?> _nodeLocations = [];
        private readonly List<string> _parts = [];
        private readonly BlockDecl _network;

        private Expander(BlockDecl network, ImmutableArray<BlockDecl> blocks)
        {
            _network = network;
            foreach (BlockDecl b in blocks)
                if (!_blocks.ContainsKey(b.TypeName)) _blocks.Add(b.TypeName, b);
            long min = network.MinInputSize;
            _probes = [(min, min), (3 * min + 5, 2 * min + 7)];
        }

        public static ExpansionResult Expand(BlockDecl network, ImmutableArray<BlockDecl> blocks)
        {
            if (network.IsNested)
                return Fail(Diag(DiagnosticDescriptors.NestedType, network.Location, network.TypeName));
            if (!network.IsPartial)
                return Fail(Diag(DiagnosticDescriptors.NotPartial, network.Location, network.TypeName));
            var expander = new Expander(network, blocks);
            try
            {
                return new ExpansionResult(expander.Run(), EquatableArray<DiagnosticInfo>.Empty);
            }
            catch (ExpansionException e)
            {
                return Fail(e.Diagnostic);
            }
        }

        private static ExpansionResult Fail(DiagnosticInfo d) => new(null, new EquatableArray<DiagnosticInfo>([d]));

        private NetworkModel Run()
        {
            string networkName = _network.NetworkName ?? _network.TypeName;
            if (_network.MinInputSize <= 0)
                throw Error(DiagnosticDescriptors.NonPositive, _network.Location, networkName, "MinInputSize", "positive", _network.MinInputSize.ToString());

            BlockDecl root = _network;
            var args = new Dictionary<string, long>(StringComparer.Ordinal);
            if (_network.NetworkBlock is { } blockName)
            {
                if (!_blocks.TryGetValue(blockName, out root!))
                    throw Error(DiagnosticDescriptors.UnknownBlock, _network.Location, blockName);
                args = EvaluateArgs(_network.NetworkArgs, new Dictionary<string, long>(), networkName, _network.Location);
            }

            List<OpDecl> inputs = root.Ops.Where(o => o.Kind == "Input").ToList();
            if (inputs.Count != 1)
                throw Error(DiagnosticDescriptors.BadShape, _network.Location, networkName,
                    $"a network needs exactly one [Input] but '{root.TypeName}' declares {inputs.Count}");
            OpDecl input = inputs[0];
            string? channelsText = input.Get("Channels");
            if (channelsText is null)
                throw Error(DiagnosticDescriptors.BadShape, input.Location, networkName,
                    $"the network input '{input.Name}' must declare Channels");
            long channels = Eval(channelsText, Scope(root, args, networkName, _network.Location), networkName, input.Location);
            RequirePositive(channels, "input channels", networkName, input.Location);
            int inputValue = AddValue(input.Name ?? "input", (int)channels, _probes.Select(p => p).ToArray(), input.Location);
            AddNode(input.Location, new NodeModel("input", inputValue, EquatableArray<int>.Empty, -1, 0, 0, 0, -1, false, false));

            Dictionary<string, int> outputs = ExpandBlock(root, "", "", args, [inputValue], _network.Location, "", shared: false, new List<string> { root.TypeName });
            if (outputs.Count == 0)
                throw Error(DiagnosticDescriptors.BadShape, _network.Location, networkName, "the network has no outputs");

            var model = new NetworkModel(
                _network.TypeName, _network.Namespace, _network.Accessibility, networkName, _network.MinInputSize,
                _layers.ToEquatableArray(), _values.ToEquatableArray(), _nodes.ToEquatableArray(),
                outputs.Where(kv => kv.Key.Length > 0).Select(kv => new OutputModel(kv.Key, kv.Value)).ToEquatableArray(),
                _parts.ToEquatableArray());
            if (Emit.ForwardPlanner.Plan(model, out int badNode, out string? problem) is null)
                throw Error(DiagnosticDescriptors.NoForward, _nodeLocations[badNode], $"'{_values[_nodes[badNode].Output].Name}'", problem!);
            return model;
        }

        /// <summary>
        /// Expands one instance of a block. Keys of its layers start with <paramref name="keyPrefix"/>,
        /// names of its values with <paramref name="valuePrefix"/>. When <paramref name="shared"/>, its
        /// layers already exist (a repeated application of shared weights) and are reused.
        /// Returns its outputs by name; the key "" is its default output.
        /// </summary>
        private Dictionary<string, int> ExpandBlock(BlockDecl block, string keyPrefix, string valuePrefix,
            Dictionary<string, long> args, List<int> inputValues, LocationInfo? callSite, string part, bool shared, List<string> stack)
        {
            Dictionary<string, long> scope = Scope(block, args, block.TypeName, callSite);

            List<OpDecl> inputs = block.Ops.Where(o => o.Kind == "Input").ToList();
            if (inputs.Count != inputValues.Count)
                throw Error(DiagnosticDescriptors.BadShape, callSite, block.TypeName,
                    $"block '{block.TypeName}' takes {inputs.Count} input(s) but {inputValues.Count} are connected");

            var local = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < inputs.Count; i++)
            {
                string name = inputs[i].Name ?? $"input{i}";
                if (inputs[i].Get("Channels") is { } expected)
                {
                    long want = Eval(expected, scope, block.TypeName, inputs[i].Location);
                    int have = _values[inputValues[i]].Channels;
                    if (want != have)
                        throw Error(DiagnosticDescriptors.ChannelMismatch, callSite ?? inputs[i].Location,
                            $"input '{name}' of block '{block.TypeName}'", want.ToString(), _values[inputValues[i]].Name, have.ToString());
                }
                local[name] = inputValues[i];
            }

            // Layer ops in declaration order, with their names and references resolved to local names.
            var layerOps = new List<PlannedOp>();
            var byName = new Dictionary<string, PlannedOp>(StringComparer.Ordinal);
            string previous = inputs.Count > 0 ? inputs[0].Name ?? "input0" : "";
            int autoIndex = 0;
            foreach (OpDecl op in block.Ops)
            {
                if (op.Kind is "Input" or "Output" or "Let") continue;
                string name = op.Name ?? $"{op.Kind.ToLowerInvariant()}{autoIndex++}";
                if (byName.ContainsKey(name) || local.ContainsKey(name))
                    throw Error(DiagnosticDescriptors.Duplicate, op.Location, name, $" in block '{block.TypeName}'");
                var refs = new List<string>();
                switch (op.Kind)
                {
                    case "Buffer":
                        break;
                    case "Add":
                        refs.Add(op.Get("left")!);
                        refs.Add(op.Get("right")!);
                        break;
                    case "Upsample":
                        refs.Add(op.Get("From") ?? previous);
                        refs.Add(op.Get("sizeOf")!);
                        break;
                    case "Shared":
                    case "Use":
                        refs.AddRange(IntExpression.SplitNames(op.Get("From") ?? previous));
                        break;
                    default:
                        refs.Add(op.Get("From") ?? previous);
                        break;
                }
                var planned = new PlannedOp(op, name, refs, layerOps.Count);
                layerOps.Add(planned);
                byName[name] = planned;
                if (op.Kind != "Buffer") previous = name;
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
                ExecuteOp(op, block, scope, keyPrefix, valuePrefix, local, part, shared, stack);

            // Outputs: explicit, or the last layer's value.
            var outputs = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (OpDecl o in block.Ops.Where(o => o.Kind == "Output"))
            {
                string name = o.Name!;
                string from = o.Get("from")!;
                if (outputs.ContainsKey(name))
                    throw Error(DiagnosticDescriptors.Duplicate, o.Location, name, $" among the outputs of '{block.TypeName}'");
                outputs[name] = Resolve(from, local, o.Location, block.TypeName);
                if (!outputs.ContainsKey("")) outputs[""] = outputs[name];
            }
            if (outputs.Count == 0)
            {
                PlannedOp? last = layerOps.LastOrDefault(o => o.Decl.Kind != "Buffer");
                if (last is not null) outputs[""] = local[last.Name];
                else if (inputs.Count > 0) outputs[""] = local[inputs[0].Name ?? "input0"];
            }
            return outputs;
        }

        private void ExecuteOp(PlannedOp op, BlockDecl block, Dictionary<string, long> scope, string keyPrefix, string valuePrefix,
            Dictionary<string, int> local, string part, bool shared, List<string> stack)
        {
            OpDecl d = op.Decl;
            string where = $"'{keyPrefix}{op.Name}'";
            List<int> inputs = op.References.Select(r => Resolve(r, local, d.Location, block.TypeName)).ToList();

            if (d.Get("When") is { } when && Eval(when, scope, where, d.Location) == 0)
            {
                // Absent layer: its output is its input.
                if (inputs.Count > 0) local[op.Name] = inputs[0];
                return;
            }

            switch (d.Kind)
            {
                case "Conv":
                {
                    int x = inputs[0];
                    int inC = _values[x].Channels;
                    long outC = Eval(d.Get("Out") ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Out", "a convolution needs Out (output channels)"), scope, where, d.Location);
                    long k = EvalOr(d.Get("Kernel"), 1, scope, where, d.Location);
                    long s = EvalOr(d.Get("Stride"), 1, scope, where, d.Location);
                    long p = EvalOr(d.Get("Padding"), 0, scope, where, d.Location);
                    long g = EvalOr(d.Get("Groups"), 1, scope, where, d.Location);
                    RequirePositive(outC, "output channels", where, d.Location);
                    RequirePositive(k, "kernel size", where, d.Location);
                    RequirePositive(s, "stride", where, d.Location);
                    RequirePositive(g, "groups", where, d.Location);
                    if (p < 0) throw Error(DiagnosticDescriptors.NonPositive, d.Location, where, "padding", "zero or more", p.ToString());
                    if (d.Get("In") is { } inText)
                    {
                        long want = Eval(inText, scope, where, d.Location);
                        if (want != inC)
                            throw Error(DiagnosticDescriptors.ChannelMismatch, d.Location, where, want.ToString(), _values[x].Name, inC.ToString());
                    }
                    if (inC % g != 0 || outC % g != 0)
                        throw Error(DiagnosticDescriptors.GroupsDoNotDivide, d.Location, where, g.ToString(), inC.ToString(), outC.ToString());
                    bool bias = d.Get("Bias") == "true";
                    int layer = AddLayer(new LayerModel("conv", keyPrefix + op.Name, part, inC, (int)outC, (int)k, (int)s, (int)p, (int)g, bias, 0), d.Location, shared);
                    (long H, long W)[] sizes = _sizes[x].Select(z => (Shrink(z.H, k, s, p), Shrink(z.W, k, s, p))).ToArray();
                    int y = AddValue(valuePrefix + op.Name, (int)outC, sizes, d.Location);
                    AddNode(d.Location, new NodeModel("conv", y, new EquatableArray<int>([x]), layer, (int)k, (int)s, (int)p, -1, d.Get("Relu") == "true", shared));
                    local[op.Name] = y;
                    break;
                }
                case "BatchNorm":
                {
                    int x = inputs[0];
                    int c = _values[x].Channels;
                    int layer = AddLayer(new LayerModel("bn", keyPrefix + op.Name, part, c, c, 0, 0, 0, 1, false, 0), d.Location, shared);
                    int y = AddValue(valuePrefix + op.Name, c, _sizes[x], d.Location);
                    AddNode(d.Location, new NodeModel("bn", y, new EquatableArray<int>([x]), layer, 0, 0, 0, -1, false, shared));
                    local[op.Name] = y;
                    break;
                }
                case "Relu":
                {
                    int x = inputs[0];
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, _sizes[x], d.Location);
                    AddNode(d.Location, new NodeModel("relu", y, new EquatableArray<int>([x]), -1, 0, 0, 0, -1, false, shared));
                    local[op.Name] = y;
                    break;
                }
                case "MaxPool":
                {
                    int x = inputs[0];
                    long k = Eval(d.Get("Kernel") ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Kernel", "max-pool needs Kernel"), scope, where, d.Location);
                    long s = EvalOr(d.Get("Stride"), k, scope, where, d.Location);
                    long p = EvalOr(d.Get("Padding"), 0, scope, where, d.Location);
                    RequirePositive(k, "kernel size", where, d.Location);
                    RequirePositive(s, "stride", where, d.Location);
                    if (p < 0 || 2 * p > k) throw Error(DiagnosticDescriptors.NonPositive, d.Location, where, "padding", "between 0 and half the kernel", p.ToString());
                    (long H, long W)[] sizes = _sizes[x].Select(z => (Shrink(z.H, k, s, p), Shrink(z.W, k, s, p))).ToArray();
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, sizes, d.Location);
                    AddNode(d.Location, new NodeModel("maxpool", y, new EquatableArray<int>([x]), -1, (int)k, (int)s, (int)p, -1, false, shared));
                    local[op.Name] = y;
                    break;
                }
                case "Upsample":
                {
                    int x = inputs[0], like = inputs[1];
                    int y = AddValue(valuePrefix + op.Name, _values[x].Channels, _sizes[like], d.Location);
                    AddNode(d.Location, new NodeModel("upsample", y, new EquatableArray<int>([x]), -1, 0, 0, 0, like, false, shared));
                    local[op.Name] = y;
                    break;
                }
                case "Add":
                {
                    int a = inputs[0], b = inputs[1];
                    if (_values[a].Channels != _values[b].Channels)
                        throw Error(DiagnosticDescriptors.ChannelMismatch, d.Location, where, _values[a].Channels.ToString(), _values[b].Name, _values[b].Channels.ToString());
                    for (int i = 0; i < _probes.Length; i++)
                        if (_sizes[a][i] != _sizes[b][i])
                            throw Error(DiagnosticDescriptors.BadShape, d.Location, where,
                                $"operands '{_values[a].Name}' ({_sizes[a][i].H}x{_sizes[a][i].W}) and '{_values[b].Name}' ({_sizes[b][i].H}x{_sizes[b][i].W}) differ in size for input {_probes[i].H}x{_probes[i].W}");
                    int y = AddValue(valuePrefix + op.Name, _values[a].Channels, _sizes[a], d.Location);
                    AddNode(d.Location, new NodeModel("add", y, new EquatableArray<int>([a, b]), -1, 0, 0, 0, -1, false, shared));
                    local[op.Name] = y;
                    break;
                }
                case "Buffer":
                {
                    long length = long.Parse(d.Get("length") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
                    RequirePositive(length, "buffer length", where, d.Location);
                    AddLayer(new LayerModel("buffer", keyPrefix + op.Name, part, 0, 0, 0, 0, 0, 1, false, (int)length), d.Location, shared);
                    break;
                }
                case "Use":
                {
                    BlockDecl inner = FindBlock(d, stack);
                    Dictionary<string, long> innerArgs = EvaluateArgs(d.Get("Args"), scope, where, d.Location);
                    string innerPart = part.Length == 0 ? RegisterPart(d.Get("Part") ?? op.Name) : part;
                    stack.Add(inner.TypeName);
                    Dictionary<string, int> outs = ExpandBlock(inner, keyPrefix + op.Name + ".", valuePrefix + op.Name + ".", innerArgs, inputs, d.Location, innerPart, shared, stack);
                    stack.RemoveAt(stack.Count - 1);
                    Publish(op.Name, outs, local);
                    break;
                }
                case "Stage":
                {
                    BlockDecl inner = FindBlock(d, stack);
                    long count = Eval(d.Get("Count") ?? throw Error(DiagnosticDescriptors.BadExpression, d.Location, where, "Count", "a stage needs Count"), scope, where, d.Location);
                    RequirePositive(count, "block count", where, d.Location);
                    Dictionary<string, long> common = EvaluateArgs(d.Get("Args"), scope, where, d.Location);
                    Dictionary<string, long> first = EvaluateArgs(d.Get("First"), scope, where, d.Location);
                    int x = inputs[0];
                    stack.Add(inner.TypeName);
                    for (int i = 0; i < count; i++)
                    {
                        var blockArgs = new Dictionary<string, long>(common, StringComparer.Ordinal);
                        if (i == 0)
                            foreach (KeyValuePair<string, long> kv in first) blockArgs[kv.Key] = kv.Value;
                        Dictionary<string, int> outs = ExpandBlock(inner, $"{keyPrefix}{op.Name}.{i}.", $"{valuePrefix}{op.Name}.{i}.", blockArgs, [x], d.Location, part, shared, stack);
                        x = outs[""];
                        Publish($"{op.Name}.{i}", outs, local);
                    }
                    stack.RemoveAt(stack.Count - 1);
                    local[op.Name] = x;
                    break;
                }
                case "Shared":
                {
                    BlockDecl inner = FindBlock(d, stack);
                    Dictionary<string, long> innerArgs = EvaluateArgs(d.Get("Args"), scope, where, d.Location);
                    string innerPart = part.Length == 0 ? RegisterPart(d.Get("Part") ?? op.Name) : part;
                    stack.Add(inner.TypeName);
                    for (int i = 0; i < inputs.Count; i++)
                    {
                        string reference = op.References[i];
                        string suffix = reference.Substring(reference.LastIndexOf('.') + 1);
                        Dictionary<string, int> outs = ExpandBlock(inner, keyPrefix + op.Name + ".", $"{valuePrefix}{op.Name}.{suffix}.", innerArgs, [inputs[i]], d.Location, innerPart, shared || i > 0, stack);
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

        private BlockDecl FindBlock(OpDecl d, List<string> stack)
        {
            string name = d.Get("block")!;
            if (!_blocks.TryGetValue(name, out BlockDecl? block))
                throw Error(DiagnosticDescriptors.UnknownBlock, d.Location, name);
            if (stack.Contains(name))
                throw Error(DiagnosticDescriptors.Cycle, d.Location, $"block '{name}'", string.Join(" -> ", stack) + " -> " + name);
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
            _nodeLocations.Add(location);
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

        private int AddValue(string name, int channels, (long H, long W)[] sizes, LocationInfo? location)
        {
            if (sizes[0].H <= 0 || sizes[0].W <= 0)
                throw Error(DiagnosticDescriptors.ShrinksToNothing, location, $"'{name}'", sizes[0].H.ToString(), sizes[0].W.ToString(), _network.MinInputSize.ToString());
            if (_valueByName.ContainsKey(name))
                throw Error(DiagnosticDescriptors.Duplicate, location, name, " as a value");
            int id = _values.Count;
            _values.Add(new ValueModel(id, name, channels));
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
            foreach (OpDecl let in block.Ops.Where(o => o.Kind == "Let"))
                scope[let.Name!] = Eval(let.Get("expression")!, scope, block.TypeName, let.Location);
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

        private sealed class PlannedOp(OpDecl decl, string name, List<string> references, int index)
        {
            public OpDecl Decl { get; } = decl;
            public string Name { get; } = name;
            public List<string> References { get; } = references;
            public int Index { get; } = index;
            public List<PlannedOp> DependsOn { get; } = [];
        }

        private sealed class ExpansionException(DiagnosticInfo diagnostic) : Exception(diagnostic.Id)
        {
            public DiagnosticInfo Diagnostic { get; } = diagnostic;
        }
    }
}
