// A training checkpoint in mmcv's layout (mmcv/runner/checkpoint.py save_checkpoint), written as
// a PyTorch zip file that torch.load reads and torch.optim.SGD.load_state_dict (or
// torch.optim.AdamW.load_state_dict) accepts (tools/reference/verify_train_checkpoint.py):
//
//   {'meta': {...caller's entries, 'epoch': E, 'iter': I,
//             'ghmgen_resume': {'format': 1, 'iter_in_epoch': n, 'data_seed': s or None,
//                               'optimizer_param_keys': [state-dict key of optimiser index 0, 1, ...]}},
//    'state_dict': OrderedDict(every state tensor, buffers included, in the given order),
//    'optimizer': {'state': {i: {'momentum_buffer': tensor}, ...},    (only parameters with a buffer)
//                  'param_groups': [{'lr', 'momentum', 'dampening', 'weight_decay', 'nesterov',
//                                    'maximize', 'foreach', 'differentiable', 'initial_lr',
//                                    'params': [0, 1, ..., n-1]}]}}
//
// or, for AdamW, torch 1.13's AdamW.state_dict() (its key order, as torch writes it):
//
//    'optimizer': {'state': {i: {'step': 0-dim float32 tensor, 'exp_avg': tensor,
//                                'exp_avg_sq': tensor}, ...},        (only parameters with state)
//                  'param_groups': [{'lr', 'betas': (b1, b2), 'eps', 'weight_decay', 'amsgrad': False,
//                                    'foreach': None, 'maximize': False, 'capturable': False,
//                                    'initial_lr', 'params': [0, 1, ..., n-1]}]}}
//
// Reading tells the two apart by the param group ('betas': AdamW, 'momentum': SGD); a resume
// must use the optimiser the file was written with. The optimiser indices are the optimiser's
// parameter order. `ghm train` passes every network
// parameter, frozen ones included, so the file indexes as mmdetection's own (all 195 R-50
// parameters, buffers for the 162 trained). Reading accepts that form and the trained-only form
// (indices over the trained parameters), told apart by the length of `params`.
using System.Globalization;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>How a checkpoint's optimiser state numbers its parameters.</summary>
public enum OptimizerIndexing
{
    /// <summary>Indices run over every network parameter, frozen ones included (mmdetection's form, and what GhmGen writes).</summary>
    AllParameters,

    /// <summary>Indices run over the trained parameters only.</summary>
    TrainedParameters,
}

/// <summary>
/// A training checkpoint: weights and buffers, the optimiser's state (SGD momentum buffers or
/// AdamW moments) and the run's progress,
/// written in mmcv's layout and read back for <c>--resume</c>. It owns <see cref="Weights"/>, which
/// holds the file open: dispose it when done with them. Not thread-safe: one thread at a time.
/// </summary>
public sealed class TrainingCheckpoint : IDisposable
{
    /// <summary>The meta key under which GhmGen keeps its own resume fields.</summary>
    public const string ResumeMetaKey = "ghmgen_resume";

    /// <summary>Version of the <see cref="ResumeMetaKey"/> dict.</summary>
    public const int ResumeFormat = 1;

    private TrainingCheckpoint(TorchCheckpoint weights, TrainingProgress progress, OptimizerIndexing indexing, SavedOptimizer saved)
    {
        Weights = weights;
        Progress = progress;
        Indexing = indexing;
        OptimizerKind = saved.Kind;
        MomentumBuffers = saved.Buffers;
        AdamWStates = saved.AdamWStates;
        LearningRate = saved.LearningRate;
        InitialLearningRate = saved.InitialLearningRate;
        Momentum = saved.Momentum;
        Beta1 = saved.Beta1;
        Beta2 = saved.Beta2;
        Epsilon = saved.Epsilon;
        WeightDecay = saved.WeightDecay;
    }

    /// <summary>The optimiser part of a file, as parsed.</summary>
    private sealed record SavedOptimizer(TrainingOptimizerKind Kind, double LearningRate, double? InitialLearningRate, double WeightDecay,
        double? Momentum, double? Beta1, double? Beta2, double? Epsilon,
        IReadOnlyDictionary<string, float[]> Buffers, IReadOnlyDictionary<string, AdamWParameterState> AdamWStates);

    /// <summary>The file: its state dict (load it with <see cref="StateDictLoader"/>) and meta.</summary>
    public TorchCheckpoint Weights { get; }

