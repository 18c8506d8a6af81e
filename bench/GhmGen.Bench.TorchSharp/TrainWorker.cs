using System.Diagnostics;
using GhmGen.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GhmGen.Bench.TorchSharp;

/// <summary>
/// <c>train-worker --framework torchsharp --torchscript FILE.pt --model NAME --size HxW --batch B --threads N</c>:
/// one training step per <c>run</c> in TorchSharp on a module traced by export_torchscript.py --mode train
/// (BN in eval mode, stem and layer1 frozen): zero the gradients, forward the seeded Bx3xHxW input,
/// loss = sum over the ten head maps of sum(G * map), backward, SGD step (<see cref="TrainingStep"/>).
/// Answers <c>SBS ms=.. cpu_ms=.. loss=.. loss_abs=..</c>, the loss of this step's forward (before its update)
/// and sum |G * map| (the scale the driver's guard compares the loss on). Set-up ends with
/// <see cref="WorkerProtocol.DefaultJitWarmups"/> untimed forward + backward calls without a step (<c>--jit-warmups N</c>).
/// </summary>
internal static class TrainWorker
{
    public static int Run(string[] args)
    {
        WorkerProtocol.Options options = WorkerProtocol.Parse("train-worker", args, defaultBatch: 2);
        long setupStart = Stopwatch.GetTimestamp();
        (jit.ScriptModule module, TorchScriptFile.Metadata meta) = TorchScriptFile.Load(options, "train");

        // requires_grad as exported (trained = not the stem, not layer1); set again by the same rule so a
        // loader that dropped the flags cannot silently train everything, and checked against the export.
        var trained = new List<Parameter>();
        foreach ((string name, Parameter p) in module.named_parameters())
        {
            bool train = TrainingStep.IsTrained(name);
            if (p.requires_grad != train)
                throw new InvalidDataException($"{name}: requires_grad {p.requires_grad} in the TorchScript file, expected {train}");
            if (train) trained.Add(p);
        }
        if (trained.Count != meta.TrainedParameters)
            throw new InvalidDataException($"{trained.Count} trained parameters in TorchSharp, export_torchscript.py recorded {meta.TrainedParameters}");

        var inputData = new float[options.Batch * 3 * options.Height * options.Width];
        SeededWeights.FillInput(inputData);
        using Tensor input = torch.tensor(inputData, [options.Batch, 3, options.Height, options.Width]);
        Tensor[] gradientWeights = TrainingStep.SeededLossWeights(options.Batch, options.Height, options.Width);
        using var optimizer = torch.optim.SGD(trained, TrainingStep.LearningRate, TrainingStep.Momentum,
            dampening: 0, weight_decay: TrainingStep.WeightDecay, nesterov: false, maximize: false);
        Tensor[] last = [];

        // The loss: sum over the ten maps of sum(G * map), summed in output order as the Python twin does.
        Tensor Loss(Tensor[] outputs)
        {
            Tensor total = (outputs[0] * gradientWeights[0]).sum();
            for (int i = 1; i < outputs.Length; i++) total = total + (outputs[i] * gradientWeights[i]).sum();
            return total;
        }

        // The graph executor's profiling and optimising calls (forward and backward graphs), untimed and without
        // an optimiser step, so the weights (and the step count the guard relies on) are untouched.
        long jitStart = Stopwatch.GetTimestamp();
        for (int k = 0; k < options.JitWarmups; k++)
        {
            using var scope = torch.NewDisposeScope();
            module.zero_grad(true);
            Loss(InferenceWorker.AsTensors(module.forward(input))).backward();
        }
        module.zero_grad(true);
        double jitMs = Stopwatch.GetElapsedTime(jitStart).TotalMilliseconds;

        WorkerProtocol.Reply($"ready setup_ms={Stopwatch.GetElapsedTime(setupStart).TotalMilliseconds:F1} "
                             + $"jit_warmups={options.JitWarmups} jit_warmup_ms={jitMs:F1} "
                             + $"libtorch={TorchScriptFile.LibTorchVersion} trained_parameters={trained.Count}");
        WorkerProtocol.Serve(
            run: () =>
            {
                foreach (Tensor t in last) t.Dispose();
                last = [];
                TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
                long start = Stopwatch.GetTimestamp();
                float loss;
                using (var scope = torch.NewDisposeScope())
                {
                    module.zero_grad(true); // set_to_none, as torch's optimizer.zero_grad(set_to_none=True)
                    Tensor[] outputs = InferenceWorker.AsTensors(module.forward(input));
                    Tensor total = Loss(outputs);
                    total.backward();
                    optimizer.step();
                    loss = total.item<float>();
                    // Keep only detached outputs (no autograd graph) for dump and the guard's scale.
                    last = outputs.Select(o => o.detach().MoveToOuterDisposeScope()).ToArray();
                }
                double wallMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                double cpuMs = (Environment.CpuUsage.TotalTime - cpuStart).TotalMilliseconds;
                double lossAbs = 0;
                using (torch.no_grad())
                using (var scope = torch.NewDisposeScope())
                    for (int i = 0; i < last.Length; i++) lossAbs += (last[i] * gradientWeights[i]).abs().sum().item<float>();
                return FormattableString.Invariant($"ms={wallMs:F2} cpu_ms={cpuMs:F1} loss={loss:R} loss_abs={lossAbs:R}");
            },
            lastOutputs: () => InferenceWorker.Flatten(last),
            command: "train-worker");
        foreach (Tensor t in last) t.Dispose();
        foreach (Tensor g in gradientWeights) g.Dispose();
        module.Dispose();
        return 0;
    }
}
