using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Models;
using static GhmGen.Generators.Emit.EmitText;

namespace GhmGen.Generators.Emit;

/// <summary>
/// Writes <c>{Type}.Training.g.cs</c>: the trained keys, the training memory figure, and the
/// training session with the same forward calls as inference (keeping what backward needs) and a
/// straight-line <c>Backward</c> from the same plan.
/// </summary>
internal static class TrainingEmitter
{
    public static string Emit(PlannedNetwork network)
    {
        NetworkModel m = network.Model;
        NetworkPlan plan = network.Plan;
        var w = new CodeWriter();
        Header(w, m, "training");
        w.Open($"partial class {m.TypeName}");
        EmitTrainedKeys(w, m);
        EmitMemory(w, m, plan);
        EmitSession(w, m, plan);
        w.Close();
        return w.ToString();
    }

    /// <summary>
    /// Trained parameters in state-dict order, each with its gradient's owner (trained convolution t as t,
    /// batch-statistics batch norm n as <c>TrainedConvs.Count + n</c>: the unit whose gradients are
    /// collected together) and the member of <c>TrainingWeights</c> that holds its gradient: a trained
    /// convolution's (<c>Trained[t]</c>), or a batch-statistics batch norm's (<c>Norms[n]</c>).
    /// </summary>
    private static List<(string Key, int Owner, string Member)> TrainedParameters(NetworkModel m, NetworkPlan plan)
    {
        var ofLayer = new Dictionary<int, int>();
        for (int t = 0; t < plan.TrainedConvs.Count; t++)
        {
            PreparedConvModel conv = plan.Convs[plan.TrainedConvs[t].Conv];
            if (plan.TrainedConvs[t].Weight) ofLayer[conv.Layer] = t;
            if (plan.TrainedConvs[t].BatchNorm) ofLayer[conv.BatchNorm!.Value] = t;
        }
        var normOf = new Dictionary<int, int>();
        for (int n = 0; n < plan.Norms.Count; n++) normOf[plan.Norms[n]] = n;
        var result = new List<(string, int, string)>();
        for (int i = 0; i < m.Layers.Count; i++)
        {
            if (normOf.TryGetValue(i, out int norm))
            {
                int owner = plan.TrainedConvs.Count + norm;
                result.Add((m.Layers[i].Key + ".weight", owner, $"Norms[{norm}].Weight"));
                result.Add((m.Layers[i].Key + ".bias", owner, $"Norms[{norm}].Bias"));
                continue;
            }
            if (!ofLayer.TryGetValue(i, out int t)) continue;
            switch (m.Layers[i])
            {
                case ConvLayer c:
                    result.Add((c.Key + ".weight", t, $"Trained[{t}].Weight!"));
                    if (c.Bias) result.Add((c.Key + ".bias", t, $"Trained[{t}].Bias!"));
                    break;
                case BatchNormLayer b:
                    result.Add((b.Key + ".weight", t, $"Trained[{t}].BatchNormWeight!"));
                    result.Add((b.Key + ".bias", t, $"Trained[{t}].BatchNormBias!"));
                    break;
            }
        }
        return result;
    }

    /// <summary>Floats of the saved batch statistics (mean and variance per channel of each batch norm application).</summary>
    private static long StatisticsLength(NetworkModel m, NetworkPlan plan) =>
        plan.NormApplications.Sum(n => 2L * ((BatchNormLayer)m.Layers[plan.Norms[n]]).Channels);

    private static void EmitTrainedKeys(CodeWriter w, NetworkModel m)
    {
        long trained = m.Layers.Where(l => l.Trainable).Sum(l => l.ParameterCount);
        w.Line("/// <summary>Learnable parameters that are trained (the rest are frozen).</summary>");
        w.Line($"public const long TrainedParameterCount = {trained};").Line();
        w.Line("/// <summary>Keys of the trained parameters in state-dict order: the ones a <see cref=\"TrainingSession\"/> computes gradients for.</summary>");
        w.OpenList("public static global::System.Collections.Generic.IReadOnlyList<string> TrainedKeys { get; } =");
        foreach (LayerModel layer in m.Layers.Where(l => l.Trainable))
        {
            switch (layer)
            {
                case ConvLayer c:
                    w.Line($"\"{c.Key}.weight\",");
                    if (c.Bias) w.Line($"\"{c.Key}.bias\",");
                    break;
                case BatchNormLayer b:
                    w.Line($"\"{b.Key}.weight\", \"{b.Key}.bias\",");
                    break;
            }
        }
        w.CloseList().Line();
    }

