using Checkout;

// Runs on fresh files each time (one per style), in a directory beside the program, so the output is the same on
// every run but for the times.
var directory = Path.Combine(AppContext.BaseDirectory, "checkout-data");
if (Directory.Exists(directory))
{
    Directory.Delete(directory, recursive: true);
}

Directory.CreateDirectory(directory);
await CheckoutApp.RunAsync(directory, Console.Out);
Console.WriteLine($"The logs of both runs are in {directory}.");
