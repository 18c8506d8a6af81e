using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// What the generator emits for every <c>[Network]</c> class, as one interface (implemented
/// explicitly in <c>{Type}.Descriptor.g.cs</c>), so that code can take any generated network as a
/// type argument, e.g. <c>ModelInfo.For&lt;MyNetwork&gt;()</c>, without a downcast.
/// </summary>
/// <typeparam name="TSelf">The generated network class itself.</typeparam>
public interface IGeneratedNetwork<TSelf> : INetwork where TSelf : class, IGeneratedNetwork<TSelf>, new()
{
    /// <summary>The name given in <c>[Network]</c>.</summary>
    static abstract string ModelName { get; }

    /// <summary>Learnable parameters.</summary>
    static abstract long TotalParameters { get; }

    /// <summary>Learnable parameters per part, in declaration order.</summary>
    static abstract IReadOnlyList<(string Part, long Parameters)> Parts { get; }

    /// <summary>Tensors in the state dict, buffers included.</summary>
    static abstract int StateTensorCount { get; }

    /// <summary>The smallest input side the network accepts.</summary>
    static abstract int MinInputSize { get; }

    /// <summary>Convolution multiply-accumulates of one forward pass for an input height and width.</summary>
    static abstract long MultiplyAccumulates(int height, int width);

    /// <summary>Every value's shape for an input height and width, in execution order.</summary>
    static abstract LayerShape[] OutputShapes(int height, int width);

    /// <summary>The named network outputs' shapes for an input height and width, in declaration order.</summary>
    static abstract LayerShape[] OutputsFor(int height, int width);

    /// <summary>Keys of the parameters that training changes.</summary>
    static abstract IReadOnlyList<string> TrainedKeys { get; }

    /// <summary>Activation and activation-gradient bytes of a training session for a batch, height and width.</summary>
    static abstract long TrainingActivationBytes(int batch, int height, int width);

    /// <summary>Prepares the weights on <paramref name="backend"/> (once; sessions of any size share them).</summary>
    IPreparedNetwork Prepare(IBackend backend);

    /// <summary>Prepares a copy of the weights for training on <paramref name="backend"/> for a batch, height and width.</summary>
    ITrainingSession CreateTrainingSession(ITrainingBackend backend, int batch, int height, int width);

    /// <summary>Prepares the weights for training on <paramref name="backend"/> once; training sessions of any batch and size share them.</summary>
    ITrainingWeights PrepareTraining(ITrainingBackend backend);
}