    /// <summary>Epoch, iteration and the resume fields (defaults for a file without them, such as mmdetection's).</summary>
    public TrainingProgress Progress { get; }

    /// <summary>How the file's optimiser state was indexed.</summary>
    public OptimizerIndexing Indexing { get; }

    /// <summary>Which optimiser wrote the state: SGD (a param group with <c>momentum</c>) or AdamW (one with <c>betas</c>).</summary>
    public TrainingOptimizerKind OptimizerKind { get; }

    /// <summary>SGD's momentum buffers by parameter key (parameters without one are absent; empty for AdamW).</summary>
    public IReadOnlyDictionary<string, float[]> MomentumBuffers { get; }

    /// <summary>AdamW's per-parameter state by parameter key (parameters without state are absent; empty for SGD).</summary>
    public IReadOnlyDictionary<string, AdamWParameterState> AdamWStates { get; }

    /// <summary>The param group's <c>lr</c> when saved.</summary>
    public double LearningRate { get; }

    /// <summary>mmcv's <c>initial_lr</c> (the schedule's base lr), or null when the group has none.</summary>
    public double? InitialLearningRate { get; }

    /// <summary>The param group's momentum (SGD), or null for AdamW.</summary>
    public double? Momentum { get; }

    /// <summary>The param group's <c>betas[0]</c> (AdamW), or null for SGD.</summary>
    public double? Beta1 { get; }

    /// <summary>The param group's <c>betas[1]</c> (AdamW), or null for SGD.</summary>
    public double? Beta2 { get; }

    /// <summary>The param group's <c>eps</c> (AdamW), or null for SGD.</summary>
    public double? Epsilon { get; }

    /// <summary>The param group's weight decay.</summary>
    public double WeightDecay { get; }

    /// <summary>
    /// Writes a training checkpoint (see the file header for the layout) through a temporary file
    /// that is renamed into place, so an interrupted write never leaves a partial file.
    /// </summary>
    /// <param name="path">Destination file.</param>
    /// <param name="state">Every state tensor (parameters and buffers) in state-dict order; must hold all of the optimiser's parameters.</param>
    /// <param name="optimizer">The optimiser (SGD or AdamW) whose parameter order, state and param group are saved.</param>
    /// <param name="progress">Epoch, iteration and resume fields.</param>
    /// <param name="meta">Further meta entries (a dict, e.g. <c>CLASSES</c>, <c>config</c>); its <c>epoch</c>, <c>iter</c> and <see cref="ResumeMetaKey"/> are replaced.</param>
    public static void Write(string path, IReadOnlyList<StateTensor> state, TrainingOptimizer optimizer, TrainingProgress progress, PickleValue? meta = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(progress);
        progress.Validate();
        if (meta != null && meta.Kind != PickleValueKind.Dict) throw new ArgumentException("meta must be a dict", nameof(meta));
        var inState = new HashSet<StateTensor>(state, ReferenceEqualityComparer.Instance);
        foreach (StateTensor p in optimizer.Parameters)
        {
            if (!inState.Contains(p)) throw new ArgumentException($"optimiser parameter '{p.Key}' is not in the state being saved", nameof(state));
        }

        var storages = new List<StorageSource>(state.Count + optimizer.Parameters.Count);
        var pickle = new PickleWriter();
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("meta");
        pickle.Value(BuildMeta(meta, optimizer, progress));
        pickle.String("state_dict");
        pickle.StateDict(state, storages);
        pickle.String("optimizer");
        switch (optimizer)
        {
            case SgdOptimizer sgd: WriteSgd(pickle, sgd, storages); break;
            case AdamWOptimizer adamW: WriteAdamW(pickle, adamW, storages); break;
            default: throw new ArgumentException($"optimiser {optimizer.Kind} cannot be saved", nameof(optimizer));
        }
        pickle.SetItems();
        TorchCheckpoint.WriteArchive(path, pickle.Finish(), storages);
    }

