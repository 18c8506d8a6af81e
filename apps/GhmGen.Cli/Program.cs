using GhmGen.Cli;

return GhmCommand.Run(args, Console.Out, Console.Error);
