using GhmGen.Generators.Models;
using static GhmGen.Generators.Emit.EmitText;

namespace GhmGen.Generators.Emit;

/// <summary>
/// Writes <c>{Type}.Descriptor.g.cs</c>: the network's <c>IGeneratedNetwork&lt;T&gt;</c>
/// implementation, explicit members that forward to the generated ones, so that code can take
/// any declared network as a type argument (e.g. <c>ModelInfo.For&lt;T&gt;()</c>).
/// </summary>
internal static class DescriptorEmitter
{
    public static string Emit(PlannedNetwork network)
    {
        NetworkModel m = network.Model;
        string t = m.TypeName;
        string i = $"global::GhmGen.Layers.IGeneratedNetwork<{t}>";
        var w = new CodeWriter();
        Header(w, m, "descriptor");
        w.Open($"partial class {t} : {i}");
        w.Line($"static string {i}.ModelName => ModelName;");
        w.Line($"static long {i}.TotalParameters => ParameterCounts.Total;");
        w.Line($"static global::System.Collections.Generic.IReadOnlyList<(string Part, long Parameters)> {i}.Parts => Parts;");
        w.Line($"static int {i}.StateTensorCount => StateTensorCount;");
        w.Line($"static int {i}.MinInputSize => MinInputSize;");
        w.Line($"static long {i}.MultiplyAccumulates(int height, int width) => MultiplyAccumulates(height, width);");
        w.Line($"static global::GhmGen.Layers.LayerShape[] {i}.OutputShapes(int height, int width) => OutputShapes(height, width);");
        w.Line($"static global::GhmGen.Layers.LayerShape[] {i}.OutputsFor(int height, int width) => OutputsFor(height, width);");
        w.Line($"static global::System.Collections.Generic.IReadOnlyList<string> {i}.TrainedKeys => TrainedKeys;");
        w.Line($"static long {i}.TrainingActivationBytes(int batch, int height, int width) => TrainingActivationBytes(batch, height, width);");
        w.Line($"global::GhmGen.Layers.IPreparedNetwork {i}.Prepare(global::GhmGen.Backends.IBackend backend) => Prepare(backend);");
        w.Line($"global::GhmGen.Layers.ITrainingSession {i}.CreateTrainingSession(global::GhmGen.Backends.ITrainingBackend backend, int batch, int height, int width) => CreateTrainingSession(backend, batch, height, width);");
        w.Line($"global::GhmGen.Layers.ITrainingWeights {i}.PrepareTraining(global::GhmGen.Backends.ITrainingBackend backend) => PrepareTraining(backend);");
        w.Close();
        return w.ToString();
    }
}
