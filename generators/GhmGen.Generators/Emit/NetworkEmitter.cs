using System.Collections.Generic;
using System.Linq;
using System.Text;
using GhmGen.Generators.Models;
using static GhmGen.Generators.Emit.EmitText;

namespace GhmGen.Generators.Emit;

/// <summary>
/// Writes <c>{Type}.Network.g.cs</c>: layers, state, counts, shapes, the description table, the
/// prepared weights and the inference session with its straight-line <c>Forward</c>.
/// </summary>
internal static class NetworkEmitter
{
    public static string Emit(PlannedNetwork network)
    {
        NetworkModel m = network.Model;
        var w = new CodeWriter();
        Header(w, m, null);

        long total = m.Layers.Sum(l => l.ParameterCount);
        w.Line($"/// <summary>{Xml(m.NetworkName)}: {m.Layers.Count} layers, {StateCount(m)} state tensors, {total} parameters.</summary>");
        w.Open($"partial class {m.TypeName} : {Layers}.INetwork");

        w.Line("/// <summary>The network's name.</summary>");
        w.Line($"public const string ModelName = \"{m.NetworkName}\";").Line();
        w.Line("/// <summary>The smallest input height and width the declaration was checked for.</summary>");
        w.Line($"public const int MinInputSize = {m.MinInputSize};").Line();
        w.Line("/// <summary>Number of tensors in the state dict (parameters and buffers).</summary>");
        w.Line($"public const int StateTensorCount = {StateCount(m)};").Line();

        EmitCounts(w, m, total);
        EmitLayers(w, m);
        EmitState(w, m);
        EmitShapes(w, m);
        EmitDescription(w, m);
        EmitSession(w, m, network.Plan);

        w.Close();
        return w.ToString();
    }

    private static int StateCount(NetworkModel m) => m.Layers.Sum(l => l.StateTensorCount);

    private static void EmitCounts(CodeWriter w, NetworkModel m, long total)
    {
        w.Line("/// <summary>Learnable parameter counts (buffers excluded), in total and per part.</summary>");
        w.Open("public static class ParameterCounts");
        w.Line("/// <summary>All learnable parameters.</summary>");
        w.Line($"public const long Total = {total};");
        foreach (string part in m.Parts)
        {
            w.Line($"/// <summary>Parameters of the '{part}' part.</summary>");
            w.Line($"public const long {Pascal(part)} = {m.Layers.Where(l => l.Part == part).Sum(l => l.ParameterCount)};");
        }
        w.Close().Line();
        w.Line("/// <summary>Parameter counts per part, in declaration order.</summary>");
        string parts = string.Join(", ", m.Parts.Select(p => $"(\"{p}\", ParameterCounts.{Pascal(p)})"));
        w.Line($"public static global::System.Collections.Generic.IReadOnlyList<(string Part, long Parameters)> Parts {{ get; }} = [{parts}];").Line();
        w.Line("string " + Layers + ".INetwork.Name => ModelName;").Line();
        w.Line("long " + Layers + ".INetwork.ParameterCount => ParameterCounts.Total;").Line();
    }

    private static void EmitLayers(CodeWriter w, NetworkModel m)
    {
        foreach (LayerModel layer in m.Layers)
        {
            string name = PropertyName(layer.Key);
            switch (layer)
            {
                case ConvLayer l:
                    w.Line($"/// <summary><c>{l.Key}</c>: conv {l.Kernel}x{l.Kernel}/{l.Stride} pad {l.Padding}{(l.Groups > 1 ? $" groups {l.Groups}" : "")}, {l.InChannels} -> {l.OutChannels}{(l.Bias ? ", bias" : "")}{(l.Trainable ? "" : ", frozen")}.</summary>");
                    w.Line($"public {Layers}.Conv2d {name} {{ get; }} = new(\"{l.Key}\", new global::GhmGen.Backends.ConvSpec({l.InChannels}, {l.OutChannels}, {l.Kernel}, {l.Stride}, {l.Padding}, {l.Groups}), bias: {(l.Bias ? "true" : "false")});");
                    break;
                case BatchNormLayer l:
                    w.Line($"/// <summary><c>{l.Key}</c>: batch norm, {l.Channels} channels{(l.Trainable ? "" : ", frozen")}.</summary>");
                    w.Line($"public {Layers}.BatchNorm2d {name} {{ get; }} = new(\"{l.Key}\", {l.Channels});");
                    break;
                case BufferLayer l:
                    w.Line($"/// <summary><c>{l.Key}</c>: buffer of {l.Length} floats.</summary>");
                    w.Line($"public {Layers}.StateTensor {name} {{ get; }} = new(\"{l.Key}\", [{l.Length}], {Layers}.StateKind.Buffer);");
                    break;
            }
            w.Line();
        }
    }

