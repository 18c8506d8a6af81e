// A steady-state CpuBackend call allocates no managed memory: the convolution packs into
// per-worker native scratch and runs on CpuWorkerPool (no Parallel.For closures). Measured with
// GC.GetTotalAllocatedBytes(precise: true), which counts every thread (the pool's workers too), so
// this class runs alone (its collection disables parallelization with other test classes).
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
        using var cpu = new CpuBackend(2);
        var random = new Random(3);
        var spec = new ConvSpec(32, 48, 3, 1, 1, 1);
        using IPreparedConv conv = cpu.PrepareConv(spec, CpuBackendTests.RandomValues(random, (int)spec.WeightCount), CpuBackendTests.RandomValues(random, 48));
        var grouped = new ConvSpec(32, 32, 3, 2, 1, 8);
        using IPreparedConv groupedConv = cpu.PrepareConv(grouped, CpuBackendTests.RandomValues(random, (int)grouped.WeightCount), []);
        var x = new TensorView(cpu.Allocate(2 * 32 * 29 * 31), 0, 2, 32, 29, 31);
        cpu.Upload(CpuBackendTests.RandomValues(random, (int)x.ElementCount), x);
        var y = new TensorView(cpu.Allocate(2 * 48 * 29 * 31), 0, 2, 48, 29, 31);
        var residual = new TensorView(cpu.Allocate(y.ElementCount), 0, 2, 48, 29, 31);
        var half = new TensorView(cpu.Allocate(2 * 32 * 15 * 16), 0, 2, 32, 15, 16);
        var pooled = new TensorView(cpu.Allocate(2 * 32 * 15 * 16), 0, 2, 32, 15, 16);

        void Step()
        {
            cpu.Conv2d(conv, x, y, residual, relu: true);
            cpu.Conv2d(groupedConv, x, half, null, relu: false);
            cpu.MaxPool2d(x, pooled, 3, 2, 1);
            cpu.UpsampleNearestAdd(half, x);
            cpu.Add(y, residual, y, relu: true);
            cpu.Relu(y, y);
            cpu.Sigmoid(y, y);
        }

        for (int i = 0; i < 20; i++) Step(); // warm-up: JIT tiers, pool threads started
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < 10; i++) Step();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(0, allocated);
    }
}
