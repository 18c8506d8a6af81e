// The hook that lets a data-parallel reducer start reducing gradients while the backward pass is
// still running (docs/DISTRIBUTED.md, "Overlap with backward"): the generated Backward calls it
// once per trained parameter, right after that parameter's host gradient is written for the last
// time (a shared head convolution only after its last level), in the order the gradients become
// final, which is close to reverse parameter order. Without a sink the generated code skips
// every call (one null test per trained convolution).
namespace GhmGen.Layers;

/// <summary>
/// Told by <see cref="ITrainingSession.Backward(IGradientReadySink?)"/> when each trained
/// parameter's gradient is final. Called on the thread that runs <c>Backward</c>.
/// </summary>
public interface IGradientReadySink
{
    /// <summary>
    /// The gradient of trained parameter <paramref name="parameter"/> (an index into
    /// <see cref="ITrainingSession.Gradients"/>) is written and will not change again in this
    /// backward pass. Called exactly once per trained parameter and pass.
    /// </summary>
    void GradientReady(int parameter);
}
