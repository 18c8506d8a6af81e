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

    /// <summary>A multi-line description listing every missing, unexpected and mismatched key.</summary>
    public string Describe()
    {
        var lines = new List<string> { $"{Loaded.Count} loaded, {Missing.Count} missing, {Unexpected.Count} unexpected, {Mismatched.Count} mismatched" };
        lines.AddRange(Missing.Select(k => "  missing in checkpoint: " + k));
        lines.AddRange(Unexpected.Select(k => "  unexpected in checkpoint: " + k));
        lines.AddRange(Mismatched.Select(m => "  mismatched: " + m));
        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>A strict load found keys missing, unexpected or of the wrong shape; nothing was loaded.</summary>
public sealed class CheckpointMismatchException(string fileName, string networkName, LoadReport report)
    : Exception($"checkpoint '{fileName}' does not fit network '{networkName}': {report.Describe()}")
{
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
    /// unexpected or mismatched key throws one <see cref="CheckpointMismatchException"/> naming
    /// them all, before anything is changed. Not strict: loads what matches and reports the rest.
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
