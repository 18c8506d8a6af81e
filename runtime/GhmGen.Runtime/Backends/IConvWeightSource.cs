namespace GhmGen.Backends;

/// <summary>
/// Where a backend reads a trained convolution's current weights whenever it needs them
/// (<see cref="ITrainingBackend.PrepareConv(ConvSpec, IConvWeightSource, bool)"/>), so that it keeps no
/// packed copy of its own between uses: in training the host weights (with the batch norm folded in)
/// are the one copy. Called by the backend while it runs an op, on the calling thread, under the
/// backend's own lock: an implementation must not call back into the backend, and the weights must not
/// change while an op of the backend runs.
/// </summary>
public interface IConvWeightSource
{
    /// <summary>
    /// Writes the convolution's current weights [out, in/groups, k, k] into <paramref name="weight"/> and its
    /// bias [out] into <paramref name="bias"/> (empty when it was prepared without one), overwriting both.
    /// </summary>
    void ReadWeights(Span<float> weight, Span<float> bias);
}