    private static void EmitState(CodeWriter w, NetworkModel m)
    {
        w.Line($"private {Layers}.StateTensor[]? _state;").Line();
        w.Line("/// <summary>Every state tensor, in mmdetection's state-dict order.</summary>");
        w.OpenList($"public global::System.Collections.Generic.IReadOnlyList<{Layers}.StateTensor> State => _state ??=");
        foreach (LayerModel layer in m.Layers)
        {
            string p = PropertyName(layer.Key);
            switch (layer)
            {
                case ConvLayer l:
                    w.Line($"{p}.Weight,");
                    if (l.Bias) w.Line($"{p}.Bias!,");
                    break;
                case BatchNormLayer:
                    w.Line($"{p}.Weight, {p}.Bias, {p}.RunningMean, {p}.RunningVar, {p}.NumBatchesTracked,");
                    break;
                default:
                    w.Line($"{p},");
                    break;
            }
        }
        w.CloseList().Line();
    }

    private static void EmitShapes(CodeWriter w, NetworkModel m)
    {
        int[] slot = SizeSlots(m, null);
        int slots = slot.Length == 0 ? 1 : slot.Max() + 1;
        w.Line("/// <summary>Height and width of every distinct feature-map size for an input size (pairs, input first).</summary>");
        w.Open("private static int[] Sizes(int height, int width)");
        w.Line("if (height < 1 || width < 1) throw new global::System.ArgumentOutOfRangeException(nameof(height), $\"input size {height}x{width} must be positive\");");
        w.Line($"int[] s = new int[{2 * slots}];");
        w.Line("s[0] = height;");
        w.Line("s[1] = width;");
        SizeSlots(m, w);
        w.Open($"for (int i = 0; i < s.Length; i++)");
        w.Line($"if (s[i] < 1) throw new global::System.ArgumentOutOfRangeException(nameof(height), $\"input size {{height}}x{{width}} is too small for {m.NetworkName}: a feature map shrinks to nothing\");");
        w.Close();
        w.Line("return s;");
        w.Close().Line();
        w.Line("/// <summary>Output size of a window op along one axis: floor((n + 2p - k) / s) + 1, or 0 when the window does not fit.</summary>");
        w.Line("private static int Reduce(int n, int kernel, int stride, int padding) => n + 2 * padding < kernel ? 0 : (n + 2 * padding - kernel) / stride + 1;").Line();

        w.Line("/// <summary>Channels, height and width of every value (every layer's output) for a 1 x C x <paramref name=\"height\"/> x <paramref name=\"width\"/> input, in execution order.</summary>");
        w.Open($"public static {Layers}.LayerShape[] OutputShapes(int height, int width)");
        w.Line("int[] s = Sizes(height, width);");
        w.OpenList("return");
        foreach (NodeModel n in m.Nodes)
        {
            ValueModel v = m.Values[n.Output];
            int k = slot[n.Output];
            w.Line($"new(\"{v.Name}\", {v.Channels}, s[{2 * k}], s[{2 * k + 1}]),");
        }
        w.CloseList();
        w.Close().Line();

        w.Line("/// <summary>Named network outputs with their channels, height and width for an input size.</summary>");
        w.Open($"public static {Layers}.LayerShape[] OutputsFor(int height, int width)");
        w.Line("int[] s = Sizes(height, width);");
        w.OpenList("return");
        foreach (OutputModel o in m.Outputs)
        {
            int k = slot[o.Value];
            w.Line($"new(\"{o.Name}\", {m.Values[o.Value].Channels}, s[{2 * k}], s[{2 * k + 1}]),");
        }
        w.CloseList();
        w.Close().Line();

        w.Line("/// <summary>Convolution multiply-accumulates of one forward pass for a 1 x C x <paramref name=\"height\"/> x <paramref name=\"width\"/> input.</summary>");
        w.Open("public static long MultiplyAccumulates(int height, int width)");
        w.Line("int[] s = Sizes(height, width);");
        w.Line("long macs = 0;");
        // Group convolutions by output size slot: macs += (sum of per-pixel MACs) * h * w.
        var perSlot = new SortedDictionary<int, long>();
        foreach (ConvNode n in m.Nodes.OfType<ConvNode>())
        {
            var l = (ConvLayer)m.Layers[n.Layer];
            long perPixel = (long)l.OutChannels * (l.InChannels / l.Groups) * l.Kernel * l.Kernel;
            perSlot[slot[n.Output]] = (perSlot.TryGetValue(slot[n.Output], out long acc) ? acc : 0) + perPixel;
        }
        foreach (KeyValuePair<int, long> kv in perSlot)
            w.Line($"macs += {kv.Value}L * s[{2 * kv.Key}] * s[{2 * kv.Key + 1}];");
        w.Line("return macs;");
        w.Close().Line();
    }

