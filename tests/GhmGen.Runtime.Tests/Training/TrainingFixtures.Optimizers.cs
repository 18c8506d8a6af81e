using System.Text.Json;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

// The parameters and gradients of sgd_reference.json and adamw_reference.json, regenerated from
// their seeds as tools/reference/train_optim.py makes them.
internal static partial class TrainingFixtures
{
    /// <summary>A fixture parameter and its role: "trained", "frozen" (never a gradient) or "late" (first gradient at step 2).</summary>
    public sealed record OptimizerParameter(StateTensor Tensor, string Role);

    public static List<OptimizerParameter> OptimizerParameters(JsonElement fixture) =>
        [.. fixture.GetProperty("parameters").EnumerateArray().Select(p =>
        {
            var tensor = new StateTensor(p.GetProperty("key").GetString()!, [.. p.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32())], StateKind.Parameter);
            SeededWeights.FillUniform(tensor.Key, tensor.Data, -0.5, 0.5);
            return new OptimizerParameter(tensor, p.GetProperty("role").GetString()!);
        })];

    public static List<ParameterWithGradient> OptimizerGradients(List<OptimizerParameter> parameters, int step, double half) =>
        [.. parameters.Select(p => new ParameterWithGradient(p.Tensor,
            p.Role == "trained" || (p.Role == "late" && step >= 2) ? Uniform($"grad{step}/{p.Tensor.Key}", p.Tensor.ElementCount, -half, half) : null))];
}
