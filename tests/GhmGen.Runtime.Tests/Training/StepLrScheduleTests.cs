using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>
/// <see cref="StepLrSchedule"/> against mmcv's StepLrUpdaterHook with linear warm-up; expected
/// doubles are Python's (repr of the same expressions run by /usr/bin/python3).
/// </summary>
public sealed class StepLrScheduleTests
{
    [Fact]
    public void Warm_up_starts_at_the_ratio_and_reaches_the_base_lr_at_warmup_iters()
    {
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.01);
        Assert.Equal(1.000000000000001e-05, schedule.LearningRate(0, 0)); // docs/TRAINING.md: 1.0e-5
        Assert.Equal(2.9980000000000563e-05, schedule.LearningRate(0, 1));
        Assert.Equal(0.005005, schedule.LearningRate(0, 250));
        Assert.Equal(0.00998002, schedule.LearningRate(0, 499));
        Assert.Equal(0.01, schedule.LearningRate(0, 500));
        Assert.Equal(0.01, schedule.LearningRate(0, 501));
    }

    [Fact]
    public void Iteration_one_of_a_two_iteration_warm_up_is_half_way()
    {
        var schedule = new StepLrSchedule(0.01, [8, 11], warmupIterations: 2);
        Assert.Equal(0.005005, schedule.LearningRate(0, 1)); // docs/TRAINING.md
        Assert.Equal(0.0050050001591444016, (float)schedule.LearningRate(0, 1)); // what torch multiplies by
    }

    [Fact]
    public void Epochs_1_to_8_use_lr_9_to_11_a_tenth_and_12_a_hundredth()
    {
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.01);
        for (int epoch = 0; epoch < 8; epoch++) Assert.Equal(0.01, schedule.RegularLearningRate(epoch));
        for (int epoch = 8; epoch < 11; epoch++) Assert.Equal(0.001, schedule.RegularLearningRate(epoch));
        Assert.Equal(0.00010000000000000002, schedule.RegularLearningRate(11)); // 0.01 * 0.1 ** 2
        Assert.Equal(0.00010000000000000002, schedule.LearningRate(11, 80_000));
    }

    [Fact]
    public void Warm_up_scales_the_current_epochs_regular_lr()
    {
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.01);
        Assert.Equal(0.0006004000000000001, schedule.LearningRate(8, 300));
        Assert.Equal(5.000000000000005e-06, StepLrSchedule.Ghm1x(0.005).LearningRate(0, 0));
        Assert.Equal(0.0012337700000000001, StepLrSchedule.Ghm1x(0.005).LearningRate(0, 123));
    }

    [Fact]
    public void Bad_settings_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new StepLrSchedule(0.01, [11, 8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StepLrSchedule(-1, [8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => StepLrSchedule.Ghm1x(0.01).LearningRate(-1, 0));
        Assert.Equal(0.01, new StepLrSchedule(0.01, [], warmupIterations: 0).LearningRate(0, 0));
    }
}