    private static void EmitDescription(CodeWriter w, NetworkModel m)
    {
        w.Line("/// <summary>One row per node in execution order: output name, operation, inputs, parameters owned.</summary>");
        w.OpenList($"public static global::System.Collections.Generic.IReadOnlyList<{Layers}.LayerInfo> Description {{ get; }} =");
        foreach (NodeModel n in m.Nodes)
        {
            string inputs = string.Join(", ", n.Reads.Select(i => m.Values[i].Name));
            int? layer = n switch { ConvNode c => c.Layer, BatchNormNode b => b.Layer, _ => null };
            long parameters = layer is { } l && !n.SharedRepeat ? m.Layers[l].ParameterCount : 0;
            w.Line($"new(\"{m.Values[n.Output].Name}\", \"{Operation(m, n)}\", \"{inputs}\", {parameters}),");
        }
        w.CloseList().Line();

        w.Line("/// <summary>A readable table of every node with its output shape for an input size.</summary>");
        w.Open("public static string DescribeTable(int height, int width)");
        w.Line($"{Layers}.LayerShape[] shapes = OutputShapes(height, width);");
        w.Line("var text = new global::System.Text.StringBuilder();");
        w.Line("text.AppendLine($\"{ModelName}, input 1x{shapes[0].Channels}x{height}x{width}\");");
        w.Line("text.AppendLine(string.Format(global::System.Globalization.CultureInfo.InvariantCulture, \"{0,-44} {1,-32} {2,-18} {3,12}\", \"layer\", \"operation\", \"output\", \"parameters\"));");
        w.Open("for (int i = 0; i < shapes.Length; i++)");
        w.Line($"{Layers}.LayerInfo row = Description[i];");
        w.Line("text.AppendLine(string.Format(global::System.Globalization.CultureInfo.InvariantCulture, \"{0,-44} {1,-32} {2,-18} {3,12:N0}\", row.Name, row.Operation, $\"{shapes[i].Channels}x{shapes[i].Height}x{shapes[i].Width}\", row.Parameters));");
        w.Close();
        w.Line("text.AppendLine(string.Format(global::System.Globalization.CultureInfo.InvariantCulture, \"total parameters {0:N0}, {1:F2} GMAC\", ParameterCounts.Total, MultiplyAccumulates(height, width) / 1e9));");
        w.Line("return text.ToString();");
        w.Close();
    }

