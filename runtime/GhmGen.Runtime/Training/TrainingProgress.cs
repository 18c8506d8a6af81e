namespace GhmGen.Training;

/// <summary>
/// Where a training run stands when a checkpoint is written, in mmcv's terms plus what an exact
/// mid-epoch resume needs.
/// </summary>
/// <param name="Epoch">
/// Completed epochs: mmcv's <c>meta['epoch']</c> (<c>runner.epoch + 1</c> at an epoch end), i.e. the
/// 0-based <c>runner.epoch</c> a resumed run continues in.
/// </param>
/// <param name="Iteration">Completed global iterations: mmcv's <c>meta['iter']</c> (<c>runner.iter</c>).</param>
/// <param name="IterationInEpoch">
/// Iterations already done in epoch <paramref name="Epoch"/> (0-based); 0 at an epoch boundary. mmcv
/// itself restarts the epoch's data on resume and would replay these batches; GhmGen skips them.
/// </param>
/// <param name="DataSeed">The seed of the data order and flips, when the run has one.</param>
public sealed record TrainingProgress(int Epoch, long Iteration, int IterationInEpoch = 0, long? DataSeed = null)
{
    /// <summary>Throws when a field is negative or the position in the epoch exceeds the iteration count.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(Iteration);
        ArgumentOutOfRangeException.ThrowIfNegative(IterationInEpoch);
        if (IterationInEpoch > Iteration) throw new ArgumentException($"iteration in epoch {IterationInEpoch} exceeds the {Iteration} iterations done");
    }
}