    private static void EmitMemory(CodeWriter w, NetworkModel m, NetworkPlan plan)
    {
        int[] size = SizeSlots(m, null);
        int values = m.Values.Count;
        MemoryPlan memory = plan.Training;
        w.Line("/// <summary>Element counts of the training session's buffers (activations and their gradients) for a batch and the sizes of <see cref=\"Sizes\"/>.</summary>");
        w.Open("private static long[] TrainingSlotSizes(int batch, int[] s)");
        w.Line($"long[] size = new long[{memory.SlotCount}];");
        for (int t = 0; t < 2 * values; t++)
        {
            int slot = memory.SlotOf[t];
            if (slot < 0) continue;
            w.Line($"size[{slot}] = global::System.Math.Max(size[{slot}], {Elements(m, size, t % values)}); // {(t < values ? "" : "d ")}{m.Values[t % values].Name}");
        }
        w.Line("return size;");
        w.Close().Line();

        w.Line("/// <summary>");
        w.Line("/// Bytes of the activation and activation-gradient buffers of a <see cref=\"TrainingSession\"/> for");
        w.Line("/// <paramref name=\"batch\"/> x C x <paramref name=\"height\"/> x <paramref name=\"width\"/> inputs: the static plan keeps each");
        w.Line("/// activation only while the forward or backward pass still reads it and reuses dead buffers.");
        w.Line($"/// Not included: the prepared weights and the folded weight gradients (<see cref=\"TrainingWeights\"/>, shared by the sessions of every size).");
        w.Line("/// </summary>");
        w.Open("public static long TrainingActivationBytes(int batch, int height, int width)");
        w.Line("if (batch < 1) throw new global::System.ArgumentOutOfRangeException(nameof(batch), $\"batch {batch} must be positive\");");
        w.Line("long bytes = 0;");
        w.Line("foreach (long elements in TrainingSlotSizes(batch, Sizes(height, width))) bytes += 4 * elements;");
        if (StatisticsLength(m, plan) is var statistics and > 0)
            w.Line($"bytes += 4 * {statistics}; // the batch statistics of {plan.NormApplications.Count} batch norm applications");
        w.Line("return bytes;");
        w.Close().Line();
    }