    private static void EmitSession(CodeWriter w, NetworkModel m, NetworkPlan plan)
    {
        const string B = Backends;
        int[] size = SizeSlots(m, null);
        MemoryPlan memory = plan.Inference;
        var layerProperty = m.Layers.Select(l => PropertyName(l.Key)).ToArray();
        string V(int value) => $"_v[{value}]";

        w.Line();
        w.Line("/// <summary>Element counts of the inference session's activation buffers for a batch and the sizes of <see cref=\"Sizes\"/>.</summary>");
        w.Open("private static long[] InferenceSlotSizes(int batch, int[] s)");
        w.Line($"long[] size = new long[{memory.SlotCount}];");
        foreach (int v in plan.Forward.SelectMany(st => st.Writes))
        {
            int slot = memory.SlotOf[v];
            w.Line($"size[{slot}] = global::System.Math.Max(size[{slot}], {Elements(m, size, v)});");
        }
        w.Line("return size;");
        w.Close().Line();

        w.Line("/// <summary>Bytes of the activation buffers of a <see cref=\"Session\"/> for <paramref name=\"batch\"/> x C x <paramref name=\"height\"/> x <paramref name=\"width\"/> inputs (prepared weights not included).</summary>");
        w.Open("public static long InferenceActivationBytes(int batch, int height, int width)");
        w.Line("if (batch < 1) throw new global::System.ArgumentOutOfRangeException(nameof(batch), $\"batch {batch} must be positive\");");
        w.Line("long bytes = 0;");
        w.Line("foreach (long elements in InferenceSlotSizes(batch, Sizes(height, width))) bytes += 4 * elements;");
        w.Line("return bytes;");
        w.Close().Line();

        w.Line("/// <summary>Prepares this network's weights on <paramref name=\"backend\"/> (batch norm folded, packed); one <see cref=\"Prepared\"/> serves every input size.</summary>");
        w.Line($"public Prepared Prepare({B}.IBackend backend) => new(this, backend);").Line();
        w.Line("/// <summary>Prepares the weights and plans memory for one input size; the session owns its prepared weights.</summary>");
        w.Open($"public Session CreateSession({B}.IBackend backend, int batch, int height, int width)");
        w.Line("var weights = new Prepared(this, backend);");
        w.Open("try");
        w.Line("return new(weights, batch, height, width, ownsWeights: true, buffers: null);");
        w.Close();
        w.Open("catch");
        w.Line("weights.Dispose();");
        w.Line("throw;");
        w.Close();
        w.Close().Line();

        w.Line("/// <summary>");
        w.Line($"/// This network's {plan.Convs.Count} convolutions prepared on one backend, batch norm folded in.");
        w.Line("/// Read-only once made: sessions on several threads may share it (as far as the backend allows");
        w.Line("/// concurrent callers); dispose it only after every session that uses it.");
        w.Line("/// </summary>");
        w.Open("public sealed class Prepared : global::GhmGen.Layers.IPreparedNetwork");
        w.Line("private bool _disposed;").Line();
        // For training (TrainingWeights), trained convolutions are prepared to read their weights from the layers
        // where the backend can (no packed copy kept), and those of batch-statistics batch norms unfolded.
        var trainedConvs = new HashSet<int>(plan.TrainedConvs.Select(t => t.Conv));
        w.Open($"internal Prepared({m.TypeName} network, {B}.IBackend backend, bool training = false)");
        w.Line("global::System.ArgumentNullException.ThrowIfNull(network);");
        w.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
        w.Line("Backend = backend;");
        w.Line($"var convs = new {B}.IPreparedConv[{plan.Convs.Count}];");
        w.Open("try");
        w.Line("float[]? scratch = null; // one folding buffer for every convolution");
        for (int i = 0; i < plan.Convs.Count; i++)
        {
            PreparedConvModel conv = plan.Convs[i];
            string norm = conv.BatchNorm is { } bn ? "network." + layerProperty[bn] : "null";
            if (conv.BatchStatistics) norm = $"training ? null : {norm}";
            string layer = "network." + layerProperty[conv.Layer];
            w.Line(trainedConvs.Contains(i)
                ? $"convs[{i}] = training ? global::GhmGen.Layers.ConvPreparation.PrepareTrained(backend, {layer}, {norm}, ref scratch) : global::GhmGen.Layers.ConvPreparation.Prepare(backend, {layer}, {norm}, ref scratch);"
                : $"convs[{i}] = global::GhmGen.Layers.ConvPreparation.Prepare(backend, {layer}, {norm}, ref scratch);");
        }
        w.Close();
        w.Open("catch");
        w.Line("// A failed preparation (a bad weight, a device out of memory) leaves nothing prepared behind.");
        w.Line($"foreach ({B}.IPreparedConv? conv in convs) conv?.Dispose();");
        w.Line("throw;");
        w.Close();
        w.Line("Convs = convs;");
        w.Close().Line();
        w.Line("/// <inheritdoc/>");
        w.Line($"public {B}.IBackend Backend {{ get; }}").Line();
        w.Line($"internal {B}.IPreparedConv[] Convs {{ get; }}").Line();
        w.Line("/// <summary>Plans activation memory for one input size, sharing these weights.</summary>");
        w.Open("public Session CreateSession(int batch, int height, int width)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("return new(this, batch, height, width, ownsWeights: false, buffers: null);");
        w.Close().Line();
        w.Line("/// <summary>");
        w.Line("/// A session over activation buffers the caller owns (and disposes): one per entry of");
        w.Line("/// <see cref=\"ActivationBufferSizes\"/>, each at least that long, allocated on <see cref=\"Backend\"/>.");
        w.Line("/// Buffers sized for the largest input can serve sessions of every smaller one, one at a time.");
        w.Line("/// </summary>");
        w.Open($"public Session CreateSession(int batch, int height, int width, global::System.Collections.Generic.IReadOnlyList<{B}.DeviceBuffer> buffers)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("global::System.ArgumentNullException.ThrowIfNull(buffers);");
        w.Line("return new(this, batch, height, width, ownsWeights: false, buffers);");
        w.Close().Line();
        w.Line("/// <summary>Elements of each activation buffer a session for this batch and input size needs.</summary>");
        w.Open("public long[] ActivationBufferSizes(int batch, int height, int width)");
        w.Line("Session.CheckSize(batch, height, width);");
        w.Line("return InferenceSlotSizes(batch, Sizes(height, width));");
        w.Close().Line();
        w.Line($"global::GhmGen.Layers.IForwardSession global::GhmGen.Layers.IPreparedNetwork.CreateSession(int batch, int height, int width, global::System.Collections.Generic.IReadOnlyList<{B}.DeviceBuffer> buffers) => CreateSession(batch, height, width, buffers);").Line();
        w.Line("/// <summary>Whether <see cref=\"Dispose\"/> has run.</summary>");
        w.Line("internal bool IsDisposed => _disposed;").Line();
        w.Line("global::GhmGen.Layers.IForwardSession global::GhmGen.Layers.IPreparedNetwork.CreateSession(int batch, int height, int width) => CreateSession(batch, height, width);").Line();
        w.Line("/// <summary>Releases the prepared weights.</summary>");
        w.Open("public void Dispose()");
        w.Line("if (_disposed) return;");
        w.Line("_disposed = true;");
        w.Line($"foreach ({B}.IPreparedConv conv in Convs) conv.Dispose();");
        w.Close();
        w.Close().Line();

        w.Line("/// <summary>");
        w.Line("/// This network on one backend for one input size: prepared convolutions (batch norm folded),");
        w.Line($"/// {memory.SlotCount} activation buffers reused as values die, and a straight-line <see cref=\"Forward\"/>.");
        w.Line("/// Not thread-safe: one caller at a time (the outputs live in its buffers). Sessions of one");
        w.Line("/// <see cref=\"Prepared\"/> may run on different threads at once when the backend allows it.");
        w.Line("/// </summary>");
        w.Open("public sealed class Session : global::GhmGen.Layers.IForwardSession");
        w.Line($"private readonly {B}.IBackend _backend;");
        w.Line("private readonly Prepared _weights;");
        w.Line("private readonly bool _ownsWeights;");
        w.Line($"private readonly {B}.DeviceBuffer[] _slots;");
        w.Line("private readonly bool _ownsSlots;");
        w.Line($"private readonly {B}.IPreparedConv[] _convs;");
        w.Line($"private readonly {B}.TensorView[] _v = new {B}.TensorView[{m.Values.Count}];");
        w.Line("private bool _disposed;").Line();

        w.Open($"internal Session(Prepared weights, int batch, int height, int width, bool ownsWeights, global::System.Collections.Generic.IReadOnlyList<{B}.DeviceBuffer>? buffers)");
        w.Line("CheckSize(batch, height, width);");
        w.Line("int[] s = Sizes(height, width);");
        w.Line("_weights = weights;");
        w.Line("_ownsWeights = ownsWeights;");
        w.Line("_backend = weights.Backend;");
        w.Line("_convs = weights.Convs;");
        w.Line("Batch = batch;");
        w.Line("Height = height;");
        w.Line("Width = width;");
        w.Line("long[] size = InferenceSlotSizes(batch, s);");
        w.Line("_ownsSlots = buffers is null;");
        w.Line($"if (buffers is null) _slots = {B}.DeviceBuffers.AllocateAll(_backend, size); // {memory.SlotCount} buffers, or none");
        w.Open("else");
        w.Line($"if (buffers.Count != {memory.SlotCount}) throw new global::System.ArgumentException($\"{m.NetworkName} needs {memory.SlotCount} activation buffers, not {{buffers.Count}}\", nameof(buffers));");
        w.Line($"_slots = new {B}.DeviceBuffer[{memory.SlotCount}];");
        w.Open("for (int i = 0; i < _slots.Length; i++)");
        w.Line("if (buffers[i] is null || buffers[i].Length < size[i]) throw new global::System.ArgumentException($\"activation buffer {i} holds {buffers[i]?.Length ?? 0} elements; batch {batch} at {height}x{width} needs {size[i]}\", nameof(buffers));");
        w.Line("_slots[i] = buffers[i];");
        w.Close();
        w.Close();
        foreach (int v in plan.Forward.SelectMany(st => st.Writes))
            w.Line($"_v[{v}] = {View(m, size, v, memory.SlotOf[v])}; // {m.Values[v].Name}");
        w.Close().Line();

        w.Open("internal static void CheckSize(int batch, int height, int width)");
        w.Line("if (batch < 1) throw new global::System.ArgumentOutOfRangeException(nameof(batch), $\"batch {batch} must be positive\");");
        w.Line($"if (height < MinInputSize || width < MinInputSize) throw new global::System.ArgumentOutOfRangeException(nameof(height), $\"input size {{height}}x{{width}} is below {m.NetworkName}'s minimum of {{MinInputSize}}x{{MinInputSize}}\");");
        w.Close().Line();
        w.Line("/// <summary>Batch size.</summary>");
        w.Line("public int Batch { get; }").Line();
        w.Line("/// <summary>Input height.</summary>");
        w.Line("public int Height { get; }").Line();
        w.Line("/// <summary>Input width.</summary>");
        w.Line("public int Width { get; }").Line();
        w.Line("/// <summary>The input tensor (N x C x H x W).</summary>");
        w.Line($"public {B}.TensorView Input => {V(plan.Forward[0].Output)};").Line();
        foreach (OutputModel o in m.Outputs)
        {
            w.Line($"/// <summary>Output <c>{o.Name}</c> (<c>{m.Values[o.Value].Name}</c>), valid after <see cref=\"Forward\"/>.</summary>");
            w.Line($"public {B}.TensorView {Pascal(o.Name)} => {V(o.Value)};").Line();
        }
        w.Line("/// <summary>Every output by name, in declaration order.</summary>");
        w.Line($"public global::System.Collections.Generic.IReadOnlyList<(string Name, {B}.TensorView Tensor)> Outputs => [{string.Join(", ", m.Outputs.Select(o => $"(\"{o.Name}\", {V(o.Value)})"))}];").Line();

        w.Line("/// <summary>Runs the network on <paramref name=\"input\"/> (N x C x H x W, row-major); read the outputs afterwards.</summary>");
        w.Open("public void Forward(global::System.ReadOnlySpan<float> input)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_weights.IsDisposed, _weights);");
        w.Line($"{B}.IBackend b = _backend;");
        WriteForward(w, m, plan, plan.Forward, training: false, memory, V);
        w.Close().Line();

        w.Line("/// <summary>Releases the activation buffers it allocated (not a caller's), and the prepared weights when this session made them.</summary>");
        w.Open("public void Dispose()");
        w.Line("if (_disposed) return;");
        w.Line("_disposed = true;");
        w.Line($"if (_ownsSlots) foreach ({B}.DeviceBuffer slot in _slots) slot.Dispose();");
        w.Line("if (_ownsWeights) _weights.Dispose();");
        w.Close();
        w.Close();
    }

