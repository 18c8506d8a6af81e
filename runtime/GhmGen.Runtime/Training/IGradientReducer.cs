// What the Trainer needs from a synchronous data-parallel group (docs/DISTRIBUTED.md): the ranks,
// a broadcast from rank 0, the mean of the gradients, and sums of a few scalars. The trainer makes
// the same calls in the same order on every rank (they are collectives); a rank that calls
// nothing while the others wait hangs them, so an implementation bounds every wait.
// SingleProcessReducer is the group of one process (every call a no-op); GhmGen.Distributed's
// MpiCommunicator is the MPI one, in its own assembly so that nothing here loads MPI.
using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>
/// The ranks of a synchronous data-parallel training run, as <see cref="Trainer"/> uses them.
/// Threading: called from the training thread only; every rank makes the same calls, with arrays
/// of the same lengths, in the same order.
/// </summary>
public interface IGradientReducer
{
    /// <summary>This process's rank, 0 to <see cref="WorldSize"/> - 1.</summary>
    int Rank { get; }

    /// <summary>Processes in the group (1: training in one process).</summary>
    int WorldSize { get; }

    /// <summary>Overwrites <paramref name="data"/> with rank 0's bytes (the same length on every rank).</summary>
    void Broadcast(Span<byte> data);

    /// <summary>
    /// Replaces every gradient array, element by element, with the mean over the ranks (the sum
    /// divided by <see cref="WorldSize"/>), bitwise the same result on every rank.
    /// </summary>
    void AverageGradients(IReadOnlyList<float[]> gradients);

    /// <summary>Replaces each value with its sum over the ranks.</summary>
    void Sum(Span<double> values);
}

/// <summary>
/// An <see cref="IGradientReducer"/> that can average the gradients while the backward pass still
/// writes them (PyTorch DDP's overlap): <see cref="BeginAverageGradients"/> before
/// <see cref="ITrainingSession.Backward(IGradientReadySink?)"/>, whose calls tell it which arrays are
/// final, then <see cref="EndAverageGradients"/>. The result is bitwise that of
/// <see cref="IGradientReducer.AverageGradients"/>. Threading as <see cref="IGradientReducer"/>.
/// </summary>
public interface IOverlappingGradientReducer : IGradientReducer
{
    /// <summary>
    /// Starts averaging <paramref name="gradients"/>, whose values are not written yet: the returned
    /// sink is told (with indices into <paramref name="gradients"/>) when each array is final, exactly
    /// once per array, and may start reducing it then; the arrays must not change after that.
    /// </summary>
    /// <exception cref="InvalidOperationException">The previous averaging was not ended.</exception>
    IGradientReadySink BeginAverageGradients(IReadOnlyList<float[]> gradients);

    /// <summary>
    /// Waits until every array of the last <see cref="BeginAverageGradients"/> is reduced and
    /// replaces each with the mean over the ranks.
    /// </summary>
    /// <exception cref="InvalidOperationException">No averaging was begun, or some array was never reported final.</exception>
    void EndAverageGradients();
}

/// <summary>The group of one process: rank 0 of 1, every call a no-op. Thread-safe (stateless).</summary>
public sealed class SingleProcessReducer : IGradientReducer
{
    /// <summary>The one instance.</summary>
    public static SingleProcessReducer Instance { get; } = new();

    private SingleProcessReducer()
    {
    }

    /// <inheritdoc />
    public int Rank => 0;

    /// <inheritdoc />
    public int WorldSize => 1;

    /// <inheritdoc />
    public void Broadcast(Span<byte> data)
    {
    }

    /// <inheritdoc />
    public void AverageGradients(IReadOnlyList<float[]> gradients) => ArgumentNullException.ThrowIfNull(gradients);

    /// <inheritdoc />
    public void Sum(Span<double> values)
    {
    }
}