    private static void EmitSession(CodeWriter w, NetworkModel m, NetworkPlan plan)
    {
        const string B = Backends;
        int[] size = SizeSlots(m, null);
        int values = m.Values.Count;
        MemoryPlan memory = plan.Training;
        var layerProperty = m.Layers.Select(l => PropertyName(l.Key)).ToArray();
        string A(int value) => $"_a[{value}]";
        string G(int value) => $"_g[{value}]";
        List<(string Key, int Owner, string Member)> parameters = TrainedParameters(m, plan);
        long statisticsLength = StatisticsLength(m, plan);

        w.Line(plan.Norms.Count > 0
            ? "/// <summary>Prepares this network's convolutions on <paramref name=\"backend\"/> for training (once; batch norms with batch statistics unfolded): sessions for every batch and input size share them.</summary>"
            : "/// <summary>Prepares this network's convolutions on <paramref name=\"backend\"/> for training (once, batch norm folded): sessions for every batch and input size share them.</summary>");
        w.Line($"public TrainingWeights PrepareTraining({B}.ITrainingBackend backend) => new(this, backend);").Line();

        w.Line("/// <summary>Prepares a copy of this network's weights on <paramref name=\"backend\"/> for training and plans the memory of both passes for one input size; the session owns those weights.</summary>");
        w.Open($"public TrainingSession CreateTrainingSession({B}.ITrainingBackend backend, int batch, int height, int width)");
        w.Line("CheckTrainingShape(batch, height, width);");
        w.Line("var weights = new TrainingWeights(this, backend);");
        w.Open("try");
        w.Line("return new(weights, batch, height, width, ownsWeights: true);");
        w.Close();
        w.Open("catch");
        w.Line("weights.Dispose();");
        w.Line("throw;");
        w.Close();
        w.Close().Line();

        w.Open("private static void CheckTrainingShape(int batch, int height, int width)");
        w.Line("if (batch < 1) throw new global::System.ArgumentOutOfRangeException(nameof(batch), $\"batch {batch} must be positive\");");
        w.Line($"if (height < MinInputSize || width < MinInputSize) throw new global::System.ArgumentOutOfRangeException(nameof(height), $\"input size {{height}}x{{width}} is below {m.NetworkName}'s minimum of {{MinInputSize}}x{{MinInputSize}}\");");
        w.Close().Line();

        EmitWeights(w, m, plan, layerProperty, parameters);

        w.Line("/// <summary>");
        w.Line($"/// This network in training on one backend for one input size: {memory.SlotCount} buffers shared by activations and");
        w.Line($"/// their gradients, a <see cref=\"Forward\"/> that keeps what the reverse pass reads, and a straight-line");
        w.Line($"/// <see cref=\"Backward()\"/> that writes the gradients of the {parameters.Count} trained parameters (<see cref=\"TrainedKeys\"/>)");
        w.Line("/// and nothing for frozen ones. The prepared weights, weight gradients and <see cref=\"Gradients\"/> are");
        w.Line("/// <see cref=\"Weights\"/>', its own (<see cref=\"CreateTrainingSession\"/>) or shared with sessions of other sizes");
        w.Line("/// (<see cref=\"TrainingWeights.CreateSession\"/>); so are the activation buffers, which the sessions of one");
        w.Line("/// <see cref=\"TrainingWeights\"/> share, grown to the largest shape (a session only holds views of them).");
        w.Line("/// A step: <see cref=\"Forward\"/>, fill <see cref=\"OutputGradients\"/>, <see cref=\"Backward()\"/>, change the");
        w.Line("/// host weights from <see cref=\"Gradients\"/>, <see cref=\"UpdateWeights\"/>; none of these allocates.");
        w.Line("/// Not thread-safe, and neither are the sessions of one <see cref=\"TrainingWeights\"/>: one of them runs at a time.");
        w.Line("/// </summary>");
        w.Open("public sealed class TrainingSession : global::GhmGen.Layers.ITrainingSession");
        w.Line($"private readonly {B}.ITrainingBackend _backend;");
        w.Line("private readonly TrainingWeights _weights;");
        w.Line("private readonly bool _ownsWeights;");
        w.Line($"private readonly {B}.IPreparedConv[] _convs;");
        w.Line($"private readonly {Layers}.TrainedConv[] _trained;");
        w.Line("private readonly int[] _s;");
        w.Line("private readonly long[] _size;");
        w.Line("private long _generation;");
        w.Line($"private readonly {B}.TensorView[] _a = new {B}.TensorView[{values}]; // activations");
        w.Line($"private readonly {B}.TensorView[] _g = new {B}.TensorView[{values}]; // their gradients");
        w.Line("private readonly float[] _scratch;");
        if (plan.Norms.Count > 0)
        {
            w.Line($"private readonly {Layers}.TrainedBatchNorm[] _norms;");
            w.Line($"private readonly {B}.DeviceBuffer _statistics; // the batch mean and variance of each batch norm application");
            w.Line($"private readonly {B}.TensorView[] _mean = new {B}.TensorView[{plan.NormApplications.Count}];");
            w.Line($"private readonly {B}.TensorView[] _variance = new {B}.TensorView[{plan.NormApplications.Count}];");
        }
        w.Line("private bool _forwardDone;");
        w.Line("private long _forwardVersion;");
        w.Line("private bool _disposed;").Line();

        // Constructor.
        w.Open("internal TrainingSession(TrainingWeights weights, int batch, int height, int width, bool ownsWeights)");
        w.Line("CheckTrainingShape(batch, height, width);");
        w.Line("int[] s = Sizes(height, width);");
        w.Line("_weights = weights;");
        w.Line("_ownsWeights = ownsWeights;");
        w.Line("_backend = weights.Backend;");
        w.Line("_convs = weights.Convs;");
        w.Line("_trained = weights.Trained;");
        w.Line("_scratch = weights.Scratch;");
        w.Line("Batch = batch;");
        w.Line("Height = height;");
        w.Line("Width = width;");
        w.Line("_s = s;");
        w.Line("_size = TrainingSlotSizes(batch, s);");
        if (plan.Norms.Count > 0)
        {
            w.Line("_norms = weights.Norms;");
            w.Line($"_statistics = _backend.Allocate({statisticsLength});");
            long at = 0;
            for (int a = 0; a < plan.NormApplications.Count; a++)
            {
                int channels = ((BatchNormLayer)m.Layers[plan.Norms[plan.NormApplications[a]]]).Channels;
                w.Line($"_mean[{a}] = new(_statistics, {at}, 1, {channels}, 1, 1);");
                w.Line($"_variance[{a}] = new(_statistics, {at + channels}, 1, {channels}, 1, 1);");
                at += 2L * channels;
            }
            w.Open("try");
            w.Line("Bind();");
            w.Close();
            w.Open("catch");
            w.Line("_statistics.Dispose();");
            w.Line("throw;");
            w.Close();
        }
        else
        {
            w.Line("Bind();");
        }
        w.Close().Line();

        w.Line($"// Views of the weights' shared activation buffers ({memory.SlotCount}), grown for this shape if they are too short.");
        w.Open("private void Bind()");
        w.Line($"{B}.DeviceBuffer[] slots = _weights.Arena.Reserve(_size);");
        w.Line("int batch = Batch;");
        w.Line("int[] s = _s;");
        for (int t = 0; t < 2 * values; t++)
        {
            int slot = memory.SlotOf[t];
            if (slot < 0) continue;
            int v = t % values;
            w.Line($"{(t < values ? A(v) : G(v))} = {View(m, size, v, slot, "slots")}; // {(t < values ? "" : "d ")}{m.Values[v].Name}");
        }
        w.Line("_generation = _weights.Arena.Generation;");
        w.Close().Line();

        // Members.
        w.Line("/// <summary>Batch size.</summary>");
        w.Line("public int Batch { get; }").Line();
        w.Line("/// <summary>Input height.</summary>");
        w.Line("public int Height { get; }").Line();
        w.Line("/// <summary>Input width.</summary>");
        w.Line("public int Width { get; }").Line();
        w.Line("/// <summary>The prepared weights this session runs with (its own when made by <see cref=\"CreateTrainingSession\"/>).</summary>");
        w.Line("public TrainingWeights Weights => _weights;").Line();
        w.Line("global::GhmGen.Layers.ITrainingWeights global::GhmGen.Layers.ITrainingSession.Weights => _weights;").Line();
        w.Line("/// <summary>The input tensor (N x C x H x W).</summary>");
        w.Line($"public {B}.TensorView Input => {A(plan.Forward[0].Output)};").Line();
        foreach (OutputModel o in m.Outputs)
        {
            w.Line($"/// <summary>Output <c>{o.Name}</c> (<c>{m.Values[o.Value].Name}</c>), valid after <see cref=\"Forward\"/>.</summary>");
            w.Line($"public {B}.TensorView {Pascal(o.Name)} => {A(o.Value)};").Line();
            w.Line($"/// <summary>d loss / d <c>{o.Name}</c>: write it before <see cref=\"Backward()\"/> (which uses it as scratch).</summary>");
            w.Line($"public {B}.TensorView {Pascal(o.Name)}Gradient => {G(o.Value)};").Line();
        }
        w.Line("/// <summary>Every output by name, in declaration order.</summary>");
        w.Line($"public global::System.Collections.Generic.IReadOnlyList<(string Name, {B}.TensorView Tensor)> Outputs => [{string.Join(", ", m.Outputs.Select(o => $"(\"{o.Name}\", {A(o.Value)})"))}];").Line();
        w.Line("/// <summary>Every output's gradient by output name, in declaration order.</summary>");
        w.Line($"public global::System.Collections.Generic.IReadOnlyList<(string Name, {B}.TensorView Tensor)> OutputGradients => [{string.Join(", ", m.Outputs.Select(o => $"(\"{o.Name}\", {G(o.Value)})"))}];").Line();
        w.Line("/// <summary>The gradient of every trained parameter (<see cref=\"TrainedKeys\"/>, same order), next to the parameter; valid after <see cref=\"Backward()\"/>: <see cref=\"Weights\"/>' <see cref=\"TrainingWeights.Gradients\"/>.</summary>");
        w.Line($"public global::System.Collections.Generic.IReadOnlyList<{Layers}.ParameterGradient> Gradients => _weights.Gradients;").Line();

        // Forward.
        w.Line("/// <summary>Runs the network on <paramref name=\"input\"/> (N x C x H x W, row-major), keeping what <see cref=\"Backward()\"/> reads.</summary>");
        w.Open("public void Forward(global::System.ReadOnlySpan<float> input)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_weights.IsDisposed, _weights);");
        w.Line("if (_generation != _weights.Arena.Generation) Bind(); // a session of a larger shape grew the buffers");
        w.Line("_weights.Arena.User = this;");
        w.Line(plan.Norms.Count > 0 ? $"{B}.ITrainingBackend b = _backend;" : $"{B}.IBackend b = _backend;");
        NetworkEmitter.WriteForward(w, m, plan, plan.TrainingForward, training: true, memory, A);
        // The running statistics, in forward order (a shared batch norm once per application, as PyTorch).
        foreach (BatchNormStep n in plan.TrainingForward.OfType<BatchNormStep>())
            w.Line($"_norms[{n.Norm}].UpdateRunningStatistics(b, _mean[{n.Application}], _variance[{n.Application}], (long){A(n.Input)}.N * {A(n.Input)}.H * {A(n.Input)}.W, _scratch);");
        w.Line("_forwardDone = true;");
        w.Line("_forwardVersion = _weights.Version;");
        w.Close().Line();

        // Backward.
        w.Line("/// <summary>");
        w.Line("/// The reverse pass of the last <see cref=\"Forward\"/>: from <see cref=\"OutputGradients\"/> to the gradient of");
        w.Line("/// every trained parameter (shared weights summed over their applications), batch norm unfolded,");
        w.Line("/// in <see cref=\"Gradients\"/>. One <see cref=\"Backward()\"/> per <see cref=\"Forward\"/>: it reuses the forward's buffers;");
        w.Line("/// none after an <see cref=\"UpdateWeights\"/> of the weights since that <see cref=\"Forward\"/>, and none after");
        w.Line("/// another session of the same weights ran its <see cref=\"Forward\"/> (the sessions share activation buffers).");
        w.Line("/// </summary>");
        w.Line("public void Backward() => Backward(null);").Line();

        w.Line("/// <summary>");
        w.Line("/// <see cref=\"Backward()\"/>, calling <paramref name=\"ready\"/>'s <see cref=\"global::GhmGen.Layers.IGradientReadySink.GradientReady\"/>");
        w.Line("/// for each trained parameter (its index in <see cref=\"Gradients\"/>) as soon as its gradient is final, in the order");
        w.Line("/// they become final; the gradients are bitwise those of <see cref=\"Backward()\"/>. Null: no calls, and the");
        w.Line("/// gradients are collected at the end.");
        w.Line("/// </summary>");
        w.Open("public void Backward(global::GhmGen.Layers.IGradientReadySink? ready)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_weights.IsDisposed, _weights);");
        w.Line("if (!_forwardDone) throw new global::System.InvalidOperationException(\"Backward needs a Forward first, one per Backward (the reverse pass reuses the forward's buffers)\");");
        w.Line("_forwardDone = false;");
        w.Line("if (_forwardVersion != _weights.Version) throw new global::System.InvalidOperationException(\"the weights were updated since this session's Forward: run Forward again before Backward\");");
        w.Line("if (!ReferenceEquals(_weights.Arena.User, this)) throw new global::System.InvalidOperationException(\"another session of these weights ran Forward since this session's Forward (they share activation buffers): run Forward again before Backward\");");
        w.Line($"{B}.ITrainingBackend b = _backend;");
        int first = plan.TrainingForward.Count + 1; // the timeline: forward steps, output gradients, backward steps
        int[] lastWrite = LastGradientWrites(plan);
        for (int i = 0; i < plan.Backward.Count; i++)
        {
            WriteBackwardStep(w, m, plan, plan.Backward[i], memory.InPlace[first + i], A, G);
            for (int t = 0; t < lastWrite.Length; t++)
                if (lastWrite[t] == i) WriteGradientsReady(w, m, plan, parameters, t);
        }
        for (int t = 0; t < lastWrite.Length; t++)
            if (lastWrite[t] < 0) WriteGradientsReady(w, m, plan, parameters, t); // written by no step: final now
        w.Open("if (ready is null)");
        for (int t = 0; t < plan.TrainedConvs.Count; t++)
            w.Line($"_trained[{t}].CollectGradients(b, _scratch); // {m.Layers[plan.Convs[plan.TrainedConvs[t].Conv].Layer].Key}");
        for (int n = 0; n < plan.Norms.Count; n++)
            w.Line($"_norms[{n}].CollectGradients(b); // {m.Layers[plan.Norms[n]].Key}");
        w.Close();
        w.Close().Line();

        // Update.
        w.Line("/// <summary>Folds the trained parameters' current host values again and hands them to the backend (after an optimizer step): <see cref=\"Weights\"/>' <see cref=\"TrainingWeights.UpdateWeights\"/>, seen by every session that shares them.</summary>");
        w.Open("public void UpdateWeights()");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("_weights.UpdateWeights();");
        w.Close().Line();

        w.Line("/// <summary>Ends this session, and releases the prepared weights and the activation buffers when this session made them (<see cref=\"CreateTrainingSession\"/>); shared buffers stay with <see cref=\"Weights\"/>.</summary>");
        w.Open("public void Dispose()");
        w.Line("if (_disposed) return;");
        w.Line("_disposed = true;");
        w.Line("if (ReferenceEquals(_weights.Arena.User, this)) _weights.Arena.User = null;");
        if (plan.Norms.Count > 0) w.Line("_statistics.Dispose();");
        w.Line("if (_ownsWeights) _weights.Dispose();");
        w.Close();
        w.Close();
    }

    private static void EmitWeights(CodeWriter w, NetworkModel m, NetworkPlan plan, string[] layerProperty, List<(string Key, int Owner, string Member)> parameters)
    {
        const string B = Backends;
        w.Line("/// <summary>");
        w.Line(plan.Norms.Count > 0
            ? $"/// This network's {plan.Convs.Count} convolutions prepared for training on one backend ({plan.Norms.Count} batch norms with batch statistics unfolded, in <c>Norms</c>),"
            : $"/// This network's {plan.Convs.Count} convolutions prepared for training on one backend (batch norm folded: norm_eval),");
        w.Line($"/// the folded weight gradients of its {plan.TrainedConvs.Count} trained convolutions ({plan.WeightGradientLength} floats, which are the host");
        w.Line("/// gradients' own arrays on a backend whose tensors live in host memory, <see cref=\"global::GhmGen.Layers.TrainedConv\"/>),");
        w.Line($"/// and the host <see cref=\"Gradients\"/> of its {parameters.Count} trained parameters: made once and shared by the");
        w.Line("/// <see cref=\"TrainingSession\"/>s of every batch and input size (<see cref=\"CreateSession\"/>), which hold only");
        w.Line("/// views of one set of activation buffers, grown for the largest shape (<see cref=\"ActivationBytes\"/>);");
        w.Line("/// one <see cref=\"UpdateWeights\"/> per optimizer step serves them all.");
        w.Line("/// Not thread-safe: its sessions share the weight-gradient buffers (device and host) and the folding");
        w.Line("/// scratch, so one of them runs at a time, and <see cref=\"Gradients\"/> are those of the last");
        w.Line("/// <c>Backward</c> of any of them. Dispose it after its sessions.");
        w.Line("/// </summary>");
        w.Open("public sealed class TrainingWeights : global::GhmGen.Layers.ITrainingWeights");
        w.Line("private readonly Prepared _prepared;");
        w.Line("private bool _disposed;").Line();

        w.Open($"internal TrainingWeights({m.TypeName} network, {B}.ITrainingBackend backend)");
        w.Line("global::System.ArgumentNullException.ThrowIfNull(network);");
        w.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
        w.Line("Backend = backend;");
        w.Line("_prepared = new Prepared(network, backend, training: true);");
        if (plan.Norms.Count > 0) w.Line($"Norms = new {Layers}.TrainedBatchNorm[{plan.Norms.Count}];");
        w.Line($"Trained = new {Layers}.TrainedConv[{plan.TrainedConvs.Count}];");
        w.Open("try");
        w.Line("Convs = _prepared.Convs;");
        w.Line($"Arena = new global::GhmGen.Layers.ActivationArena(backend, {plan.Training.SlotCount});");
        for (int n = 0; n < plan.Norms.Count; n++)
            w.Line($"Norms[{n}] = new(network.{layerProperty[plan.Norms[n]]}, backend); // batch statistics");
        w.Line("// The folded weight gradients: the host gradients' arrays where the backend can work in them, else its buffers.");
        for (int i = 0; i < plan.TrainedConvs.Count; i++)
        {
            TrainedConvModel t = plan.TrainedConvs[i];
            PreparedConvModel conv = plan.Convs[t.Conv];
            // A batch norm with batch statistics is not folded: its TrainedBatchNorm trains it.
            string bn = conv.BatchNorm is { } b && !conv.BatchStatistics ? "network." + layerProperty[b] : "null";
            w.Line($"Trained[{i}] = new(network.{layerProperty[conv.Layer]}, {bn}, Convs[{t.Conv}], trainConv: {Bool(t.Weight)}, trainBatchNorm: {Bool(t.BatchNorm)}, backend);");
        }
        int scratch = plan.TrainedConvs.Where(t => plan.Convs[t.Conv].BatchNorm is not null && !plan.Convs[t.Conv].BatchStatistics)
            .Select(t => (ConvLayer)m.Layers[plan.Convs[t.Conv].Layer]).Select(l => (int)l.WeightCount + l.OutChannels).DefaultIfEmpty(0).Max();
        int statistics = plan.Norms.Select(n => 2 * ((BatchNormLayer)m.Layers[n]).Channels).DefaultIfEmpty(0).Max();
        if (statistics > scratch)
            w.Line($"Scratch = new float[{statistics}]; // the batch statistics of the widest batch norm");
        else
            w.Line($"Scratch = new float[{scratch}]; // folded gradients and weights of the largest convolution with batch norm");
        w.OpenList("Gradients =");
        foreach ((string key, _, string member) in parameters)
            w.Line($"{member}, // {key}");
        w.CloseList();
        w.Close();
        w.Open("catch");
        w.Line("// Nothing of a failed construction (a device out of memory) stays allocated.");
        w.Line("Arena?.Dispose();");
        if (plan.Norms.Count > 0) w.Line($"foreach ({Layers}.TrainedBatchNorm? norm in Norms) norm?.Dispose();");
        w.Line($"foreach ({Layers}.TrainedConv? trained in Trained) trained?.Dispose();");
        w.Line("_prepared.Dispose();");
        w.Line("throw;");
        w.Close();
        w.Close().Line();

        w.Line("/// <summary>The backend the weights live on.</summary>");
        w.Line($"public {B}.ITrainingBackend Backend {{ get; }}").Line();
        w.Line("/// <summary>The gradient of every trained parameter (<see cref=\"TrainedKeys\"/>, same order), next to the parameter: written by the <c>Backward</c> of any of the sessions.</summary>");
        w.Line($"public global::System.Collections.Generic.IReadOnlyList<{Layers}.ParameterGradient> Gradients {{ get; }}").Line();
        w.Line($"internal {B}.IPreparedConv[] Convs {{ get; }}").Line();
        w.Line($"internal {Layers}.TrainedConv[] Trained {{ get; }}").Line();
        if (plan.Norms.Count > 0) w.Line($"internal {Layers}.TrainedBatchNorm[] Norms {{ get; }}").Line();
        w.Line("internal float[] Scratch { get; }").Line();
        w.Line("/// <summary>The activation buffers its sessions share, one session at a time.</summary>");
        w.Line("internal global::GhmGen.Layers.ActivationArena Arena { get; }").Line();
        w.Line("/// <summary>Bytes of the activation buffers its sessions share now: those of the largest shape yet, not one set per session.</summary>");
        w.Line("public long ActivationBytes => 4 * Arena.Elements;").Line();
        w.Line("/// <summary>Counts <see cref=\"UpdateWeights\"/> calls: a session's <c>Backward</c> needs a <c>Forward</c> with the current weights.</summary>");
        w.Line("internal long Version { get; private set; }").Line();
        w.Line("/// <summary>Whether <see cref=\"Dispose\"/> has run.</summary>");
        w.Line("internal bool IsDisposed => _disposed;").Line();

        w.Line("/// <summary>Plans the memory of both passes for one input size, sharing these weights.</summary>");
        w.Open("public TrainingSession CreateSession(int batch, int height, int width)");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("return new(this, batch, height, width, ownsWeights: false);");
        w.Close().Line();
        w.Line("global::GhmGen.Layers.ITrainingSession global::GhmGen.Layers.ITrainingWeights.CreateSession(int batch, int height, int width) => CreateSession(batch, height, width);").Line();

        w.Line("/// <summary>Folds the trained parameters' current host values again and hands them to the backend (after an optimizer step), for every session.</summary>");
        w.Open("public void UpdateWeights()");
        w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
        w.Line("foreach (global::GhmGen.Layers.TrainedConv conv in Trained) conv.Refold(Backend, Scratch);");
        if (plan.Norms.Count > 0) w.Line($"foreach ({Layers}.TrainedBatchNorm norm in Norms) norm.UpdateWeights(Backend);");
        w.Line("Version++;");
        w.Close().Line();

        w.Line("/// <summary>Releases the prepared weights, the folded weight gradients' backend buffers and the sessions' shared activation buffers.</summary>");
        w.Open("public void Dispose()");
        w.Line("if (_disposed) return;");
        w.Line("_disposed = true;");
        w.Line("Arena.Dispose();");
        if (plan.Norms.Count > 0) w.Line($"foreach ({Layers}.TrainedBatchNorm norm in Norms) norm.Dispose();");
        w.Line($"foreach ({Layers}.TrainedConv trained in Trained) trained.Dispose();");
        w.Line("_prepared.Dispose();");
        w.Close();
        w.Close().Line();
    }

    /// <summary>
    /// For each trained convolution, the index of the backward step that writes its folded
    /// gradients for the last time (a shared head convolution: its last level), or -1 if none does.
    /// After that step its host gradients can be collected and are final.
    /// </summary>
    private static int[] LastGradientWrites(NetworkPlan plan)
    {
        int[] last = Enumerable.Repeat(-1, plan.TrainedConvs.Count + plan.Norms.Count).ToArray();
        for (int i = 0; i < plan.Backward.Count; i++)
            if (WrittenGradientOwner(plan, plan.Backward[i]) is { } owner) last[owner] = i;
        return last;
    }

    /// <summary>
    /// The gradient owner (see <see cref="TrainedParameters"/>) whose gradients <paramref name="step"/> writes, if
    /// any: a trained convolution's folded gradients, or a batch-statistics batch norm's weight and bias gradients.
    /// </summary>
    private static int? WrittenGradientOwner(NetworkPlan plan, BackwardStep step) => step switch
    {
        ZeroWeightGradientsStep z => z.Trained,
        ConvWeightsBackwardStep c => c.Trained,
        BatchNormBackwardStep n => plan.TrainedConvs.Count + n.Norm,
        _ => null,
    };

    /// <summary>
    /// With a sink: collects gradient owner <paramref name="owner"/>'s host gradients now (a trained convolution's,
    /// batch norm unfolded, or a batch-statistics batch norm's) and signals each of its parameters, last in state-dict order first.
    /// </summary>
    private static void WriteGradientsReady(CodeWriter w, NetworkModel m, NetworkPlan plan, List<(string Key, int Owner, string Member)> parameters, int owner)
    {
        w.Open("if (ready is not null)");
        if (owner < plan.TrainedConvs.Count)
            w.Line($"_trained[{owner}].CollectGradients(b, _scratch); // {m.Layers[plan.Convs[plan.TrainedConvs[owner].Conv].Layer].Key}: final");
        else
            w.Line($"_norms[{owner - plan.TrainedConvs.Count}].CollectGradients(b); // {m.Layers[plan.Norms[owner - plan.TrainedConvs.Count]].Key}: final");
        for (int p = parameters.Count - 1; p >= 0; p--)
            if (parameters[p].Owner == owner) w.Line($"ready.GradientReady({p}); // {parameters[p].Key}");
        w.Close();
    }

    private static void WriteBackwardStep(CodeWriter w, NetworkModel m, NetworkPlan plan, BackwardStep step, bool inPlace,
        System.Func<int, string> A, System.Func<int, string> G)
    {
        string Name(int v) => m.Values[v].Name;
        string Acc(bool accumulate) => $"accumulate: {Bool(accumulate)}";
        switch (step)
        {
            case ZeroWeightGradientsStep z:
                w.Line($"b.Zero(_trained[{z.Trained}].WeightGradient); // no gradient reaches {m.Layers[plan.Convs[plan.TrainedConvs[z.Trained].Conv].Layer].Key}");
                if (plan.TrainedConvs[z.Trained].FoldedBias) w.Line($"b.Zero(_trained[{z.Trained}].BiasGradient!.Value);");
                break;
            case ZeroNormGradientsStep z:
                w.Line($"b.Zero(_norms[{z.Norm}].WeightGradientView); // no gradient reaches {m.Layers[plan.Norms[z.Norm]].Key}");
                w.Line($"b.Zero(_norms[{z.Norm}].BiasGradientView);");
                break;
            case BatchNormBackwardStep n:
            {
                string dx = n.WriteInput ? G(n.Input) : "null";
                w.Line($"b.BatchNormTrainingBackward({A(n.Input)}, {G(n.Output)}, _norms[{n.Norm}].WeightView, _mean[{n.Application}], _variance[{n.Application}], {BatchNormEpsilon}, {dx}, _norms[{n.Norm}].WeightGradientView, _norms[{n.Norm}].BiasGradientView, {Acc(n.AccumulateParameters)}); // d {Name(n.Input)} through {m.Layers[plan.Norms[n.Norm]].Key}");
                break;
            }
            case ReluBackwardStep r:
                w.Line($"b.ReluBackward({A(r.Value)}, {G(r.Value)}, {G(r.Value)}); // relu of {Name(r.Value)}");
                break;
            case ConvWeightsBackwardStep c:
            {
                TrainedConvModel t = plan.TrainedConvs[c.Trained];
                string bias = !t.FoldedBias ? "null" : $"_trained[{c.Trained}].BiasGradient";
                PreparedConvModel conv = plan.Convs[c.Conv].BatchStatistics ? plan.Convs[c.Conv] with { BatchNorm = null } : plan.Convs[c.Conv];
                w.Line($"b.Conv2dBackwardWeights(_convs[{c.Conv}].Spec, {A(c.Input)}, {G(c.Output)}, _trained[{c.Trained}].WeightGradient, {bias}, {Acc(c.Accumulate)}); // d {ConvComment(m, conv, null)} weights");
                break;
            }
            case ConvDataBackwardStep c:
                w.Line($"b.Conv2dBackwardData(_convs[{c.Conv}], {G(c.Output)}, {G(c.Input)}, {Acc(c.Accumulate)}); // d {Name(c.Input)} through {m.Layers[plan.Convs[c.Conv].Layer].Key}");
                break;
            case MaxPoolBackwardStep p:
                w.Line($"b.MaxPool2dBackward({A(p.Input)}, {G(p.Output)}, {G(p.Input)}, {p.Kernel}, {p.Stride}, {p.Padding}, {Acc(p.Accumulate)}); // d {Name(p.Input)} through {Name(p.Output)}");
                break;
            case UpsampleBackwardStep u:
                w.Line($"b.UpsampleNearestBackward({G(u.Output)}, {G(u.Upper)}, {Acc(u.Accumulate)}); // d {Name(u.Upper)} through the upsample of {Name(u.Output)}");
                break;
            case PassGradientStep p:
                if (p.Accumulate) w.Line($"b.Add({G(p.To)}, {G(p.From)}, {G(p.To)}, relu: false); // d {Name(p.To)} += d {Name(p.From)}");
                else if (inPlace) w.Line($"// d {Name(p.To)} = d {Name(p.From)} (the same buffer)");
                else w.Line($"b.Copy({G(p.From)}, {G(p.To)}); // d {Name(p.To)} = d {Name(p.From)}");
                break;
        }
    }
}
