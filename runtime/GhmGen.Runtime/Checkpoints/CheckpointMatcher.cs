using GhmGen.Layers;

namespace GhmGen.Checkpoints;

/// <summary>One expected state entry of a model: key, shape and element type (no values).</summary>
public sealed record StateEntry(string Key, IReadOnlyList<int> Shape, StateElementType ElementType);

/// <summary>The key/shape layout of a model's state dict, enough to match checkpoints without weights.</summary>
public sealed record StateLayout(string Name, IReadOnlyList<StateEntry> Entries)
{
    /// <summary>The layout of a network's state.</summary>
    public static StateLayout From(INetwork network) => From(network.Name, network.State);

    /// <summary>The layout of a list of state tensors.</summary>
    public static StateLayout From(string name, IEnumerable<StateTensor> state) =>
        new(name, state.Select(s => new StateEntry(s.Key, s.Shape, s.ElementType)).ToArray());
}

/// <summary>How a checkpoint's tensors compare with one model layout.</summary>
public sealed record CheckpointMatch(
    string Model,
    IReadOnlyList<(string Key, CheckpointTensor Tensor)> Matched,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<MismatchedTensor> Mismatched)
{
    /// <summary>Whether every key matches in shape and type, none missing, none extra.</summary>
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;

    /// <summary>Missing + unexpected + mismatched: 0 for an exact match.</summary>
    public int Differences => Missing.Count + Unexpected.Count + Mismatched.Count;
}

/// <summary>Compares checkpoint tensors with model layouts by key, shape and element type.</summary>
public static class CheckpointMatcher
{
    /// <summary>
    /// The candidate that fits best: an exact match if there is one, else the one with the fewest
    /// differences (ties go to the earlier candidate). Null when there are no candidates.
    /// </summary>
    public static CheckpointMatch? Match(IReadOnlyList<CheckpointTensor> tensors, IEnumerable<StateLayout> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        CheckpointMatch? best = null;
        foreach (StateLayout candidate in candidates)
        {
            CheckpointMatch match = Compare(tensors, candidate);
            if (best == null || match.Differences < best.Differences) best = match;
        }
        return best;
    }

    /// <summary><see cref="Match(IReadOnlyList{CheckpointTensor}, IEnumerable{StateLayout})"/> over named networks.</summary>
    public static CheckpointMatch? Match(IReadOnlyList<CheckpointTensor> tensors, IEnumerable<(string Name, INetwork Network)> candidates) =>
        Match(tensors, candidates.Select(c => StateLayout.From(c.Name, c.Network.State)));

    /// <summary>Compares checkpoint tensors with one layout. A leading <c>module.</c> on every checkpoint key is ignored.</summary>
    public static CheckpointMatch Compare(IReadOnlyList<CheckpointTensor> tensors, StateLayout layout)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(layout);
        const string DataParallelPrefix = "module.";
        bool strip = tensors.Count > 0
            && tensors.All(t => t.Key.StartsWith(DataParallelPrefix, StringComparison.Ordinal))
            && !layout.Entries.Any(e => e.Key.StartsWith(DataParallelPrefix, StringComparison.Ordinal));
        var byKey = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        foreach (CheckpointTensor tensor in tensors) byKey[strip ? tensor.Key[DataParallelPrefix.Length..] : tensor.Key] = tensor;

        var matched = new List<(string, CheckpointTensor)>();
        var missing = new List<string>();
        var mismatched = new List<MismatchedTensor>();
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (StateEntry entry in layout.Entries)
        {
            expected.Add(entry.Key);
            if (!byKey.TryGetValue(entry.Key, out CheckpointTensor? tensor))
            {
                missing.Add(entry.Key);
                continue;
            }
            bool typeFits = entry.ElementType == StateElementType.Float32 || tensor.DType.IsInteger();
            if (!typeFits || !tensor.Shape.SequenceEqual(entry.Shape))
            {
                string expectedType = entry.ElementType == StateElementType.Int64 ? "int64" : "float32";
                mismatched.Add(new MismatchedTensor(entry.Key, entry.Shape, expectedType, tensor.Shape, tensor.DType.TorchName()));
                continue;
            }
            matched.Add((entry.Key, tensor));
        }
        var unexpected = byKey.Keys.Where(k => !expected.Contains(k)).ToList();
        return new CheckpointMatch(layout.Name, matched, missing, unexpected, mismatched);
    }
}
