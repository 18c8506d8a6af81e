namespace GhmGen.Layers;

/// <summary>
/// A network prepared for training on one backend for one input size (generated per network as
/// <c>TrainingSession</c>): <see cref="IForwardSession.Forward"/> keeps what the reverse pass needs,
/// the caller writes <see cref="OutputGradients"/>, <see cref="Backward()"/> fills <see cref="Gradients"/>,
/// and after an optimizer changed the host weights <see cref="UpdateWeights"/> hands them to the backend.
/// The session holds only views of activation and activation-gradient buffers; those buffers, its
/// prepared weights, weight gradients and <see cref="Gradients"/> belong to <see cref="Weights"/>,
/// which it may share with sessions of other sizes.
/// </summary>
public interface ITrainingSession : IForwardSession
{
    /// <summary>d loss / d output, one tensor per output (same order and shapes as <see cref="IForwardSession.Outputs"/>); write them before <see cref="Backward()"/>, which uses them as scratch. Read these views (and <see cref="IForwardSession.Outputs"/>) again after each <see cref="IForwardSession.Forward"/>: a session moves to longer buffers when a session of a larger shape grew the ones they share.</summary>
    IReadOnlyList<(string Name, Backends.TensorView Tensor)> OutputGradients { get; }

    /// <summary>The gradient of every trained parameter, in state-dict order, valid after <see cref="Backward()"/>: <see cref="Weights"/>' <see cref="ITrainingWeights.Gradients"/>.</summary>
    IReadOnlyList<ParameterGradient> Gradients { get; }

    /// <summary>The prepared weights this session runs with (its own, or shared with other sessions).</summary>
    ITrainingWeights Weights { get; }

    /// <summary>Runs the reverse pass of the last <see cref="IForwardSession.Forward"/> from <see cref="OutputGradients"/> and writes <see cref="Gradients"/>.</summary>
    void Backward();

    /// <summary>
    /// <see cref="Backward()"/>, telling <paramref name="ready"/> as soon as each trained
    /// parameter's gradient is final (once per parameter, in completion order), so that its
    /// reduction can start while the pass goes on. Null: exactly <see cref="Backward()"/>. The
    /// gradients are bitwise those of <see cref="Backward()"/> either way.
    /// </summary>
    void Backward(IGradientReadySink? ready);

    /// <summary>
    /// Folds the trained parameters' current host values again and hands them to the backend:
    /// <see cref="Weights"/>' <see cref="ITrainingWeights.UpdateWeights"/>, so every session sharing
    /// those weights sees the change.
    /// </summary>
    void UpdateWeights();
}

/// <summary>
/// A network's convolutions prepared for training on one backend (generated per network as
/// <c>TrainingWeights</c>): every convolution, trained or frozen, prepared once with its batch norm
/// folded (norm_eval), the device buffer of the folded weight gradients, and the host
/// <see cref="Gradients"/>. Sessions for any batch and input size share them
/// (<see cref="CreateSession"/>) and hold only views of one set of activation buffers that the
/// weights own, grown to the largest shape asked for (<see cref="ActivationBytes"/>), so a new padded
/// size costs neither weight preparation nor a second set of activations, and one
/// <see cref="UpdateWeights"/> per optimizer step serves every session.
/// <para>
/// Threading: not thread-safe. The sessions of one weights object share its weight-gradient
/// buffers (device and host) and its folding scratch, so at most one of them runs
/// <c>Forward</c>, <c>Backward</c> or <see cref="UpdateWeights"/> at a time; <see cref="Gradients"/>
/// are those of the last <c>Backward</c> of any of them. A <c>Backward</c> needs a <c>Forward</c> of
/// the same session since the last <see cref="UpdateWeights"/>, with no other session's <c>Forward</c>
/// in between (it would overwrite the shared activations; the <c>Backward</c> throws). Dispose the weights after the
/// sessions made by <see cref="CreateSession"/>.
/// </para>
/// </summary>
public interface ITrainingWeights : IDisposable
{
    /// <summary>The backend the weights live on.</summary>
    Backends.ITrainingBackend Backend { get; }

    /// <summary>The gradient of every trained parameter, in state-dict order: written by the <c>Backward</c> of any of the sessions, valid after it.</summary>
    IReadOnlyList<ParameterGradient> Gradients { get; }

    /// <summary>Bytes of the activation buffers that its sessions share now: those of the largest shape asked for so far.</summary>
    long ActivationBytes { get; }

    /// <summary>Plans activation and activation-gradient memory for <paramref name="batch"/> x C x <paramref name="height"/> x <paramref name="width"/> inputs, sharing these weights.</summary>
    ITrainingSession CreateSession(int batch, int height, int width);

    /// <summary>Folds the trained parameters' current host values again and hands them to the backend (once per optimizer step, for every session).</summary>
    void UpdateWeights();
}
