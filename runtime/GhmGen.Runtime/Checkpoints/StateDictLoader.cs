using GhmGen.Layers;

namespace GhmGen.Checkpoints;

/// <summary>A checkpoint tensor whose shape or element type does not fit the network's tensor of the same key.</summary>
public sealed record MismatchedTensor(string Key, IReadOnlyList<int> ExpectedShape, string ExpectedDType, IReadOnlyList<int> ActualShape, string ActualDType)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{Key}: checkpoint has {ActualDType} [{string.Join(", ", ActualShape)}], network expects {ExpectedDType} [{string.Join(", ", ExpectedShape)}]";
}

/// <summary>What a state-dict load did: keys loaded, and those missing, unexpected or mismatched.</summary>
public sealed record LoadReport(
    IReadOnlyList<string> Loaded,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<MismatchedTensor> Mismatched)
{
    /// <summary>Whether every network key was loaded and the checkpoint had nothing else.</summary>
    public bool IsComplete => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;

    /// <summary>The counts: "N loaded, N missing, N unexpected, N mismatched".</summary>
    public string Counts => $"{Loaded.Count} loaded, {Missing.Count} missing, {Unexpected.Count} unexpected, {Mismatched.Count} mismatched";

    /// <summary>A multi-line description listing every missing, unexpected and mismatched key.</summary>
    public string Describe() => Describe(int.MaxValue);

    /// <summary>
    /// The counts, then at most <paramref name="perKind"/> missing, unexpected and mismatched keys
    /// each, with "... and N more" for the rest (a checkpoint of another model differs in hundreds).
    /// </summary>
    public string Describe(int perKind)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(perKind);
        var lines = new List<string> { Counts };
        AddFirst(lines, "missing in checkpoint", "missing", Missing, perKind);
        AddFirst(lines, "unexpected in checkpoint", "unexpected", Unexpected, perKind);
        AddFirst(lines, "mismatched", "mismatched", Mismatched.Select(m => m.ToString()).ToList(), perKind);
        return string.Join(Environment.NewLine, lines);
    }

    private static void AddFirst(List<string> lines, string label, string kind, IReadOnlyList<string> items, int limit)
    {
        lines.AddRange(items.Take(limit).Select(item => $"  {label}: {item}"));
        if (items.Count > limit) lines.Add($"  ... and {items.Count - limit} more {kind}");
    }
}

/// <summary>
/// A strict load found keys missing, unexpected or of the wrong shape; nothing was loaded. The
/// message names the first <see cref="MessageKeysPerKind"/> keys of each kind; <see cref="Report"/>
/// has them all.
/// </summary>
public sealed class CheckpointMismatchException(string fileName, string networkName, LoadReport report)
    : Exception($"checkpoint '{fileName}' does not fit network '{networkName}': {report.Describe(MessageKeysPerKind)}")
{
    /// <summary>Keys of each kind (missing, unexpected, mismatched) named in the message.</summary>
    public const int MessageKeysPerKind = 5;

    /// <summary>The checkpoint file (or display name).</summary>
    public string FileName { get; } = fileName;

    /// <summary>The network it was loaded into.</summary>
    public string NetworkName { get; } = networkName;

    /// <summary>The full comparison.</summary>
    public LoadReport Report { get; } = report;
}

/// <summary>
/// Copies checkpoint tensors into a network's state by key, converting every dtype to float32
/// (and integer tensors to int64 for int64 state such as <c>num_batches_tracked</c>).
/// A leading <c>module.</c> (from DataParallel) is stripped when every checkpoint key has it.
/// </summary>
public static class StateDictLoader
{
    /// <summary>
    /// Loads <paramref name="checkpoint"/> into <paramref name="network"/>. Strict: any missing,
    /// unexpected or mismatched key throws one <see cref="CheckpointMismatchException"/> that
    /// reports them all, before anything is changed. Not strict: loads what matches and reports the rest.
    /// </summary>
    public static LoadReport Load(INetwork network, TorchCheckpoint checkpoint, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(checkpoint);
        return Load(network.State, checkpoint.Tensors, checkpoint.FileName, network.Name, strict);
    }

    /// <summary>Loads tensors into state tensors by key; see <see cref="Load(INetwork, TorchCheckpoint, bool)"/>.</summary>
    public static LoadReport Load(IReadOnlyList<StateTensor> state, IReadOnlyList<CheckpointTensor> tensors, string fileName, string networkName, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(tensors);
        CheckpointMatch match = CheckpointMatcher.Compare(tensors, StateLayout.From(networkName, state));
        var report = new LoadReport(match.Matched.Select(p => p.Key).ToArray(), match.Missing, match.Unexpected, match.Mismatched);
        if (strict && !report.IsComplete) throw new CheckpointMismatchException(fileName, networkName, report);

        Dictionary<string, StateTensor> byKey = state.ToDictionary(s => s.Key, StringComparer.Ordinal);
        foreach ((string key, CheckpointTensor tensor) in match.Matched)
        {
            StateTensor target = byKey[key];
            if (target.ElementType == StateElementType.Int64) tensor.ReadInt64(target.Int64Data);
            else tensor.ReadFloat32(target.Data);
        }
        return report;
    }
}