    private static PickleValue BuildMeta(PickleValue? extra, TrainingOptimizer optimizer, TrainingProgress progress)
    {
        var entries = new List<KeyValuePair<PickleValue, PickleValue>>();
        if (extra != null)
        {
            entries.AddRange(extra.Entries.Where(e => e.Key.Kind != PickleValueKind.String || e.Key.AsString is not ("epoch" or "iter" or ResumeMetaKey)));
        }
        entries.Add(Entry("epoch", PickleValue.FromInt64(progress.Epoch)));
        entries.Add(Entry("iter", PickleValue.FromInt64(progress.Iteration)));
        PickleValue resume = PickleValue.NewDict(
        [
            KeyValuePair.Create("format", PickleValue.FromInt64(ResumeFormat)),
            KeyValuePair.Create("iter_in_epoch", PickleValue.FromInt64(progress.IterationInEpoch)),
            KeyValuePair.Create("data_seed", progress.DataSeed is long seed ? PickleValue.FromInt64(seed) : PickleValue.None),
            KeyValuePair.Create("optimizer_param_keys", PickleValue.NewList(optimizer.Parameters.Select(p => PickleValue.FromString(p.Key)))),
        ]);
        entries.Add(Entry(ResumeMetaKey, resume));
        return PickleValue.NewDict(entries, extra?.IsOrderedDict ?? false);
    }

    private static KeyValuePair<PickleValue, PickleValue> Entry(string key, PickleValue value) => KeyValuePair.Create(PickleValue.FromString(key), value);

    /// <summary><c>torch.optim.SGD.state_dict()</c> of torch 1.13, with mmcv's <c>initial_lr</c>.</summary>
    private static void WriteSgd(PickleWriter pickle, SgdOptimizer optimizer, List<StorageSource> storages) =>
        WriteOptimizerState(pickle, optimizer, storages,
            i => optimizer.MomentumBuffer(i) is { } buffer ? [("momentum_buffer", buffer, optimizer.Parameters[i].Shape)] : null,
        [
            KeyValuePair.Create("lr", PickleValue.FromDouble(optimizer.LearningRate)),
            KeyValuePair.Create("momentum", PickleValue.FromDouble(optimizer.Momentum)),
            KeyValuePair.Create("dampening", PickleValue.FromInt64(0)), // torch's default, an int
            KeyValuePair.Create("weight_decay", PickleValue.FromDouble(optimizer.WeightDecay)),
            KeyValuePair.Create("nesterov", PickleValue.FromBool(false)),
            KeyValuePair.Create("maximize", PickleValue.FromBool(false)),
            KeyValuePair.Create("foreach", PickleValue.None),
            KeyValuePair.Create("differentiable", PickleValue.FromBool(false)),
            KeyValuePair.Create("initial_lr", PickleValue.FromDouble(optimizer.InitialLearningRate)),
        ]);

    /// <summary><c>torch.optim.AdamW.state_dict()</c> of torch 1.13, with mmcv's <c>initial_lr</c>.</summary>
    private static void WriteAdamW(PickleWriter pickle, AdamWOptimizer optimizer, List<StorageSource> storages) =>
        WriteOptimizerState(pickle, optimizer, storages,
            i => optimizer.State(i) is { } state
                ?
                [
                    ("step", [state.Step], []), // torch.tensor(float), 0-dim
                    ("exp_avg", state.ExpAvg, optimizer.Parameters[i].Shape),
                    ("exp_avg_sq", state.ExpAvgSq, optimizer.Parameters[i].Shape),
                ]
                : null,
        [
            KeyValuePair.Create("lr", PickleValue.FromDouble(optimizer.LearningRate)),
            KeyValuePair.Create("betas", PickleValue.NewTuple(PickleValue.FromDouble(optimizer.Beta1), PickleValue.FromDouble(optimizer.Beta2))),
            KeyValuePair.Create("eps", PickleValue.FromDouble(optimizer.Epsilon)),
            KeyValuePair.Create("weight_decay", PickleValue.FromDouble(optimizer.WeightDecay)),
            KeyValuePair.Create("amsgrad", PickleValue.FromBool(false)),
            KeyValuePair.Create("foreach", PickleValue.None),
            KeyValuePair.Create("maximize", PickleValue.FromBool(false)),
            KeyValuePair.Create("capturable", PickleValue.FromBool(false)),
            KeyValuePair.Create("initial_lr", PickleValue.FromDouble(optimizer.InitialLearningRate)),
        ]);

