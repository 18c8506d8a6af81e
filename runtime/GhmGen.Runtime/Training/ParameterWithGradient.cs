using GhmGen.Layers;

namespace GhmGen.Training;

/// <summary>
/// A parameter and its gradient for one optimiser step, as torch pairs <c>p</c> with <c>p.grad</c>.
/// A null <see cref="Gradient"/> is torch's <c>p.grad is None</c>: a frozen parameter, skipped by
/// clipping and by the optimiser.
/// </summary>
/// <param name="Parameter">The float32 parameter (its <see cref="StateTensor.Data"/> is updated in place).</param>
/// <param name="Gradient">d loss / d parameter, row-major, <see cref="StateTensor.ElementCount"/> values; or null.</param>
public readonly record struct ParameterWithGradient(StateTensor Parameter, float[]? Gradient);
