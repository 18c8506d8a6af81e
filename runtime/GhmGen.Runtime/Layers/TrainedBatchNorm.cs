using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// One batch norm trained with the batch's statistics (a network with <c>NormEval = false</c>; PyTorch's
/// <c>BatchNorm2d</c> in train() mode) in a training session: not folded into its convolution. It holds
/// the affine weight and bias and their gradients on the backend, the host gradients, and updates the
/// host running statistics after each forward application (momentum <see cref="Momentum"/>, the
/// unbiased variance, <c>num_batches_tracked</c> + 1). Inference keeps folding the running statistics.
/// Generated training sessions make one per such batch norm.
/// </summary>
public sealed class TrainedBatchNorm : IDisposable
{
    private readonly DeviceBuffer _buffer;
    private bool _disposed;

    /// <summary>Allocates the weight, bias and their gradients on <paramref name="backend"/> and uploads the current weight and bias.</summary>
    public TrainedBatchNorm(BatchNorm2d batchNorm, ITrainingBackend backend)
    {
        ArgumentNullException.ThrowIfNull(batchNorm);
        ArgumentNullException.ThrowIfNull(backend);
        BatchNorm = batchNorm;
        int c = batchNorm.Channels;
        _buffer = backend.Allocate(4L * c);
        try
        {
            WeightView = new TensorView(_buffer, 0, 1, c, 1, 1);
            BiasView = new TensorView(_buffer, c, 1, c, 1, 1);
            WeightGradientView = new TensorView(_buffer, 2L * c, 1, c, 1, 1);
            BiasGradientView = new TensorView(_buffer, 3L * c, 1, c, 1, 1);
            Weight = new ParameterGradient(batchNorm.Weight);
            Bias = new ParameterGradient(batchNorm.Bias);
            UpdateWeights(backend);
        }
        catch
        {
            _buffer.Dispose();
            throw;
        }
    }

    /// <summary>PyTorch's default momentum of the running statistics: running = (1 - 0.1) * running + 0.1 * batch.</summary>
    public const double Momentum = 0.1;

    /// <summary>The batch norm.</summary>
    public BatchNorm2d BatchNorm { get; }

    /// <summary>The weight (gamma) on the backend, [C].</summary>
    public TensorView WeightView { get; }

    /// <summary>The bias (beta) on the backend, [C].</summary>
    public TensorView BiasView { get; }

    /// <summary>d loss / d weight on the backend, [C].</summary>
    public TensorView WeightGradientView { get; }

    /// <summary>d loss / d bias on the backend, [C].</summary>
    public TensorView BiasGradientView { get; }

    /// <summary>The weight's host gradient (written by <see cref="CollectGradients"/>).</summary>
    public ParameterGradient Weight { get; }

    /// <summary>The bias's host gradient (written by <see cref="CollectGradients"/>).</summary>
    public ParameterGradient Bias { get; }

    /// <summary>Uploads the host weight and bias (after an optimizer step). Allocates nothing.</summary>
    public void UpdateWeights(ITrainingBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ObjectDisposedException.ThrowIf(_disposed, this);
        backend.Upload(BatchNorm.Weight.Data, WeightView);
        backend.Upload(BatchNorm.Bias.Data, BiasView);
    }

    /// <summary>Downloads the weight and bias gradients into <see cref="Weight"/> and <see cref="Bias"/>. Allocates nothing.</summary>
    public void CollectGradients(IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ObjectDisposedException.ThrowIf(_disposed, this);
        backend.Download(WeightGradientView, Weight.Data);
        backend.Download(BiasGradientView, Bias.Data);
    }

    /// <summary>
    /// Updates the host running statistics from one forward application's batch <paramref name="mean"/> and
    /// biased <paramref name="variance"/> over <paramref name="count"/> = N*H*W values per channel, as PyTorch:
    /// running_mean = 0.9 running_mean + 0.1 mean, running_var = 0.9 running_var + 0.1 variance * count / (count - 1)
    /// (in double, rounded once), num_batches_tracked + 1. <paramref name="scratch"/> holds at least 2C floats.
    /// Allocates nothing.
    /// </summary>
    public void UpdateRunningStatistics(IBackend backend, TensorView mean, TensorView variance, long count, float[] scratch)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(scratch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        int c = BatchNorm.Channels;
        if (scratch.Length < 2 * c)
            throw new ArgumentException($"scratch has {scratch.Length} floats; '{BatchNorm.Key}' needs {2 * c}", nameof(scratch));
        if (count < 2)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"'{BatchNorm.Key}': batch statistics need more than 1 value per channel");
        Span<float> m = scratch.AsSpan(0, c), v = scratch.AsSpan(c, c);
        backend.Download(mean, m);
        backend.Download(variance, v);
        float[] runningMean = BatchNorm.RunningMean.Data, runningVar = BatchNorm.RunningVar.Data;
        double unbias = (double)count / (count - 1);
        for (int i = 0; i < c; i++)
        {
            runningMean[i] = (float)(Momentum * m[i] + (1 - Momentum) * runningMean[i]);
            runningVar[i] = (float)(Momentum * (v[i] * unbias) + (1 - Momentum) * runningVar[i]);
        }
        BatchNorm.NumBatchesTracked.Int64Data[0]++;
    }

    /// <summary>Releases the backend buffer.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _buffer.Dispose();
    }
}
