using GhmGen.Bench.TorchSharp;

// TorchSharp peer processes for the side-by-side benchmarks (one framework per process):
//   side-by-side-worker --framework torchsharp --torchscript FILE.pt [--model M] [--size HxW] [--threads N]
//       forward passes for bench/side_by_side.py (InferenceWorker)
//   train-worker --framework torchsharp --torchscript FILE.pt [--model M] [--size HxW] [--batch B] [--threads N]
//       forward + backward + SGD steps for bench/side_by_side_train.py (TrainWorker)
// Both speak the line protocol of bench/GhmGen.Bench's side-by-side-worker (WorkerProtocol).
if (args.Length > 0 && args[0] == "side-by-side-worker")
    return InferenceWorker.Run(args[1..]);
if (args.Length > 0 && args[0] == "train-worker")
    return TrainWorker.Run(args[1..]);
Console.Error.WriteLine("usage: GhmGen.Bench.TorchSharp side-by-side-worker|train-worker --framework torchsharp --torchscript FILE.pt "
                        + "[--model NAME] [--size HxW] [--threads N] [--batch B (train-worker)]");
return 2;