    // {'state': {i: {name: float32 tensor, ...} for each parameter with state}, 'param_groups': [group + 'params']}.
    private static void WriteOptimizerState(PickleWriter pickle, TrainingOptimizer optimizer, List<StorageSource> storages,
        Func<int, (string Name, float[] Values, IReadOnlyList<int> Shape)[]?> stateOf, List<KeyValuePair<string, PickleValue>> group)
    {
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("state");
        pickle.EmptyDict();
        bool any = false;
        for (int i = 0; i < optimizer.Parameters.Count; i++)
        {
            if (stateOf(i) is not { } entries) continue;
            if (!any) pickle.Mark();
            any = true;
            pickle.Int(i);
            pickle.EmptyDict();
            pickle.Mark();
            foreach ((string name, float[] values, IReadOnlyList<int> shape) in entries)
            {
                pickle.String(name);
                pickle.Tensor(storages, StorageSource.Of(values), CheckpointDType.Float32, shape);
            }
            pickle.SetItems();
        }
        if (any) pickle.SetItems();
        pickle.String("param_groups");
        group.Add(KeyValuePair.Create("params", PickleValue.NewList(Enumerable.Range(0, optimizer.Parameters.Count).Select(i => PickleValue.FromInt64(i)))));
        pickle.Value(PickleValue.NewList([PickleValue.NewDict(group)]));
        pickle.SetItems();
    }

