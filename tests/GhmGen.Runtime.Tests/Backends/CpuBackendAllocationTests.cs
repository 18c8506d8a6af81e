// A steady-state CpuBackend call allocates no managed memory: the convolution packs into
// per-worker native scratch and runs on CpuWorkerPool (no Parallel.For closures). Measured with
// GC.GetAllocatedBytesForCurrentThread on a one-thread backend, where the calling thread runs every
// work item itself (the same Execute code the pool's workers run): exact, and immune to what the
// test host's own threads allocate meanwhile (a process-wide count was flaky under a loaded CI run).
// Covers the GEMM convolution (1x1 with residual + ReLU, grouped stride 2), Winograd, every
// pointwise op, and every backward op (ITrainingBackend: backward-data through the transposed
// Winograd, the in-place 1x1 GEMM and columns-then-scatter; weight gradients with and without
// bias; ReLU, max-pool and upsample backward; batch norm with batch statistics and its backward;
// Zero; UpdateConv) after its first call, which makes
// the backward-data weights and the backward scratch. (One thread: the weight gradient never
// splits its pixels there; the finishing pass that adds split partial sums allocates nothing
// either, but is not measured here.)
using GhmGen.Backends;
using GhmGen.Backends.Cpu;

namespace GhmGen.Runtime.Tests.Backends;

[CollectionDefinition(nameof(AllocationMeasurement), DisableParallelization = true)]
public sealed class AllocationMeasurement;

[Collection(nameof(AllocationMeasurement))]
public sealed class CpuBackendAllocationTests
{
    [Fact]
    public void SteadyStateOpsAllocateNothing()
    {
        using var cpu = new CpuBackend(1);
        var random = new Random(3);
        var spec = new ConvSpec(32, 48, 3, 1, 1, 1);
        using IPreparedConv conv = cpu.PrepareConv(spec, CpuBackendTests.RandomValues(random, (int)spec.WeightCount), CpuBackendTests.RandomValues(random, 48));
        var grouped = new ConvSpec(32, 32, 3, 2, 1, 8);
        using IPreparedConv groupedConv = cpu.PrepareConv(grouped, CpuBackendTests.RandomValues(random, (int)grouped.WeightCount), []);
        var x = new TensorView(cpu.Allocate(2 * 32 * 29 * 31), 0, 2, 32, 29, 31);
        cpu.Upload(CpuBackendTests.RandomValues(random, (int)x.ElementCount), x);
        var y = new TensorView(cpu.Allocate(2 * 48 * 29 * 31), 0, 2, 48, 29, 31);
        var residual = new TensorView(cpu.Allocate(y.ElementCount), 0, 2, 48, 29, 31);
        var pointwiseSpec = new ConvSpec(32, 48, 1, 1, 0, 1);
        using IPreparedConv pointwiseConv = cpu.PrepareConv(pointwiseSpec, CpuBackendTests.RandomValues(random, (int)pointwiseSpec.WeightCount), []);
        var half = new TensorView(cpu.Allocate(2 * 32 * 15 * 16), 0, 2, 32, 15, 16);
        var pooled = new TensorView(cpu.Allocate(2 * 32 * 15 * 16), 0, 2, 32, 15, 16);
        var dx = new TensorView(cpu.Allocate(x.ElementCount), 0, 2, 32, 29, 31);
        var dWeight = new TensorView(cpu.Allocate(spec.WeightCount), 0, 48, 32, 3, 3);
        var dGrouped = new TensorView(cpu.Allocate(grouped.WeightCount), 0, 32, 4, 3, 3);
        var dPointwise = new TensorView(cpu.Allocate(pointwiseSpec.WeightCount), 0, 48, 32, 1, 1);
        var dBias = new TensorView(cpu.Allocate(48), 0, 1, 48, 1, 1);
        float[] newWeight = CpuBackendTests.RandomValues(random, (int)spec.WeightCount), newBias = CpuBackendTests.RandomValues(random, 48);
        var bnParameters = new TensorView(cpu.Allocate(6 * 48), 0, 1, 48, 1, 1);
        cpu.Upload(CpuBackendTests.RandomValues(random, 6 * 48), new TensorView(bnParameters.Buffer, 0, 1, 6 * 48, 1, 1));
        TensorView BnSlice(int i) => bnParameters with { Offset = i * 48 };
        var normalized = new TensorView(cpu.Allocate(y.ElementCount), 0, 2, 48, 29, 31);

        void Step()
        {
            cpu.Conv2d(conv, x, y, residual, relu: true); // 2 x 64 tiles: Winograd
            cpu.Conv2d(pointwiseConv, x, y, residual, relu: true);
            cpu.Conv2d(groupedConv, x, half, null, relu: false);
            cpu.MaxPool2d(x, pooled, 3, 2, 1);
            cpu.UpsampleNearestAdd(half, x);
            cpu.Add(y, residual, y, relu: true);
            cpu.Relu(y, y);
            cpu.Sigmoid(y, y);
            cpu.Conv2dBackwardData(conv, y, dx, accumulate: false);        // transposed Winograd
            cpu.Conv2dBackwardData(pointwiseConv, y, dx, accumulate: true); // 1x1 GEMM, dx as in-place residual
            cpu.Conv2dBackwardData(groupedConv, half, dx, accumulate: true); // columns and scatter
            cpu.Conv2dBackwardWeights(spec, x, y, dWeight, dBias, accumulate: false);
            cpu.Conv2dBackwardWeights(grouped, x, half, dGrouped, null, accumulate: true);
            cpu.Conv2dBackwardWeights(pointwiseSpec, x, y, dPointwise, dBias, accumulate: true);
            cpu.ReluBackward(y, residual, residual);
            cpu.MaxPool2dBackward(x, pooled, dx, 3, 2, 1, accumulate: true);
            cpu.UpsampleNearestBackward(x, half, accumulate: false);
            cpu.BatchNormTraining(y, BnSlice(0), BnSlice(1), residual, relu: true, normalized, BnSlice(2), BnSlice(3), 1e-5);
            cpu.BatchNormTrainingBackward(y, residual, BnSlice(0), BnSlice(2), BnSlice(3), 1e-5, residual, BnSlice(4), BnSlice(5), accumulate: true);
            cpu.Zero(residual);
            cpu.UpdateConv(conv, newWeight, newBias);
        }

        // Warm-up: pool threads started, and every method past tiered compilation (call counting
        // and the tier-1 rejit run on a background thread that allocates; its delay is 100 ms).
        for (int i = 0; i < 60; i++) Step();
        Thread.Sleep(500);
        for (int i = 0; i < 60; i++) Step();
        Thread.Sleep(500);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"10 steps allocated {allocated} bytes");
    }
}
