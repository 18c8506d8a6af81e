namespace GhmGen.Layers;

/// <summary>
/// The gradient of one trained parameter, next to the parameter: a host array of the parameter's
/// shape (same key, same row-major layout) that a training session's <c>Backward</c> overwrites.
/// </summary>
public sealed class ParameterGradient
{
    /// <summary>Allocates a zeroed gradient for <paramref name="parameter"/>.</summary>
    public ParameterGradient(StateTensor parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        if (parameter.Kind != StateKind.Parameter || parameter.ElementType != StateElementType.Float32)
            throw new ArgumentException($"'{parameter.Key}' is not a float32 parameter; only parameters have gradients", nameof(parameter));
        Parameter = parameter;
        Data = new float[parameter.ElementCount];
    }

    /// <summary>The parameter (its values are <see cref="StateTensor.Data"/>).</summary>
    public StateTensor Parameter { get; }

    /// <summary>The parameter's checkpoint key, e.g. <c>backbone.layer2.0.conv1.weight</c>.</summary>
    public string Key => Parameter.Key;

    /// <summary>The parameter's shape.</summary>
    public IReadOnlyList<int> Shape => Parameter.Shape;

    /// <summary>d loss / d parameter, same layout as <see cref="StateTensor.Data"/>.</summary>
    public float[] Data { get; }

    /// <inheritdoc/>
    public override string ToString() => $"d {Parameter}";
}