    /// <summary>
    /// Reads a training checkpoint written by GhmGen or by mmdetection (<c>epoch_N.pth</c>).
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="parameterKeys">Every network parameter key, frozen ones included, in state-dict order.</param>
    /// <param name="trainedKeys">The keys of the trained parameters (a subset of <paramref name="parameterKeys"/>).</param>
    /// <exception cref="CheckpointFormatException">The file is not a training checkpoint, or its optimiser state does not fit these parameters.</exception>
    public static TrainingCheckpoint Read(string path, IReadOnlyList<string> parameterKeys, IReadOnlyCollection<string> trainedKeys)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(parameterKeys);
        ArgumentNullException.ThrowIfNull(trainedKeys);
        TorchCheckpoint checkpoint = TorchCheckpoint.Read(path);
        try
        {
            return Parse(checkpoint, parameterKeys, trainedKeys);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private static TrainingCheckpoint Parse(TorchCheckpoint checkpoint, IReadOnlyList<string> parameterKeys, IReadOnlyCollection<string> trainedKeys)
    {
        CheckpointFormatException Fail(string problem) => new(checkpoint.FileName, problem);
        var trainedSet = new HashSet<string>(trainedKeys, StringComparer.Ordinal);
        foreach (string key in trainedSet)
        {
            if (!parameterKeys.Contains(key)) throw new ArgumentException($"trained key '{key}' is not among the parameter keys", nameof(trainedKeys));
        }
        string[] trainedInOrder = [.. parameterKeys.Where(trainedSet.Contains)];

        PickleValue meta = checkpoint.Meta is { Kind: PickleValueKind.Dict } m ? m : throw Fail("no 'meta' dict; not a training checkpoint");
        int epoch = (int)RequireInt(meta["epoch"], "meta['epoch']", Fail);
        long iteration = RequireInt(meta["iter"], "meta['iter']", Fail);
        int iterInEpoch = 0;
        long? dataSeed = null;
        string[]? savedKeys = null;
        if (meta[ResumeMetaKey] is { } resume)
        {
            if (resume.Kind != PickleValueKind.Dict) throw Fail($"meta['{ResumeMetaKey}'] is not a dict");
            long format = RequireInt(resume["format"], $"meta['{ResumeMetaKey}']['format']", Fail);
            if (format != ResumeFormat) throw Fail($"resume format {format} is not supported (this GhmGen reads {ResumeFormat})");
            iterInEpoch = (int)RequireInt(resume["iter_in_epoch"], "iter_in_epoch", Fail);
            if (resume["data_seed"] is { Kind: PickleValueKind.Int } seed) dataSeed = seed.AsInt64;
            if (resume["optimizer_param_keys"] is { Kind: PickleValueKind.List } keys)
            {
                savedKeys = [.. keys.Items.Select(k => k.Kind == PickleValueKind.String ? k.AsString : throw Fail("optimizer_param_keys holds a non-string"))];
            }
        }
        var progress = new TrainingProgress(epoch, iteration, iterInEpoch, dataSeed);
        try
        {
            progress.Validate();
        }
        catch (ArgumentException e)
        {
            throw Fail("meta has an impossible position: " + e.Message);
        }

        PickleValue optimizer = checkpoint.Root["optimizer"] is { Kind: PickleValueKind.Dict } o ? o : throw Fail("no 'optimizer' dict; not a training checkpoint (use --load-from for weights only)");
        if (optimizer["param_groups"] is not { Kind: PickleValueKind.List } groups || groups.Items.Count != 1 || groups.Items[0].Kind != PickleValueKind.Dict)
        {
            throw Fail("optimizer['param_groups'] is not a list of one dict (GhmGen trains with one param group)");
        }
        PickleValue group = groups.Items[0];
        double lr = RequireFloat(group["lr"], "lr", Fail);
        double? initialLr = group["initial_lr"] is { } initial ? RequireFloat(initial, "initial_lr", Fail) : null;
        TrainingOptimizerKind kind;
        double? momentum = null, beta1 = null, beta2 = null, epsilon = null;
        double weightDecay;
        if (group["betas"] is { } betas)
        {
            kind = TrainingOptimizerKind.AdamW;
            if (betas.Kind is not (PickleValueKind.Tuple or PickleValueKind.List) || betas.Items.Count != 2
                || betas.Items.Any(b => b.Kind is not (PickleValueKind.Float or PickleValueKind.Int)))
            {
                throw Fail("param group 'betas' is not a pair of numbers");
            }
            beta1 = betas.Items[0].AsDouble;
            beta2 = betas.Items[1].AsDouble;
            epsilon = RequireFloat(group["eps"], "eps", Fail);
            weightDecay = RequireFloat(group["weight_decay"], "weight_decay", Fail);
            if (group["amsgrad"] is { Kind: PickleValueKind.Bool } amsgrad && amsgrad.AsBool) throw Fail("amsgrad is set; GhmGen's AdamW has no AMSGrad");
            if (group["maximize"] is { Kind: PickleValueKind.Bool } maximize && maximize.AsBool) throw Fail("maximize is set; GhmGen's AdamW minimises");
        }
        else if (group["momentum"] is { } saved)
        {
            kind = TrainingOptimizerKind.Sgd;
            momentum = RequireFloat(saved, "momentum", Fail);
            weightDecay = group["weight_decay"] is { } wd ? RequireFloat(wd, "weight_decay", Fail) : 0;
            if (group["dampening"] is { } dampening && RequireFloat(dampening, "dampening", Fail) != 0) throw Fail("dampening is not 0; GhmGen's SGD has none");
            if (group["nesterov"] is { Kind: PickleValueKind.Bool } nesterov && nesterov.AsBool) throw Fail("nesterov is set; GhmGen's SGD is plain momentum");
        }
        else
        {
            throw Fail("param group has neither 'momentum' (SGD) nor 'betas' (AdamW); GhmGen trains with SGD or AdamW");
        }
        if (group["params"] is not { Kind: PickleValueKind.List } indices) throw Fail("param group has no 'params' list");
        for (int i = 0; i < indices.Items.Count; i++)
        {
            if (indices.Items[i] is not { Kind: PickleValueKind.Int } index || index.AsInt64 != i) throw Fail($"param group 'params' is not 0..{indices.Items.Count - 1} in order");
        }

        int count = indices.Items.Count;
        OptimizerIndexing indexing;
        IReadOnlyList<string> keysByIndex;
        if (count == parameterKeys.Count)
        {
            indexing = OptimizerIndexing.AllParameters;
            keysByIndex = parameterKeys;
        }
        else if (count == trainedInOrder.Length)
        {
            indexing = OptimizerIndexing.TrainedParameters;
            keysByIndex = trainedInOrder;
        }
        else
        {
            throw Fail($"optimizer state indexes {count} parameters; the network has {parameterKeys.Count} ({trainedInOrder.Length} trained)");
        }
        if (savedKeys != null && !savedKeys.SequenceEqual(keysByIndex, StringComparer.Ordinal))
        {
            int at = Enumerable.Range(0, Math.Min(savedKeys.Length, keysByIndex.Count)).FirstOrDefault(i => savedKeys[i] != keysByIndex[i], Math.Min(savedKeys.Length, keysByIndex.Count));
            throw Fail($"optimizer index {at} is '{(at < savedKeys.Length ? savedKeys[at] : "(none)")}' in the file but '{(at < keysByIndex.Count ? keysByIndex[at] : "(none)")}' in this network");
        }

        var buffers = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var adamW = new Dictionary<string, AdamWParameterState>(StringComparer.Ordinal);
        if (optimizer["state"] is not { Kind: PickleValueKind.Dict } state) throw Fail("optimizer has no 'state' dict");
        foreach (KeyValuePair<PickleValue, PickleValue> entry in state.Entries)
        {
            if (entry.Key.Kind != PickleValueKind.Int || entry.Key.AsInt64 < 0 || entry.Key.AsInt64 >= count) throw Fail($"optimizer state key {entry.Key} is not a parameter index below {count}");
            string key = keysByIndex[(int)entry.Key.AsInt64];
            if (entry.Value.Kind != PickleValueKind.Dict) throw Fail($"optimizer state of '{key}' is not a dict");
            if (kind == TrainingOptimizerKind.AdamW)
            {
                if (entry.Value.Entries.Count == 0) continue; // torch starts such a parameter afresh
                float step = ReadStep(entry.Value["step"], key, Fail);
                float[] expAvg = ReadMoment(checkpoint, entry.Value, "exp_avg", key, Fail);
                float[] expAvgSq = ReadMoment(checkpoint, entry.Value, "exp_avg_sq", key, Fail);
                if (!trainedSet.Contains(key)) throw Fail($"frozen parameter '{key}' has AdamW state");
                adamW.Add(key, new AdamWParameterState(step, expAvg, expAvgSq));
                continue;
            }
            PickleValue? buffer = entry.Value["momentum_buffer"];
            if (buffer == null || buffer.Kind == PickleValueKind.None) continue; // torch keeps None with momentum 0
            float[] momentumBuffer = ReadStateTensor(checkpoint, buffer, "momentum_buffer", key, Fail);
            if (!trainedSet.Contains(key)) throw Fail($"frozen parameter '{key}' has a momentum buffer");
            buffers.Add(key, momentumBuffer);
        }
        return new TrainingCheckpoint(checkpoint, progress, indexing,
            new SavedOptimizer(kind, lr, initialLr, weightDecay, momentum, beta1, beta2, epsilon, buffers, adamW));
    }

    /// <summary>AdamW's <c>step</c>: a one-element tensor (torch 1.12 and later) or a number (older torch), at least 1.</summary>
    private static float ReadStep(PickleValue? value, string key, Func<string, CheckpointFormatException> fail)
    {
        double step = value switch
        {
            null => throw fail($"AdamW state of '{key}' has no 'step'"),
            { Kind: PickleValueKind.Int or PickleValueKind.Float } number => number.AsDouble,
            { Kind: PickleValueKind.Tensor } tensor when tensor.AsTensor.ElementCount == 1 => tensor.AsTensor.ReadFloat32()[0],
            _ => throw fail($"'step' of '{key}' is not a number or a one-element tensor"),
        };
        if (!double.IsFinite(step) || step < 1) throw fail(string.Create(CultureInfo.InvariantCulture, $"'step' of '{key}' is {step}; a saved step count is at least 1"));
        return (float)step;
    }

    /// <summary>An AdamW moment (<c>exp_avg</c>, <c>exp_avg_sq</c>): a tensor of the parameter's shape.</summary>
    private static float[] ReadMoment(TorchCheckpoint checkpoint, PickleValue state, string name, string key, Func<string, CheckpointFormatException> fail) =>
        state[name] is { } value ? ReadStateTensor(checkpoint, value, name, key, fail) : throw fail($"AdamW state of '{key}' has no '{name}'");

    /// <summary>A per-parameter optimiser tensor (SGD's momentum buffer, an AdamW moment): of the parameter's shape, read as float32.</summary>
    private static float[] ReadStateTensor(TorchCheckpoint checkpoint, PickleValue value, string name, string key, Func<string, CheckpointFormatException> fail)
    {
        if (value.Kind != PickleValueKind.Tensor) throw fail($"{name} of '{key}' is not a tensor");
        CheckpointTensor tensor = value.AsTensor;
        CheckpointTensor weight = checkpoint.Find(key) ?? throw fail($"optimizer state names '{key}', which is not in the state dict");
        if (!tensor.Shape.SequenceEqual(weight.Shape)) throw fail($"{name} of '{key}' is {tensor.ShapeText}; the parameter is {weight.ShapeText}");
        return tensor.ReadFloat32();
    }

    private static long RequireInt(PickleValue? value, string what, Func<string, CheckpointFormatException> fail) =>
        value is { Kind: PickleValueKind.Int } v ? v.AsInt64 : throw fail($"{what} is missing or not an int");

    private static double RequireFloat(PickleValue? value, string what, Func<string, CheckpointFormatException> fail) =>
        value is { Kind: PickleValueKind.Float or PickleValueKind.Int } v ? v.AsDouble : throw fail($"param group '{what}' is missing or not a number");

    /// <summary>
    /// Puts the saved optimiser state into <paramref name="optimizer"/>, which must be of the
    /// file's <see cref="OptimizerKind"/>: SGD's momentum buffers or AdamW's step counts and
    /// moments by key, <c>lr</c> and <c>initial_lr</c> (kept when the file has none). The
    /// hyper-parameters (momentum, or betas and eps; weight decay) must match, since torch's
    /// <c>load_state_dict</c> would otherwise silently switch to the file's.
    /// </summary>
    /// <exception cref="InvalidOperationException">The optimiser is of another kind, its hyper-parameters differ, or it does not train a parameter the file has state for.</exception>
    public void RestoreOptimizer(TrainingOptimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        if (optimizer.Kind != OptimizerKind)
        {
            throw new InvalidOperationException($"checkpoint '{Weights.FileName}' holds {Name(OptimizerKind)} optimiser state; this optimiser is {Name(optimizer.Kind)}");
        }
        var byKey = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < optimizer.Parameters.Count; i++) byKey[optimizer.Parameters[i].Key] = i;
        IEnumerable<string> stateKeys = OptimizerKind == TrainingOptimizerKind.AdamW ? AdamWStates.Keys : MomentumBuffers.Keys;
        foreach (string key in stateKeys)
        {
            if (!byKey.ContainsKey(key)) throw new InvalidOperationException($"checkpoint '{Weights.FileName}' has optimiser state for '{key}', which this optimiser does not train");
        }
        switch (optimizer)
        {
            case SgdOptimizer sgd:
                if (sgd.Momentum != Momentum || sgd.WeightDecay != WeightDecay)
                {
                    throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                        $"checkpoint '{Weights.FileName}' was trained with momentum {Momentum} and weight decay {WeightDecay}; this optimiser has {sgd.Momentum} and {sgd.WeightDecay}"));
                }
                for (int i = 0; i < sgd.Parameters.Count; i++)
                {
                    sgd.SetMomentumBuffer(i, MomentumBuffers.TryGetValue(sgd.Parameters[i].Key, out float[]? buffer) ? (float[])buffer.Clone() : null);
                }
                break;
            case AdamWOptimizer adamW:
                if (adamW.Beta1 != Beta1 || adamW.Beta2 != Beta2 || adamW.Epsilon != Epsilon || adamW.WeightDecay != WeightDecay)
                {
                    throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                        $"checkpoint '{Weights.FileName}' was trained with betas ({Beta1}, {Beta2}), eps {Epsilon} and weight decay {WeightDecay}; this optimiser has ({adamW.Beta1}, {adamW.Beta2}), {adamW.Epsilon} and {adamW.WeightDecay}"));
                }
                for (int i = 0; i < adamW.Parameters.Count; i++)
                {
                    adamW.SetState(i, AdamWStates.TryGetValue(adamW.Parameters[i].Key, out AdamWParameterState? state)
                        ? new AdamWParameterState(state.Step, (float[])state.ExpAvg.Clone(), (float[])state.ExpAvgSq.Clone())
                        : null);
                }
                break;
            default:
                throw new InvalidOperationException($"optimiser {optimizer.Kind} cannot be restored");
        }
        optimizer.LearningRate = LearningRate;
        if (InitialLearningRate is double initial) optimizer.InitialLearningRate = initial;
    }

    /// <summary>An optimiser's name as torch spells its class.</summary>
    internal static string Name(TrainingOptimizerKind kind) => kind switch
    {
        TrainingOptimizerKind.Sgd => "SGD",
        TrainingOptimizerKind.AdamW => "AdamW",
        _ => kind.ToString(),
    };

    /// <summary>Releases the file mapping of <see cref="Weights"/>.</summary>
    public void Dispose() => Weights.Dispose();
}
