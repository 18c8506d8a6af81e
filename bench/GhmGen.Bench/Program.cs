using BenchmarkDotNet.Running;

// Entry point: pick suites with --filter, e.g. `dotnet run -c Release -- --filter '*Nms*' --job short`.
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