    /// <summary>
    /// The straight-line forward calls of <paramref name="steps"/> (<see cref="NetworkPlan.Forward"/>, or in a training
    /// session <see cref="NetworkPlan.TrainingForward"/>); <paramref name="memory"/> says which elementwise calls run in place.
    /// </summary>
    internal static void WriteForward(CodeWriter w, NetworkModel m, NetworkPlan plan, EquatableArray<ForwardStep> steps, bool training, MemoryPlan memory, System.Func<int, string> V)
    {
        for (int i = 0; i < steps.Count; i++)
        {
            ForwardStep step = steps[i];
            string name = m.Values[step.Output].Name;
            switch (step)
            {
                case UploadStep:
                    w.Line($"b.Upload(input, {V(step.Output)}); // {name}");
                    break;
                case ConvStep c:
                {
                    // In training, a convolution whose batch norm uses batch statistics runs unfolded.
                    PreparedConvModel conv = plan.Convs[c.Conv];
                    if (training && conv.BatchStatistics) conv = conv with { BatchNorm = null };
                    w.Line($"b.Conv2d(_convs[{c.Conv}], {V(c.Input)}, {V(c.Output)}, {(c.Residual is { } residual ? V(residual) : "null")}, relu: {Bool(c.Relu)}); // {ConvComment(m, conv, c)}");
                    break;
                }
                case SharedConvStep g:
                {
                    ConvStep c = g.Applications[0];
                    PreparedConvModel conv = plan.Convs[c.Conv];
                    if (training && conv.BatchStatistics) conv = conv with { BatchNorm = null };
                    string inputs = string.Join(", ", g.Applications.Select(a => V(a.Input)));
                    string outputs = string.Join(", ", g.Applications.Select(a => V(a.Output)));
                    w.Line($"b.Conv2dShared(_convs[{c.Conv}], [{inputs}], [{outputs}], relu: {Bool(c.Relu)}); // {ConvComment(m, conv, c)}, {g.Applications.Count} applications");
                    break;
                }
                case BatchNormStep n:
                {
                    string residual = n.Residual is { } r ? V(r) : "null";
                    w.Line($"b.BatchNormTraining({V(n.Input)}, _norms[{n.Norm}].WeightView, _norms[{n.Norm}].BiasView, {residual}, relu: {Bool(n.Relu)}, {V(n.Output)}, _mean[{n.Application}], _variance[{n.Application}], {BatchNormEpsilon}); // {m.Layers[plan.Norms[n.Norm]].Key} (batch statistics){(n.Residual is null ? "" : " + residual")}{(n.Relu ? " + relu" : "")}");
                    break;
                }
                case MaxPoolStep p:
                    w.Line($"b.MaxPool2d({V(p.Input)}, {V(p.Output)}, {p.Kernel}, {p.Stride}, {p.Padding}); // {name}");
                    break;
                case UpsampleAddStep u:
                    if (!memory.InPlace[i]) w.Line($"b.Copy({V(u.Lower)}, {V(u.Output)});");
                    w.Line($"b.UpsampleNearestAdd({V(u.Upper)}, {V(u.Output)}); // {name}");
                    break;
                case AddStep a:
                    w.Line($"b.Add({V(a.Left)}, {V(a.Right)}, {V(a.Output)}, relu: {Bool(a.Relu)}); // {name}");
                    break;
                case ReluStep r:
                    w.Line($"b.Relu({V(r.Input)}, {V(r.Output)}); // {name}");
                    break;
            }
        }
    }

    private static string Operation(NetworkModel m, NodeModel n)
    {
        switch (n)
        {
            case ConvNode c:
            {
                var l = (ConvLayer)m.Layers[c.Layer];
                var s = new StringBuilder($"conv {l.Kernel}x{l.Kernel}");
                if (l.Stride != 1) s.Append('/').Append(l.Stride);
                s.Append(' ').Append(l.InChannels).Append("->").Append(l.OutChannels);
                if (l.Groups != 1) s.Append(" g").Append(l.Groups);
                if (c.Relu) s.Append(" +relu");
                if (c.SharedRepeat) s.Append(" (shared)");
                return s.ToString();
            }
            case BatchNormNode b: return "batch norm" + (b.SharedRepeat ? " (shared)" : "");
            case MaxPoolNode p: return $"max-pool {p.Kernel}x{p.Kernel}/{p.Stride} pad {p.Padding}";
            case UpsampleNode u: return "nearest to size of " + m.Values[u.SizeOf].Name;
            case InputNode: return "input";
            case ReluNode: return "relu";
            default: return "add";
        }
    }
}
