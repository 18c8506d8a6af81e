// The NativeAOT target of the sample: the same declaration (../MyDetector/MyDetector.cs), detection only.
//   dotnet publish -c Release -r linux-x64 -p:PublishAot=true -o out
//   out/MyDetector.Native CHECKPOINT OUT.json IMAGE...
using System.Runtime.Intrinsics;
using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models;
using MyApp;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: MyDetector.Native CHECKPOINT OUT.json IMAGE...");
    return 2;
}
// GhmGen's package makes a NativeAOT x64 app target x86-64-v3, so the 256-bit kernels run.
Console.WriteLine($"Vector256 accelerated: {Vector256.IsHardwareAccelerated}");

ModelInfo model = ModelInfo.For<MyDetector>();
INetwork network = model.Create();
IReadOnlyList<string>? names;
using (TorchCheckpoint file = TorchCheckpoint.Read(args[0]))
{
    StateDictLoader.Load(network, file, strict: true);
    names = file.ClassNames;
}
using var backend = new CpuBackend();
using var detector = new Detector(model, network, backend, names, preprocess: new PreprocessOptions(160, 128));
var options = new PostProcessOptions(ScoreThreshold: 0.001f, MaxPerImage: 5);
var found = new List<(string, DetectionResult)>();
foreach (string image in args[2..])
{
    DetectionResult result = detector.Detect(ImageDecoder.Decode(image), options);
    found.Add((Path.GetFileName(image), result));
    Console.WriteLine($"{Path.GetFileName(image)}: {result.Objects.Length} detections" +
        (result.Objects.Length > 0 ? $", best {detector.ClassNames[result.Objects[0].Label]} {result.Objects[0].Score:F4}" : ""));
}
DetectionsJson.Write(args[1], found);
return 0;
