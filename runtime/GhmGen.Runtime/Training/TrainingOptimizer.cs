// What the Trainer, TrainingCheckpoint and the benchmarks need of an optimiser, shared by
// SgdOptimizer and AdamWOptimizer: one param group over a fixed, ordered parameter list (the
// index order of torch's optimizer.state_dict()), its lr and mmcv's initial_lr, and a step that
// runs over 64K-element chunks of the parameters on several threads. The set of optimisers is
// closed (TrainingOptimizerKind names them; checkpoints are written per kind), so only this
// assembly derives from it.
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>The optimisers GhmGen trains with.</summary>
public enum TrainingOptimizerKind
{
    /// <summary>torch's <c>SGD</c> with momentum and L2 weight decay (<see cref="SgdOptimizer"/>; mmdetection's recipe).</summary>
    Sgd,

    /// <summary>torch's <c>AdamW</c>, with decoupled weight decay (<see cref="AdamWOptimizer"/>).</summary>
    AdamW,
}

/// <summary>
/// An optimiser of one param group over a fixed, ordered parameter list: <see cref="SgdOptimizer"/>
/// or <see cref="AdamWOptimizer"/>. A parameter that gets no gradient in a step is not touched and
/// keeps no state until its first gradient, as in torch. Not thread-safe: use an instance from one
/// thread at a time; <see cref="Step"/> itself spreads its work over up to
/// <see cref="MaxDegreeOfParallelism"/> threads, and its results do not depend on that number.
/// </summary>
public abstract class TrainingOptimizer
{
    /// <summary>Elements per parallel work item.</summary>
    private protected const int Chunk = 1 << 16;

    private readonly StateTensor[] _parameters;
    private readonly Dictionary<StateTensor, int> _index = new(ReferenceEqualityComparer.Instance);

    /// <summary>Checks and indexes the parameters; <see cref="InitialLearningRate"/> starts equal to <paramref name="learningRate"/>.</summary>
    private protected TrainingOptimizer(IEnumerable<StateTensor> parameters, double learningRate, double weightDecay)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!double.IsFinite(learningRate) || learningRate < 0) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learning rate must be finite and >= 0");
        if (!double.IsFinite(weightDecay) || weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be finite and >= 0");
        _parameters = [.. parameters];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < _parameters.Length; i++)
        {
            StateTensor p = _parameters[i] ?? throw new ArgumentException("a parameter is null", nameof(parameters));
            if (p.Kind != StateKind.Parameter || p.ElementType != StateElementType.Float32)
            {
                throw new ArgumentException($"'{p.Key}' is not a float32 parameter; only parameters are optimised", nameof(parameters));
            }
            if (!keys.Add(p.Key)) throw new ArgumentException($"parameter '{p.Key}' appears twice", nameof(parameters));
            _index.Add(p, i);
        }
        LearningRate = learningRate;
        InitialLearningRate = learningRate;
        WeightDecay = weightDecay;
    }

    /// <summary>Which optimiser this is (it decides the checkpoint's optimiser state).</summary>
    public abstract TrainingOptimizerKind Kind { get; }

    /// <summary>The parameters in index order.</summary>
    public IReadOnlyList<StateTensor> Parameters => _parameters;

    /// <summary>The param group's <c>lr</c> (a Python float). The schedule sets it before each iteration.</summary>
    public double LearningRate
    {
        get;
        set => field = double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "learning rate must be finite and >= 0");
    }

    /// <summary>mmcv's <c>initial_lr</c> (the schedule's base lr), saved in the param group so a resumed run finds it.</summary>
    public double InitialLearningRate
    {
        get;
        set => field = double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "learning rate must be finite and >= 0");
    }

    /// <summary>The param group's <c>weight_decay</c> (L2 on the gradient for SGD, decoupled for AdamW).</summary>
    public double WeightDecay { get; }

    /// <summary>Steps taken (calls of <see cref="Step"/>); not saved by torch, kept for callers.</summary>
    public long StepCount { get; private protected set; }

    /// <summary>Maximum threads per step; -1 uses all cores. Results do not depend on it.</summary>
    public int MaxDegreeOfParallelism { get; set; } = -1;

    /// <summary>The index of a parameter (by reference), or -1 when it is not one of <see cref="Parameters"/>.</summary>
    public int IndexOf(StateTensor parameter) => _index.TryGetValue(parameter, out int i) ? i : -1;

    /// <summary>
    /// One step: updates every parameter that has a gradient in <paramref name="gradients"/>
    /// (parameters not listed, or listed with a null gradient, are untouched). Gradients are read,
    /// not changed.
    /// </summary>
    /// <param name="gradients">Parameters of this optimiser with their gradients; each at most once.</param>
    public abstract void Step(IReadOnlyList<ParameterWithGradient> gradients);

    /// <summary>The parameters of <paramref name="gradients"/> that have a gradient, by index, after checking them.</summary>
    private protected List<(int Index, float[] Gradient)> WithGradients(IReadOnlyList<ParameterWithGradient> gradients)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        var work = new List<(int Index, float[] Gradient)>(gradients.Count);
        var seen = new HashSet<int>();
        foreach (ParameterWithGradient pair in gradients)
        {
            ArgumentNullException.ThrowIfNull(pair.Parameter, nameof(gradients));
            int index = IndexOf(pair.Parameter);
            if (index < 0) throw new ArgumentException($"'{pair.Parameter.Key}' is not a parameter of this optimiser", nameof(gradients));
            if (!seen.Add(index)) throw new ArgumentException($"'{pair.Parameter.Key}' is listed twice", nameof(gradients));
            if (pair.Gradient == null) continue;
            if (pair.Gradient.LongLength != pair.Parameter.ElementCount)
            {
                throw new ArgumentException($"gradient of '{pair.Parameter.Key}' has {pair.Gradient.LongLength} values; the parameter has {pair.Parameter.ElementCount}", nameof(gradients));
            }
            work.Add((index, pair.Gradient));
        }
        return work;
    }

    /// <summary>Runs <paramref name="update"/>(work item, start, length) over <see cref="Chunk"/>-sized pieces of each work item's elements, in parallel.</summary>
    private protected void ForEachChunk(IReadOnlyList<int> lengths, Action<int, int, int> update)
    {
        var chunks = new List<(int Work, int Start, int Length)>();
        for (int w = 0; w < lengths.Count; w++)
        {
            int n = lengths[w];
            for (int s = 0; s < n; s += Chunk) chunks.Add((w, s, Math.Min(Chunk, n - s)));
        }
        var options = new ParallelOptions { MaxDegreeOfParallelism = MaxDegreeOfParallelism };
        Parallel.For(0, chunks.Count, options, c =>
        {
            (int w, int start, int length) = chunks[c];
            update(w, start, length);
        });
    }

    /// <summary>Checks that <paramref name="values"/> fits parameter <paramref name="index"/>.</summary>
    private protected void CheckStateArray(int index, float[] values, string what, string paramName)
    {
        if (values.LongLength != _parameters[index].ElementCount)
        {
            throw new ArgumentException($"{what} for '{_parameters[index].Key}' has {values.LongLength} values; the parameter has {_parameters[index].ElementCount}", paramName);
        }
    }

    /// <summary>Checks a parameter index.</summary>
    private protected void CheckIndex(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _parameters.Length);
    }
}
