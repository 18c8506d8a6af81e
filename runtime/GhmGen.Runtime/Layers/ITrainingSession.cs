namespace GhmGen.Layers;

/// <summary>
/// A network prepared for training on one backend for one input size (generated per network as
/// <c>TrainingSession</c>): <see cref="IForwardSession.Forward"/> keeps what the reverse pass needs,
/// the caller writes <see cref="OutputGradients"/>, <see cref="Backward"/> fills <see cref="Gradients"/>,
/// and after an optimizer changed the host weights <see cref="UpdateWeights"/> hands them to the backend.
/// </summary>
public interface ITrainingSession : IForwardSession
{
    /// <summary>d loss / d output, one tensor per output (same order and shapes as <see cref="IForwardSession.Outputs"/>); write them before <see cref="Backward"/>, which uses them as scratch.</summary>
    IReadOnlyList<(string Name, Backends.TensorView Tensor)> OutputGradients { get; }

    /// <summary>The gradient of every trained parameter, in state-dict order, valid after <see cref="Backward"/>.</summary>
    IReadOnlyList<ParameterGradient> Gradients { get; }

    /// <summary>Runs the reverse pass of the last <see cref="IForwardSession.Forward"/> from <see cref="OutputGradients"/> and writes <see cref="Gradients"/>.</summary>
    void Backward();

    /// <summary>Folds the trained parameters' current host values again and hands them to the backend.</summary>
    void UpdateWeights();
}
