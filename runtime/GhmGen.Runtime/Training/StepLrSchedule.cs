// mmcv 1.x StepLrUpdaterHook(by_epoch=True) with linear warm-up (mmcv/runner/hooks/lr_updater.py),
// in Python float arithmetic (double), as docs/TRAINING.md §4 describes:
//
//   before_train_epoch: regular_lr = base_lr * gamma ** (number of steps s with epoch >= s)
//   before_train_iter:  cur_iter = runner.iter (global, from 0)
//       cur_iter <  warmup_iters: lr = regular_lr * (1 - (1 - cur_iter / warmup_iters) * (1 - warmup_ratio))
//       cur_iter >= warmup_iters: lr = regular_lr
//
// The warm-up scales the current epoch's regular lr. torch then steps with (float)(-lr)
// (SgdOptimizer.Float32StepScale). Reference test: StepLrScheduleTests.
namespace GhmGen.Training;

/// <summary>mmcv's step learning-rate schedule with linear warm-up (epoch-based steps, iteration-based warm-up).</summary>
public sealed class StepLrSchedule
{
    /// <summary>mmdetection's 1x schedule steps: lr x0.1 after epochs 8 and 11 (docs/TRAINING.md).</summary>
    public static IReadOnlyList<int> Schedule1xSteps { get; } = [8, 11];

    /// <summary>mmdetection's <c>warmup_iters</c> (docs/TRAINING.md).</summary>
    public const int MmdetectionWarmupIterations = 500;

    /// <summary>mmdetection's <c>warmup_ratio</c> (docs/TRAINING.md).</summary>
    public const double MmdetectionWarmupRatio = 0.001;

    /// <summary>mmcv's default step factor.</summary>
    public const double MmdetectionGamma = 0.1;

    private readonly int[] _steps;

    /// <summary>Creates a schedule.</summary>
    /// <param name="baseLearningRate">mmcv's <c>base_lr</c> (the param group's <c>initial_lr</c>).</param>
    /// <param name="stepEpochs">Epochs (0-based) from which one more factor <paramref name="gamma"/> applies, ascending.</param>
    /// <param name="gamma">Factor per step.</param>
    /// <param name="warmupIterations">Linear warm-up length in global iterations; 0 disables it.</param>
    /// <param name="warmupRatio">lr ratio at iteration 0.</param>
    public StepLrSchedule(double baseLearningRate, IEnumerable<int> stepEpochs, double gamma = MmdetectionGamma,
        int warmupIterations = MmdetectionWarmupIterations, double warmupRatio = MmdetectionWarmupRatio)
    {
        ArgumentNullException.ThrowIfNull(stepEpochs);
        if (!double.IsFinite(baseLearningRate) || baseLearningRate < 0) throw new ArgumentOutOfRangeException(nameof(baseLearningRate), baseLearningRate, "must be finite and >= 0");
        if (!double.IsFinite(gamma) || gamma < 0) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "must be finite and >= 0");
        ArgumentOutOfRangeException.ThrowIfNegative(warmupIterations);
        if (!double.IsFinite(warmupRatio) || warmupRatio < 0 || warmupRatio > 1) throw new ArgumentOutOfRangeException(nameof(warmupRatio), warmupRatio, "must be in [0, 1]");
        _steps = [.. stepEpochs];
        for (int i = 0; i < _steps.Length; i++)
        {
            if (_steps[i] < 0 || (i > 0 && _steps[i] <= _steps[i - 1])) throw new ArgumentException("step epochs must be >= 0 and ascending", nameof(stepEpochs));
        }
        BaseLearningRate = baseLearningRate;
        Gamma = gamma;
        WarmupIterations = warmupIterations;
        WarmupRatio = warmupRatio;
    }

    /// <summary>The GHM 1x recipe: steps [8, 11], gamma 0.1, linear warm-up over 500 iterations from ratio 0.001.</summary>
    public static StepLrSchedule Ghm1x(double baseLearningRate) => new(baseLearningRate, Schedule1xSteps);

    /// <summary>mmcv's <c>base_lr</c>.</summary>
    public double BaseLearningRate { get; }

    /// <summary>Epochs (0-based) at which the lr is multiplied by <see cref="Gamma"/>.</summary>
    public IReadOnlyList<int> StepEpochs => _steps;

    /// <summary>Factor per step.</summary>
    public double Gamma { get; }

    /// <summary>Warm-up length in global iterations.</summary>
    public int WarmupIterations { get; }

    /// <summary>lr ratio at iteration 0 of the warm-up.</summary>
    public double WarmupRatio { get; }

    /// <summary>
    /// <c>StepLrUpdaterHook.get_lr</c>: <c>base_lr * gamma ** exp</c>, exp = the number of steps
    /// <c>s</c> with <paramref name="epoch"/> &gt;= s.
    /// </summary>
    /// <param name="epoch">mmcv's <c>runner.epoch</c>: 0-based (the log shows it + 1).</param>
    public double RegularLearningRate(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        int exponent = _steps.Length;
        for (int i = 0; i < _steps.Length; i++)
        {
            if (epoch < _steps[i])
            {
                exponent = i;
                break;
            }
        }
        return BaseLearningRate * Math.Pow(Gamma, exponent);
    }

    /// <summary>The lr mmcv sets before iteration <paramref name="iteration"/> of epoch <paramref name="epoch"/>.</summary>
    /// <param name="epoch">0-based epoch (<c>runner.epoch</c>).</param>
    /// <param name="iteration">Global iteration from 0 (<c>runner.iter</c>), not reset per epoch.</param>
    public double LearningRate(int epoch, long iteration)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(iteration);
        double regular = RegularLearningRate(epoch);
        if (iteration >= WarmupIterations) return regular;
        double k = (1 - (double)iteration / WarmupIterations) * (1 - WarmupRatio);
        return regular * (1 - k);
    }
}
