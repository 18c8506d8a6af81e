namespace GhmGen.Layers;

/// <summary>
/// What every generated network exposes: its name, state dict and sizes. A network's state lives
/// in host arrays that loading, initialisation and training change in place: reads from several
/// threads are fine, but nothing may read while something writes. What is prepared from it on a
/// backend is a copy made then (for training, <c>UpdateWeights</c> refreshes it).
/// </summary>
public interface INetwork
{
    /// <summary>The network's name (for detectors, the model name of docs/MODEL.md §1).</summary>
    string Name { get; }

    /// <summary>Every state tensor in mmdetection's state-dict order, buffers included.</summary>
    IReadOnlyList<StateTensor> State { get; }

    /// <summary>Number of learnable parameters (buffers excluded).</summary>
    long ParameterCount { get; }
}
