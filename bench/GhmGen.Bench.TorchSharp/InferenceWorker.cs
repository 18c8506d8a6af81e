using System.Diagnostics;
using GhmGen.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace GhmGen.Bench.TorchSharp;

/// <summary>
/// <c>side-by-side-worker --framework torchsharp --torchscript FILE.pt --model NAME --size HxW --threads N</c>:
/// TorchSharp (libtorch 2.10 CPU) running the traced seeded network (export_torchscript.py --mode infer) on the
/// seeded 1x3xHxW input (<see cref="SeededWeights.FillInput"/>), <c>torch.set_num_threads(N)</c>, under
/// <c>torch.no_grad()</c>; one forward per <c>run</c>. Set-up ends with <see cref="WorkerProtocol.DefaultJitWarmups"/>
/// untimed forwards (<c>--jit-warmups N</c>), counted in <c>setup_ms</c>.
/// </summary>
internal static class InferenceWorker
{
    public static int Run(string[] args)
    {
        WorkerProtocol.Options options = WorkerProtocol.Parse("side-by-side-worker", args, defaultBatch: 1);
        if (options.Batch != 1) throw new ArgumentException("side-by-side-worker: the side-by-side forward is batch 1");
        long setupStart = Stopwatch.GetTimestamp();
        (jit.ScriptModule module, TorchScriptFile.Metadata meta) = TorchScriptFile.Load(options, "infer");
        module.eval();
        var inputData = new float[3 * options.Height * options.Width];
        SeededWeights.FillInput(inputData);
        using Tensor input = torch.tensor(inputData, [1, 3, options.Height, options.Width]);
        Tensor[] last = [];

        long jitStart = Stopwatch.GetTimestamp();
        for (int k = 0; k < options.JitWarmups; k++) // the graph executor's profiling and optimising calls
        {
            using var scope = torch.NewDisposeScope();
            using (torch.no_grad()) AsTensors(module.forward(input));
        }
        double jitMs = Stopwatch.GetElapsedTime(jitStart).TotalMilliseconds;

        WorkerProtocol.Reply($"ready setup_ms={Stopwatch.GetElapsedTime(setupStart).TotalMilliseconds:F1} "
                             + $"jit_warmups={options.JitWarmups} jit_warmup_ms={jitMs:F1} "
                             + $"libtorch={TorchScriptFile.LibTorchVersion} frozen={(meta.Frozen ? 1 : 0)}");
        WorkerProtocol.Serve(
            run: () =>
            {
                foreach (Tensor t in last) t.Dispose(); // free the previous outputs first, as the other workers do
                last = [];
                TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
                long start = Stopwatch.GetTimestamp();
                using (torch.no_grad())
                    last = AsTensors(module.forward(input));
                double wallMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                double cpuMs = (Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds;
                return FormattableString.Invariant($"ms={wallMs:F2} cpu_ms={cpuMs:F1}");
            },
            lastOutputs: () => Flatten(last),
            command: "side-by-side-worker");
        foreach (Tensor t in last) t.Dispose();
        module.Dispose();
        return 0;
    }

    /// <summary>The traced module returns its flat tuple of ten maps as <c>Tensor[]</c>.</summary>
    public static Tensor[] AsTensors(object result)
    {
        Tensor[] outputs = result switch
        {
            Tensor[] tensors => tensors,
            object[] objects when objects.All(o => o is Tensor) => objects.Cast<Tensor>().ToArray(),
            _ => throw new InvalidOperationException($"TorchScript forward returned {result.GetType()}, not a tuple of tensors"),
        };
        if (outputs.Length != WorkerProtocol.HeadOutputNames.Length)
            throw new InvalidOperationException($"TorchScript forward returned {outputs.Length} tensors, not {WorkerProtocol.HeadOutputNames.Length}");
        return outputs;
    }

    /// <summary>cls_p3..cls_p7 then reg_p3..reg_p7, each row-major, concatenated.</summary>
    public static float[] Flatten(Tensor[] outputs)
    {
        if (outputs.Length == 0) throw new InvalidOperationException("dump before any run");
        var parts = new List<float>();
        foreach (Tensor t in outputs)
        {
            using Tensor contiguous = t.contiguous();
            parts.AddRange(contiguous.data<float>().ToArray());
        }
        return parts.ToArray();
    }
}
